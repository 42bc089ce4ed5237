"""The seed spread and the sweep: every (method, seed) a job of its own, from one definition.

spread/dvc.yaml (DVC's `matrix`) and the Snakefile's wildcard rules come from `pipeline.SPREAD`;
both engines must see the same jobs, make the same files and share one state, and neither
engine's default run may start any of them. The summary's statistics are checked by hand.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from mnist_basics import PipelineError
from mnist_basics.pipeline.definition import (
    SPREAD,
    SPREAD_METHODS,
    spread_jobs,
    spread_run,
    sweep_run,
)
from mnist_basics.pipeline.engines import render_spread_dvc_yaml
from mnist_basics.report import spread
from tests.harness import (
    GPU_HERE,
    ROOT,
    SNAKEMAKE,
    dvc_changed,
    engine_env,
    make_project,
    ran,
    set_params,
    sh,
    snakemake_plan,
)

SPREAD_RUN = ("snakemake", "spread", *SNAKEMAKE[1:])  # the target before --resources' list
# Small enough to run in seconds, big enough to have two seeds and two values.
BOTH = ("dvc.yaml", "spread/dvc.yaml")  # `dvc status` of the chapter and the spread
TINY = {"spread": {"seeds": [0, 1]}, "sweep": {"values": [0.1, 0.3], "seeds": [0]}}


# -- The statistics ---------------------------------------------------------------------------
def test_spread_statistics_match_the_textbook_ones():
    acc = (0.9812, 0.9826, 0.9819, 0.9831, 0.9815)
    s = spread.Spread(acc)
    assert s.mean == pytest.approx(statistics.mean(acc))
    assert s.sd == pytest.approx(statistics.stdev(acc))  # n - 1
    assert spread.Spread((0.98,)).sd is None
    assert s.percentile(0.99) == 100 and s.percentile(0.97) == 0
    assert s.percentile(0.9819) == 50  # two below, itself counted half: (2 + 0.5) / 5
    summary = s.summary(book=0.9827)
    assert summary["min"] == 0.9812 and summary["max"] == 0.9831 and summary["n"] == 5
    assert summary["book_percentile"] == 80.0  # above four of the five


def write_run(folder: Path, name: str, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({
        "accuracy": 0.9, "accuracy_3": 0.9, "accuracy_7": 0.9, "train_loss": 0.1,
        "valid_loss": 0.1, "epochs": 1, **fields}))


def test_the_page_reads_exactly_the_runs_params_yaml_lists(tmp_path):
    params = {"spread": {"seeds": [3]}, "sweep": {"method": "mlp", "key": "lr",
                                                  "values": [0.05], "seeds": [0]}}
    runs, sweeps = tmp_path / "spread", tmp_path / "sweep"
    for m in SPREAD_METHODS:
        write_run(runs, Path(spread_run(m, 3)).name, method=m, seed=3, set={})
    write_run(runs, Path(spread_run("mlp", 9)).name, method="mlp", seed=9, set={})  # not listed
    write_run(sweeps, Path(sweep_run(0.05, 0)).name, method="mlp", seed=0, set={"lr": 0.05})
    rows, sweep_rows = spread.read_runs(runs, sweeps, params)
    assert [(r["method"], r["seed"]) for r in rows] == [(m, 3) for m in SPREAD_METHODS]
    assert [(r["key"], r["value"], r["seed"]) for r in sweep_rows] == [("mlp.lr", 0.05, 0)]

    # A file that holds another run than its name says is refused, not averaged in.
    write_run(runs, Path(spread_run("mlp", 3)).name, method="mlp", seed=4, set={})
    with pytest.raises(PipelineError, match=r"mlp_seed3.json: holds the run .*rerun spread_mlp@3"):
        spread.read_runs(runs, sweeps, params)
    (runs / Path(spread_run("mlp", 3)).name).unlink()
    with pytest.raises(PipelineError, match=r"mlp_seed3.json: missing; run spread_mlp@3 first"):
        spread.read_runs(runs, sweeps, params)


# -- One definition ---------------------------------------------------------------------------
def test_committed_spread_dvc_yaml_is_generated_from_the_definition():
    assert (ROOT / "spread" / "dvc.yaml").read_text() == render_spread_dvc_yaml()


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """A copy of the project with its committed locks, for plans that run nothing."""
    return make_project(tmp_path_factory.mktemp("spread-view") / "proj", lock=True)


def committed_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_dvc_expands_the_matrix_as_the_definition_does(copy):
    from dvc.repo import Repo

    with Repo(str(copy)) as repo:
        dvc = {f"{s.path_in_repo}:{s.name}": s for s in repo.index.stages
               if s.path_in_repo == "spread/dvc.yaml"}
        jobs = {j.address: j for j in spread_jobs(committed_params())}
        assert set(dvc) == set(jobs)
        assert len(jobs) == 3 * 10 + 4 * 3 + 1  # each method per seed, the grid, the page
        for address, s in dvc.items():
            j = jobs[address]
            assert s.cmd == j.cmd, address
            assert sorted(o.def_path for o in s.outs) == sorted(j.all_outputs), address
            params = sorted(k for d in s.deps if hasattr(d, "params") for k in d.params)
            assert params == sorted(j.params), address


def snakemake_jobs(proj: Path, *target: str) -> dict[str, dict]:
    """Each job of a forced dry run, by its first output: rule, inputs, shell command."""
    out = sh(*SNAKEMAKE[:1], *target, *SNAKEMAKE[1:], "--forceall", "--dry-run",
             "--printshellcmds", cwd=proj).stdout
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", out):
        m = re.match(r"(?:local)?rule (\w+):\n", block)
        fields = dict(re.findall(r"^    (input|output|resources|threads): (.*)$", block, re.M))
        if not m or "output" not in fields:
            continue
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        outputs = fields["output"].split(", ")
        jobs[outputs[0]] = {"rule": m.group(1), "input": fields.get("input", "").split(", "),
                            "output": outputs, "shell": shell.group(1) if shell else None,
                            "resources": fields.get("resources", "")}
    return jobs


def test_snakemake_runs_the_same_jobs_as_dvc(copy):
    snake = snakemake_jobs(copy, "spread")
    params = committed_params()
    gathered = {p for s in SPREAD if s.matrix for j in s.expand(params) for p in j.all_outputs}
    for j in spread_jobs(params):
        job = snake[j.all_outputs[0]]
        assert job["rule"] == j.rule
        assert job["output"] == j.all_outputs
        assert job["shell"].split(" > logs/")[0] == j.cmd
        # The page gathers each run's file; DVC depends on their folders instead.
        want = [*j.deps]
        if j.gathers:
            want = [p for p in want if p not in {j.inputs[f] for f in j.gathers}]
            assert set(job["input"]) - set(want) == gathered
        else:
            assert job["input"] == want
        assert ("gpu=1" in job["resources"]) == (j.gpu and GPU_HERE)


def test_neither_engine_starts_the_spread_by_default(copy):
    chapter = snakemake_jobs(copy)
    assert not [j for j in chapter.values() if j["rule"].startswith("spread")]
    out = sh("dvc", "repro", "--dry", "--force", cwd=copy).stdout
    assert "Running stage 'resnet18'" in out and "spread/dvc.yaml" not in out


# -- Both engines, on the tiny archive --------------------------------------------------------
def md5s(proj: Path) -> dict[str, str]:
    jobs = spread_jobs(yaml.safe_load((proj / "params.yaml").read_text()))
    return {p: hashlib.md5((proj / p).read_bytes()).hexdigest()
            for j in jobs for p in j.all_outputs}


def finished(finished_project, engine: str, dest: Path) -> tuple[Path, Path, dict]:
    """A copy of the session's finished chapter run (conftest.py) and its engines' env."""
    proj, archive = finished_project(engine, dest)
    return proj, archive, engine_env(MNIST_SAMPLE_URL=str(archive[0]))


def as_rule(address: str) -> str:
    """DVC's `spread/dvc.yaml:mlp@3` is Snakemake's rule spread_mlp; `mlp` is `mlp`."""
    file, _, name = address.rpartition(":")
    name = name.split("@")[0]
    return f"{Path(file).parent.name}_{name}" if file else name


@pytest.mark.slow
def test_spread_under_both_engines_makes_the_same_files_and_one_state(finished_project, tmp_path):
    # After the chapter's run (which starts no spread job: see above), `snakemake spread`
    # runs every one. harness.FAST_PARAMS: 2 seeds, 2 values.
    proj, _, env = finished(finished_project, "snakemake", tmp_path / "both")
    assert snakemake_plan(proj, env) == set()
    start = time.monotonic()
    log = sh(*SPREAD_RUN, cwd=proj, env=env).stderr
    print(f"tiny spread, {len(spread_jobs(yaml.safe_load((proj / 'params.yaml').read_text())))} "
          f"jobs, Snakemake: {time.monotonic() - start:.1f} s")
    assert ran(log) == {"spread_linear", "spread_mlp", "spread_resnet18", "spread_sweep",
                        "spread_report"}
    assert dvc_changed(proj, env, *BOTH) == set()  # both dvc.yaml files: one state
    assert snakemake_plan(proj, env, "spread") == set()

    # DVC, from the same chapter, remakes every run, table and the page byte for byte (its
    # run-cache would restore them: the test makes it train).
    made = md5s(proj)
    for p in made:
        (proj / p).unlink()
    (proj / "spread/dvc.lock").unlink()
    r = sh("dvc", "repro", "--no-run-cache", "spread/dvc.yaml", cwd=proj, env=env)  # retrain
    ran_dvc = set(re.findall(r"^Running stage '([^']+)'", r.stdout + r.stderr, re.M))
    assert ran_dvc == {j.address for j in spread_jobs(
        yaml.safe_load((proj / "params.yaml").read_text()))}, r.stdout[-2000:] + r.stderr[-2000:]
    assert md5s(proj) == made
    assert snakemake_plan(proj, env, "spread") == set()

    # Each run trained under its own seed; the sweep under its own value.
    one, two = (json.loads((proj / spread_run("mlp", s)).read_text()) for s in (0, 1))
    assert (one["seed"], two["seed"]) == (0, 1) and one["train_loss"] != two["train_loss"]
    low, high = (json.loads((proj / sweep_run(v, 0)).read_text()) for v in (0.1, 0.3))
    assert (low["set"], high["set"]) == ({"lr": 0.1}, {"lr": 0.3})
    assert low["train_loss"] != high["train_loss"]

    # A param that mlp reads reruns mlp's runs and the sweep over mlp, not the others.
    set_params(proj, mlp={"epochs": 2})
    expected = {"mlp", "report", "spread_mlp", "spread_sweep", "spread_report"}
    assert {as_rule(a) for a in dvc_changed(proj, env, *BOTH)} == expected
    # `spread` needs the chapter's mlp metrics (the page sets them beside), not its page.
    assert snakemake_plan(proj, env, "spread") == expected - {"report"}


# -- DVC's own queue, for ad-hoc sweeps -------------------------------------------------------
def queue_workers(proj: Path) -> list[int]:
    """PIDs of DVC queue workers working in `proj` (read from /proc; nothing is signalled)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            cwd = Path(d / "cwd").resolve()
        except (OSError, ValueError):
            continue
        if b"queue-worker" in cmd and (cwd == proj or proj in cwd.parents):
            pids.append(int(d.name))
    return pids


def unfinished_logs(proj: Path, env: dict, status: str) -> str:
    """`dvc queue logs` of each experiment that did not succeed, for the failure message."""
    names = re.findall(r"^(\S+)\s.*\b(?:Queued|Running|Failed)\b", status, re.M)
    return "".join(sh("dvc", "queue", "logs", n, cwd=proj, env=env, check=False).stdout
                   for n in names if n != "Task")


@pytest.mark.slow
def test_dvc_queue_runs_a_two_by_two_grid(finished_project, tmp_path):
    """The README's route: `dvc exp run --queue -S ...`, `dvc queue start -j 2`, `dvc exp show`."""
    # As the README has it, after `make run`: each experiment reruns only mlp and the page.
    proj, archive, env = finished(finished_project, "dvc", tmp_path / "queue")
    set_params(proj, data={"url": f"file://{archive[0]}"})  # queued runs read params only
    sh("dvc", "repro", cwd=proj, env=env)  # the download again, which the new url reads
    sh("git", "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A", cwd=proj)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "run",
       cwd=proj)
    sh("dvc", "exp", "run", "--queue", "-S", "mlp.lr=0.1,0.2", "-S", "mlp.hidden=30,60",
       cwd=proj, env=env)
    try:
        # The workers are daemons that inherit `start`'s stdout: capturing it would wait for
        # them all, past any deadline. The log file keeps what they say; status says the rest.
        with (tmp_path / "queue-start.log").open("w") as log:
            subprocess.run(("dvc", "queue", "start", "-j", "2"), cwd=proj, check=True,
                           env={**env, "PYTHONPATH": str(proj)}, stdout=log, stderr=log,
                           timeout=120)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = sh("dvc", "queue", "status", cwd=proj, env=env).stdout
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            time.sleep(3)
        assert status.count("Success") == 4, status + unfinished_logs(proj, env, status)
    finally:
        sh("dvc", "queue", "stop", cwd=proj, env=env, check=False)
    rows = sh("dvc", "exp", "show", "--csv", "--drop", ".*", "--keep",
              r"Experiment|mlp\.lr|mlp\.hidden|metrics/mlp\.json:train_loss", cwd=proj,
              env=env).stdout.splitlines()
    header, *body = [r.split(",") for r in rows]
    got = [dict(zip(header, r, strict=True)) for r in body if r[0]]  # the experiments
    assert sorted((r["mlp.lr"], r["mlp.hidden"]) for r in got) == [
        ("0.1", "30"), ("0.1", "60"), ("0.2", "30"), ("0.2", "60")]
    assert len({r["metrics/mlp.json:train_loss"] for r in got}) == 4  # four different runs
    deadline = time.monotonic() + 30
    while queue_workers(proj) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert queue_workers(proj) == []  # `dvc queue stop` left no worker behind


def test_the_page_speaks_report_lang(tmp_path):
    """The spread's page follows params.yaml report.lang, as the chapter's page does."""
    params = committed_params()
    params["spread"] = {"seeds": [0, 1]}
    params["sweep"] = {**params["sweep"], "values": [0.1, 0.2], "seeds": [0, 1]}
    runs = [{"method": m, "seed": s, "accuracy": 0.97 + s / 100, "accuracy_3": 0.9,
             "accuracy_7": 0.9, "train_loss": 0.1, "valid_loss": 0.1} for m in SPREAD_METHODS
            for s in (0, 1)]
    sweep = [{"key": "mlp.lr", "value": v, "method": "mlp", "seed": s, "accuracy": 0.98 + v / 10,
              "accuracy_3": 0.9, "accuracy_7": 0.9, "train_loss": 0.1, "valid_loss": 0.1}
             for v in (0.1, 0.2) for s in (0, 1)]
    chapter = {m: {"accuracy": 0.98} for m in SPREAD_METHODS}
    summary = spread.summarise(runs, sweep, chapter)
    pages = {}
    for lang in ("en", "et"):
        params["report"] = {"lang": lang}
        pages[lang] = spread.render(spread=runs, sweep=sweep, summary=summary, params=params)
    en, et = pages["en"], pages["et"]
    english = ("Accuracy over 2 seeds", "params held fixed", "The mean ± the sample standard",
               "trained at each value of", "book's percentile", "seeds from",  # the last: alt
               "Validation accuracy against")
    assert all(s in en for s in english)
    assert '<html lang="et">' in et and not [s for s in english if s in et]
    assert "Täpsus 2 seemnega" in et and "raamatu protsentiil" in et
    # The numbers do not change with the words.
    numbers = re.compile(r"\b\d\.\d{4}\b")
    assert numbers.findall(et) == numbers.findall(en)
