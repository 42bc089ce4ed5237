"""Faults: kills, stale temporaries, full and read-only disks, two runs at once.

The claims under test, each against real processes and real file systems:
- every file a stage writes goes to a hidden temporary beside it and is `os.replace`d into
  place (an audit hook records every write and rename of each stage);
- a stage SIGKILLed right before a rename leaves the old artifact (never half a new one) and
  a stale temporary, which the next run of that stage removes;
- a full or read-only output folder fails in one line and keeps the previous artifacts;
- a stage killed (SIGTERM or SIGKILL) under Snakemake or DVC leaves no partial output, both
  engines then see it as not done, the next run completes, and no other artifact changed;
- two engine runs at once: the second stops at once with a lock message, nothing is corrupted.

Stages run on a tiny archive (harness.make_tiny_archive), in a scratch folder or, under the
engines, in copies of one finished run per engine (conftest.py's finished_project). Which
stages are killed under which engine and signal: see MATRIX below and tests/BAD_INPUTS.md.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from mnist_basics.artifacts import atomic_path, sweep
from mnist_basics.pipeline.definition import BY_NAME, STAGES, WALL_CLOCK
from tests.harness import (
    ENGINES,
    FAST_PARAMS,
    ROOT,
    SNAKEMAKE,
    dvc_changed,
    engine_env,
    make_tiny_archive,
    set_params,
    sh,
    snakemake_plan,
    write_params,
)

ALL_OUTPUTS = [p for s in STAGES for p in s.all_outputs]
# Each run writes new wall-clock figures (the timing files) and a new page (its date and
# those seconds): every other artifact is reproduced byte for byte.
VARYING = set(WALL_CLOCK)
STABLE = [p for p in ALL_OUTPUTS if p not in VARYING]


# -- Running a stage under an audit hook -----------------------------------------------------

# Runs a stage script with an audit hook that logs every file opened for writing and every
# rename (os.replace raises `os.rename`), and SIGKILLs the process right before it renames
# onto $KILL_BEFORE_RENAME_TO: the moment a crash would do the most harm.
AUDIT = textwrap.dedent("""\
    import os, runpy, signal, sys

    log = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    kill_at = os.environ.get("KILL_BEFORE_RENAME_TO")
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = args
            if (mode is None and flags & WRITE) or (mode and any(c in mode for c in "wax+")):
                os.write(log, f"write\\t{os.path.abspath(os.fsdecode(path))}\\n".encode())
        elif event == "os.rename":
            src, dst = (os.path.abspath(os.fsdecode(p)) for p in args[:2])
            os.write(log, f"rename\\t{src}\\t{dst}\\n".encode())
            if dst == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def run_audited(work: Path, stage: str, log: Path, *, archive: Path,
                kill_before: Path | None = None, paths: Mapping[str, Path] | None = None
                ) -> subprocess.CompletedProcess:
    """`python stages/<stage>.py` in `work` (its default paths point there, but `paths`, by
    flag), audited."""
    wrapper = work.parent / "audit.py"
    wrapper.write_text(AUDIT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2",
           "MNIST_SAMPLE_URL": str(archive)}
    if kill_before is not None:
        env["KILL_BEFORE_RENAME_TO"] = str(kill_before)
    python, *stage_argv = BY_NAME[stage].argv(**(paths or {}))
    cmd = [python, str(wrapper), str(log), *stage_argv]
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)


def read_audit(log: Path) -> tuple[list[Path], list[tuple[Path, Path]]]:
    writes, renames = [], []
    for line in log.read_text().splitlines() if log.exists() else []:
        kind, *paths = line.split("\t")
        if kind == "write":
            writes.append(Path(paths[0]))
        else:
            renames.append((Path(paths[0]), Path(paths[1])))
    return writes, renames


# The shape of a temporary's name (see mnist_basics.artifacts):
# `.<artifact>.<pid>.<random>.tmp[suffix]`.
TEMP_NAME = re.compile(r"^\..+\.\d+\.[^/]+\.tmp[^/]*$")


def temporary_of(path: Path, work: Path) -> Path | None:
    """The hidden temporary that `path` is; None if it is not one."""
    return path if work in path.parents and TEMP_NAME.match(path.name) else None


def stage_params(work: Path, archive: tuple[Path, str, str]) -> None:
    write_params(work / "params.yaml", data={"md5": archive[1], "content_digest": archive[2]},
                 **FAST_PARAMS)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hashes(root: Path, paths) -> dict[str, str]:
    return {p: digest(root / p) for p in paths if (root / p).exists()}


def leftovers(root: Path) -> list[str]:
    """Hidden temporaries anywhere in the output folders."""
    return sorted(str(p.relative_to(root)) for d in ("data", "models", "metrics", "reports")
                  if (root / d).is_dir() for p in (root / d).rglob(".*")
                  if p.name not in (".gitignore", ".snakemake_timestamp"))


def archive_of(work: Path) -> Path:
    return work.parent / "mnist_sample.tgz"  # where `workspace` made it


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict]:
    """Every stage run once, in pipeline order, in a folder of its own, under the audit hook.

    Returns the folder and {stage: (process, writes, renames)}; download runs twice, so that
    its second run replaces a previous output.
    """
    root = tmp_path_factory.mktemp("writes")
    archive = make_tiny_archive(root)
    work = root / "work"
    work.mkdir()
    stage_params(work, archive)
    runs = {}
    for name in ["download", *(s.name for s in STAGES)]:
        log = root / f"{name}.audit"
        log.unlink(missing_ok=True)
        proc = run_audited(work, name, log, archive=archive[0])
        runs[name] = (proc, *read_audit(log))
    return work, runs


@pytest.mark.slow
@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_every_write_goes_to_a_temporary_then_is_renamed_into_place(stage, workspace):
    work, runs = workspace
    proc, writes, renames = runs[stage]
    assert proc.returncode == 0, proc.stderr
    outputs = {work / p for p in BY_NAME[stage].all_outputs}
    mine = [w for w in writes if work in w.parents]
    assert mine, "the audit saw no writes"
    for w in mine:  # nothing is ever opened for writing at, or inside, an output path
        assert not any(w == o or o in w.parents for o in outputs), w
        assert temporary_of(w, work) is not None, w
    renamed_onto = [dst for _, dst in renames]
    for o in outputs:  # each output arrives by one rename, from a temporary beside it
        assert renamed_onto.count(o) == 1, o
        (src,) = [s for s, d in renames if d == o]
        temporary = temporary_of(src, work)
        assert temporary is not None and temporary.parent == o.parent, src
        assert o.exists()
    assert leftovers(work) == []


# -- Stale temporaries -----------------------------------------------------------------------


def test_sweep_removes_only_what_a_dead_writer_left(tmp_path):
    target = tmp_path / "mlp.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    live = str(os.getpid())
    names = {
        f".mlp.json.{dead}.abc123.tmp": True,  # a killed writer's file
        f".mlp.json.{live}.abc123.tmp": False,  # a live writer's: left alone
        f".mlp.json.{dead}.abc123.tmp.csv": True,
        f".mlp.json.{dead}.xyz.tmp/": False,  # a folder: no writer makes one, so not ours
        f".mlp_valid.safetensors.{dead}.a.tmp": False,  # another artifact's
        f".mlp.json.{dead}.notes": False,  # not a temporary
        "mlp.json": False,
    }
    for name in names:
        p = tmp_path / name.rstrip("/")
        p.mkdir() if name.endswith("/") else p.write_text("x")
    removed = {p.name for p in sweep(target)}
    assert removed == {n.rstrip("/") for n, gone in names.items() if gone}
    assert {p.name for p in tmp_path.iterdir()} == {n.rstrip("/") for n, gone in names.items()
                                                     if not gone}


def test_atomic_path_sweeps_before_it_writes_and_never_leaves_half_a_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    stale = tmp_path / ".metrics.json.999999999.x.tmp"  # no such process
    stale.write_text("half")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new one")
        raise RuntimeError("killed")  # an exception (or SIGTERM, which cli.run raises) mid-write
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


# (stage, the output it is SIGKILLed right before renaming into place)
KILLS = [
    ("download", "data/mnist_sample.tgz"),
    ("stack", "data/mnist_sample.safetensors"),
    ("mlp", "metrics/mlp.json"),
    ("report", "reports/index.html"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "target"), KILLS, ids=[k[0] for k in KILLS])
def test_sigkill_before_a_rename_leaves_the_old_artifact_and_the_next_run_sweeps(
        stage, target, workspace, tmp_path):
    """SIGKILL at the worst moment: the new artifact is written, not yet renamed into place."""
    good, runs = workspace
    assert runs[stage][0].returncode == 0, runs[stage][0].stderr
    work = shutil.copytree(good, tmp_path / "work", symlinks=True)
    outputs = BY_NAME[stage].all_outputs
    before = hashes(work, outputs)
    other = [p for s in STAGES if s.name != stage for p in s.all_outputs]
    others = hashes(work, other)
    archive = archive_of(good)

    proc = run_audited(work, stage, tmp_path / "kill.audit", archive=archive,
                       kill_before=work / target)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # Every output is a whole file, old or new; the one it was killed on is the old one.
    assert hashes(work, outputs)[target] == before[target]
    assert leftovers(work), "SIGKILL left no temporary: the test did not kill where it meant to"
    assert hashes(work, other) == others

    proc = run_audited(work, stage, tmp_path / "rerun.audit", archive=archive)
    assert proc.returncode == 0, proc.stderr
    assert leftovers(work) == []
    assert hashes(work, other) == others
    # Deterministic outputs come back byte for byte.
    same = [p for p in outputs if p not in VARYING]
    assert hashes(work, same) == {p: before[p] for p in same}


# -- Full and read-only disks ----------------------------------------------------------------


@contextlib.contextmanager
def small_fs(path: Path, size: str = "1m"):
    """A tmpfs of `size` at `path`; yields False (a plain folder) if mounting is not allowed."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(path)], capture_output=True)
    try:
        yield r.returncode == 0
    finally:
        if r.returncode == 0:
            subprocess.run(["umount", "-l", str(path)], check=True)
        else:
            path.chmod(0o755)  # so that pytest can clean it up


def fill(folder: Path) -> None:
    """Write zeros until the file system is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def outputs_into(stage: str, folder: Path) -> dict[str, Path]:
    """The stage's outputs by flag, every one pointing into `folder`."""
    s = BY_NAME[stage]
    return {flag: folder / Path(path).name
            for flag, path in s.written.items()}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["disk full", "read-only"])
@pytest.mark.parametrize("stage", ["download", "stack", "mlp", "report"])
def test_full_or_read_only_output_folder(stage, how, workspace, tmp_path):
    """On a tmpfs that is full or mounted read-only (as root; without root, a chmod 0555
    folder stands in for read-only, and a full disk cannot be simulated)."""
    good, runs = workspace
    assert runs[stage][0].returncode == 0, runs[stage][0].stderr
    fs = tmp_path / "fs"
    with small_fs(fs) as mounted:
        if not mounted and (how == "disk full" or os.geteuid() == 0):
            pytest.skip("needs a tmpfs mount (root), and root ignores file modes")
        for p in BY_NAME[stage].all_outputs:  # the previous run's outputs, where this run writes
            src, dst = good / p, fs / Path(p).name
            shutil.copy(src, dst)
        if how == "disk full":
            fill(fs)
        elif mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        else:
            fs.chmod(0o555)
        before = {p.name: digest(p) for p in fs.iterdir()}

        proc = run_audited(good, stage, tmp_path / "audit", archive=archive_of(good),
                           paths=outputs_into(stage, fs))
        assert proc.returncode == 1, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
        why = "No space left on device" if how == "disk full" else "Read-only file system"
        assert str(fs) in errors[0] and why in errors[0], errors[0]
        assert {p.name: digest(p) for p in fs.iterdir()} == before  # nothing lost or left


# -- Killing a stage under each engine -------------------------------------------------------

# Legitimately slow: so many epochs that the stage is surely killed while it trains.
SLOW = {name: {name: {"epochs": 10**6}} for name in ("linear", "mlp", "resnet18")}


class SlowArchive(BaseHTTPRequestHandler):
    """Serves the archive 512 bytes at a time, 5 times a second; `sending` is set once it has
    begun, so that the download stage can be killed mid-transfer."""

    def do_GET(self):
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "application/x-gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client was killed
            for i in range(0, len(body), 512):
                self.wfile.write(body[i : i + 512])
                self.wfile.flush()
                self.server.sending.set()
                time.sleep(0.2)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def slow_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), SlowArchive)
    srv.sending = threading.Event()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/mnist_sample.tgz"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@dataclass
class Project:
    """A project copy that one engine has run from start to end."""

    root: Path
    archive: Path
    good: dict[str, str] = field(default_factory=dict)  # artifact -> digest after that run

    def env(self, url: str | None = None) -> dict:
        return engine_env(MNIST_SAMPLE_URL=url or str(self.archive), PYTHONPATH=str(self.root))

    def artifacts(self) -> dict[str, str]:
        return hashes(self.root, ALL_OUTPUTS)


def engine_project(tmp_path_factory, finished_project, engine: str) -> Project:
    root, archive = finished_project(engine, tmp_path_factory.mktemp(engine) / "proj")
    proj = Project(root, archive[0])
    proj.good = proj.artifacts()
    assert set(proj.good) == set(ALL_OUTPUTS)
    return proj


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory, finished_project) -> Project:
    return engine_project(tmp_path_factory, finished_project, "dvc")


@pytest.fixture(scope="module")
def snakemake_project(tmp_path_factory, finished_project) -> Project:
    return engine_project(tmp_path_factory, finished_project, "snakemake")


def start_one_stage(proj: Project, engine: str, stage: str, env: dict, log: Path):
    """Run just `stage`, forced, in the background, in a process group of its own."""
    cmd = (["dvc", "repro", "--force", "--single-item", stage] if engine == "dvc"
           else [*SNAKEMAKE, "--force", BY_NAME[stage].all_outputs[0]])
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=proj.root, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stage_process(proj: Project, stage: str, engine_proc, log: Path) -> psutil.Process:
    """The python process running stages/<stage>.py in this project (not the engine, not a
    shell): found by its command line and working folder, never by name alone."""
    script = BY_NAME[stage].script
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for p in psutil.process_iter(["cmdline", "cwd"]):
            cmd = p.info["cmdline"] or []
            if (len(cmd) > 1 and cmd[1] == script and "python" in Path(cmd[0]).name
                    and p.info["cwd"] == str(proj.root)):
                return p
        if engine_proc.poll() is not None:
            raise AssertionError(f"{script} never ran:\n{log.read_text()}")
        time.sleep(0.01)
    raise AssertionError(f"{script} did not start within 120 s")


def wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def reaped(proc: subprocess.Popen):
    """Whatever happens, the engine we started (and all it started) is gone afterwards."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def kill_mid_run(proj: Project, engine: str, stage: str, sig: signal.Signals,
                 server) -> tuple[int, str]:
    """Run `stage` under `engine`, kill its python process mid-run: (engine's status, log)."""
    params = (proj.root / "params.yaml").read_text()
    env = proj.env()
    if stage == "download":
        server.sending.clear()
        server.body = proj.archive.read_bytes()
        env = proj.env(server.url)
    if stage in SLOW:
        set_params(proj.root, **SLOW[stage])
    log = proj.root.parent / f"{engine}-{stage}-{sig.name}.log"
    stage_log = log if engine == "dvc" else proj.root / "logs" / f"{stage}.log"
    try:
        with reaped(start_one_stage(proj, engine, stage, env, log)) as run:
            victim = stage_process(proj, stage, run, log)
            if stage == "download":  # mid-transfer
                wait_for(server.sending.is_set, "the download to begin")
            elif stage in SLOW:  # mid-training
                wait_for(lambda: stage_log.exists() and "epoch 1/" in stage_log.read_text(),
                         "the first epoch")
            # (every other stage is killed as soon as it starts)
            victim.send_signal(sig)
            return run.wait(timeout=120), log.read_text()
    finally:
        (proj.root / "params.yaml").write_text(params)  # as dvc.lock recorded them


# Each kind of writer under DVC with SIGKILL: the download (mid-transfer), the stack, a model
# stage (save_results, which linear and pixel_mean share with mlp), resnet18 (every core), the
# walk-through (its JSON and CSV, as nn_linear writes them) and the page. Then every pair of
# engine, signal and stage among download and mlp, once each: DVC with SIGTERM on both;
# Snakemake with both signals on mlp and SIGTERM mid-download (a killed download makes
# Snakemake, which goes by mtimes, rerun the whole chapter: a second signal there would test
# no pair that is not already tested). That every stage writes through atomic_path is
# test_every_write_goes_to_a_temporary_then_is_renamed_into_place's.
KILLED = ("download", "stack", "sgd_example", "mlp", "resnet18", "report")
MATRIX = sorted({("dvc", signal.SIGKILL, s) for s in KILLED}
                | {("dvc", signal.SIGTERM, s) for s in ("download", "mlp")}
                | {("snakemake", sig, "mlp") for sig in (signal.SIGTERM, signal.SIGKILL)}
                | {("snakemake", signal.SIGTERM, "download")},
                key=lambda c: (c[0], c[2], c[1]))


@pytest.mark.slow
@pytest.mark.parametrize(("engine", "sig", "stage"), MATRIX,
                         ids=[f"{e}-{sig.name}-{s}" for e, sig, s in MATRIX])
def test_a_killed_stage_is_redone_and_nothing_else_changes(engine, sig, stage, slow_server,
                                                           request):
    proj: Project = request.getfixturevalue(f"{engine}_project")
    before = proj.artifacts()
    assert {p: before[p] for p in STABLE} == {p: proj.good[p] for p in STABLE}

    status, log = kill_mid_run(proj, engine, stage, sig, slow_server)
    assert status != 0, log
    owned = BY_NAME[stage].all_outputs
    # No partial file at an output path: what is there is a whole artifact of the good run.
    assert all(h == before[p] for p, h in hashes(proj.root, owned).items())
    if sig == signal.SIGTERM:  # the stage's own cleanup ran
        assert leftovers(proj.root) == []
    others = [p for p in ALL_OUTPUTS if p not in owned]
    assert hashes(proj.root, others) == {p: before[p] for p in others}
    # Both engines see the stage as not done (with the params restored as dvc.lock has them).
    assert stage in dvc_changed(proj.root, proj.env())
    plan = snakemake_plan(proj.root, proj.env())
    assert (stage in plan) if isinstance(plan, set) else ("--rerun-incomplete" in plan), plan

    extra = ["--rerun-incomplete"] if isinstance(plan, str) else []
    rerun = sh(*ENGINES[engine], *extra, cwd=proj.root, env=proj.env())
    if leftovers(proj.root):
        # A SIGKILLed stage's temporaries go when the stage next runs; DVC may instead have
        # restored its outputs from the run cache, without running it. So run it once more.
        assert engine == "dvc" and f"Stage '{stage}' is cached - skipping run" in (
            rerun.stdout + rerun.stderr), leftovers(proj.root)
        sh("dvc", "repro", "--force", "--single-item", stage, cwd=proj.root, env=proj.env())
    assert leftovers(proj.root) == []
    assert dvc_changed(proj.root, proj.env()) == set()
    if engine == "snakemake":
        assert snakemake_plan(proj.root, proj.env()) == set()
    after = proj.artifacts()
    assert {p: after[p] for p in STABLE} == {p: proj.good[p] for p in STABLE}


# -- Two runs at once ------------------------------------------------------------------------

# What the second run says when it finds the first one holding the project.
LOCKED = {
    "dvc": ("Unable to acquire lock",  # DVC's repository lock
            "is busy, it is being blocked by"),  # DVC's lock on the files a stage reads/writes
    "snakemake": ("Directory cannot be locked",  # Snakemake's own lock on its outputs
                  "another DVC process (a `dvc repro`?) is working in this project"),  # onstart
}
PAIRS = [("dvc", "dvc"), ("snakemake", "snakemake"), ("dvc", "snakemake"), ("snakemake", "dvc")]


@pytest.mark.slow
@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}-then-{b}" for a, b in PAIRS])
def test_a_second_run_stops_at_once_and_corrupts_nothing(first, second, dvc_project, tmp_path):
    proj = dvc_project
    log = tmp_path / "first.log"
    with reaped(start_one_stage(proj, first, "mlp", proj.env(), log)) as run:
        victim = stage_process(proj, "mlp", run, log)
        victim.suspend()  # SIGSTOP: the first run is surely mid-stage while the second starts
        try:
            started = time.monotonic()
            other = sh(*ENGINES[second], cwd=proj.root, env=proj.env(), check=False)
            waited = time.monotonic() - started
        finally:
            victim.resume()
        assert run.wait(timeout=300) == 0, log.read_text()
    said = other.stdout + other.stderr
    assert other.returncode != 0, said
    assert any(message in said for message in LOCKED[second]), said
    assert waited < 60, f"the second run took {waited:.0f} s to give up"
    # The first run finished as if alone; the second wrote nothing.
    after = proj.artifacts()
    assert {p: after[p] for p in STABLE} == {p: proj.good[p] for p in STABLE}
    assert leftovers(proj.root) == []
    sh("dvc", "repro", cwd=proj.root, env=proj.env())  # the report, after the new mlp timing
    assert dvc_changed(proj.root, proj.env()) == set()


def test_snakemake_can_run_first_in_a_fresh_clone(project):
    """.dvc/tmp, where the Snakefile takes DVC's locks, exists only once DVC has run: a fresh
    clone has no such folder, and Snakemake must still run there."""
    assert not (project / ".dvc" / "tmp").exists()
    r = sh("snakemake", "data/mnist_sample.tgz", *SNAKEMAKE[1:], cwd=project, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert dvc_changed(project) == {s.name for s in STAGES} - {"download"}
