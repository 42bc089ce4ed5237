"""The pipeline on Slurm: `snakemake --profile profiles/slurm` on a real single-node cluster.

tests/cluster.py starts the cluster (munged, slurmctld, slurmd on 127.0.0.1, one fake GPU)
once for the module; every run happens in copies of the project, on the tiny archive:
a clean run through the cluster makes the bytes a local run makes, leaves `dvc status`
clean, and a second run submits nothing; a training stage given TRAIN_GPUS=1 gets the GPU;
a job killed with `scancel` fails the run and loses nothing. Needs root and
`make test-deps`.

    pytest tests/test_slurm.py -s     # -s also prints the local and the Slurm run's seconds
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mnist_basics.pipeline import bridge
from mnist_basics.pipeline.definition import (
    MNIST_STAGES,
    SPREAD,
    STAGES,
    WALL_CLOCK,
    spread_jobs,
    timing,
)
from tests.cluster import SlurmCluster, SlurmUnavailable, alive, slurm_cluster
from tests.harness import (
    ROOT,
    SNAKEMAKE,
    VENV_BIN,
    dvc_changed,
    engine_env,
    make_tiny_archive,
    ran,
    set_params,
    sh,
    snakemake_plan,
    tiny_project,
)
from tests.servers import non_loopback_sockets

PROFILE = ROOT / "profiles/slurm"
# The copy's profile, as a user types it; but the first status check after 2 s, not the
# profile's 10: its waits suit a real cluster's queue, and these stages take seconds.
SLURM = ("snakemake", "--profile", "profiles/slurm",
         "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2")
TRAINING = sorted(s.rule for s in [*STAGES, *MNIST_STAGES, *SPREAD] if s.gpu)
METHODS = ("pixel_mean", "linear", "mlp", "resnet18")  # the stages that write a timing file
PLUGINS = ("snakemake_executor_plugin_slurm", "snakemake_executor_plugin_slurm_jobstep")

# Every stage's python, as the engines start it (`python stages/<stage>.py`), is this script
# first: it notes what the stage saw, then runs the venv's python.
PROBE = f"""#!/bin/sh
case "$1" in stages/*.py)
  echo "$1 ${{SLURM_JOB_ID:-none}} ${{CUDA_VISIBLE_DEVICES:-none}}" >> "$PROBE_LOG";;
esac
exec {VENV_BIN}/python "$@"
"""


def test_the_profile_asks_for_gpus_for_exactly_the_training_stages(monkeypatch):
    import yte

    for gpus in (0, 1):
        monkeypatch.setenv("TRAIN_GPUS", str(gpus))
        with open(PROFILE / "config.yaml") as f:
            profile = yte.process_yaml(f, require_use_yte=True)
        assert profile["set-resources"] == {name: {"gpu": gpus} for name in TRAINING}
    # resnet18's CPUs, as profiles/default gives it locally (see test_a_clean_run...).
    default = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    assert profile["set-threads"] == {s.rule: default["cores"]
                                      for s in [*STAGES, *MNIST_STAGES, *SPREAD]
                                      if s.multicore} and profile["cores"] == default["cores"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> SlurmCluster:
    """One cluster for the module: a node of 8 CPUs (resnet18 asks for 4) with a fake GPU."""
    missing = [p for p in PLUGINS if importlib.util.find_spec(p) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: pip install -r requirements.txt",
                    pytrace=False)
    try:
        with slurm_cluster(tmp_path_factory.mktemp("cluster"), cpus=8, memory_mb=16000,
                           gpus=1) as c:
            yield c
            pids = c.pids
            for name, pid in pids.items():  # nothing but loopback, after every run
                assert non_loopback_sockets(pid) == [], name
    except SlurmUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    assert [name for name, pid in pids.items() if alive(pid)] == []  # every daemon stopped


@dataclass
class Run:
    proj: Path
    env: dict
    log: str
    seconds: float
    probe: Path

    def saw(self) -> dict[str, tuple[str, str]]:
        """stage -> (SLURM_JOB_ID, CUDA_VISIBLE_DEVICES) its last run saw ("none": unset)."""
        lines = self.probe.read_text().splitlines() if self.probe.exists() else []
        return {Path(s).stem: (job, cuda) for s, job, cuda in map(str.split, lines)}


def project(root: Path, archive, cluster: SlurmCluster | None = None) -> tuple[Path, dict]:
    """A tiny project at root/proj and the environment its engines run in, probe first."""
    # A spread of 5 jobs: one seed and one sweep value, each kind of job once.
    proj = tiny_project(root / "proj", archive,
                        params={"spread": {"seeds": [0]}, "sweep": {"values": [0.1]}})
    probe = root / "probe"
    probe.mkdir()
    (probe / "python").write_text(PROBE)
    (probe / "python").chmod(0o755)
    env = engine_env(MNIST_SAMPLE_URL=str(archive[0]), PROBE_LOG=str(root / "probe.log"))
    env["PATH"] = f"{probe}{os.pathsep}{env['PATH']}"
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("TRAIN_GPUS", None)
    return proj, cluster.client_env(env) if cluster else env


def run(cmd, proj: Path, env: dict, timeout: int = 300) -> Run:
    t = time.monotonic()
    r = sh(*cmd, cwd=proj, env=env, check=False, timeout=timeout)
    seconds = time.monotonic() - t
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    return Run(proj, env, log, seconds, Path(env["PROBE_LOG"]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cluster) -> tuple[Run, Run]:
    """The same tiny project run locally (`snakemake --cores 4 --resources gpu=1`), then
    through the cluster with the profile as it is (no TRAIN_GPUS: no stage asks for a GPU)."""
    root = tmp_path_factory.mktemp("runs")
    (root / "archive").mkdir()
    archive = make_tiny_archive(root / "archive")
    (root / "local").mkdir()
    (root / "slurm").mkdir()
    local = run(SNAKEMAKE, *project(root / "local", archive))
    on_slurm = run(SLURM, *project(root / "slurm", archive, cluster))
    print(f"\nlocal run {local.seconds:.1f} s, Slurm run {on_slurm.seconds:.1f} s")
    return local, on_slurm


def locked(proj: Path) -> dict[str, str]:
    """Every output dvc.lock records -> its md5."""
    return {o["path"]: o["md5"] for s in bridge.read_lock(proj / "dvc.lock").values()
            for o in s.get("outs", [])}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def by_rule(jobs: list[dict]) -> dict[str, dict]:
    """squeue's jobs by rule (the plugin's comment is rule_<name>...), the latest of each."""
    out = {}
    for j in sorted(jobs, key=lambda j: int(j["id"])):
        m = re.match(r"rule_(\w+?)(?:_wildcards|$)", j["comment"])
        if m:
            out[m.group(1)] = j
    return out


@pytest.mark.slow
def test_a_clean_run_on_slurm_makes_what_a_local_run_makes(runs, cluster):
    local, on_slurm = runs
    stages = {s.name for s in STAGES}
    # Every stage ran in a Slurm job of its own; none asked for the GPU, none was given one.
    jobs = by_rule(cluster.jobs())
    assert set(jobs) == stages and {j["state"] for j in jobs.values()} == {"COMPLETED"}
    assert {j["gpus"] for j in jobs.values()} == {"N/A"}
    saw = on_slurm.saw()
    assert {stage: job for stage, (job, _) in saw.items()} == {
        stage: j["id"] for stage, j in jobs.items()}
    assert {cuda for _, cuda in saw.values()} == {"none"}
    assert set(local.saw()) == stages and {job for job, _ in local.saw().values()} == {"none"}

    # The same bytes, every output but the wall-clock ones, and in dvc.lock the same hashes.
    want = {p: h for p, h in locked(local.proj).items() if p not in WALL_CLOCK}
    clock = [p for p in WALL_CLOCK if p in {o for s in STAGES for o in s.all_outputs}]
    assert len(want) == len(locked(local.proj)) - len(clock) > 20  # the chapter's dvc.lock
    assert {p: md5(on_slurm.proj / p) for p in want} == want
    assert {p: h for p, h in locked(on_slurm.proj).items() if p not in WALL_CLOCK} == want

    # ...because each stage ran the thread count it runs locally (resnet18's results depend
    # on it): resnet18 was given 4 CPUs, the threads a local `--cores 4` run gives it.
    def threads(r: Run):
        return {m: yaml.safe_load((r.proj / timing(m)).read_text())["threads"] for m in METHODS}
    assert threads(on_slurm) == threads(local)
    assert jobs["resnet18"]["cpus"] == "4" and jobs["linear"]["cpus"] == "1"


@pytest.mark.slow
def test_after_a_slurm_run_dvc_is_clean_and_a_second_run_submits_nothing(runs, cluster):
    _, on_slurm = runs
    assert dvc_changed(on_slurm.proj, on_slurm.env) == set()  # committed by the run
    before = {j["id"] for j in cluster.jobs()}
    again = run(SLURM, on_slurm.proj, on_slurm.env)
    assert "Nothing to be done" in again.log and ran(again.log) == set()
    assert "submitted with SLURM jobid" not in again.log
    assert {j["id"] for j in cluster.jobs()} - before == set()  # no new job
    assert dvc_changed(on_slurm.proj, on_slurm.env) == set()


@pytest.mark.slow
def test_the_spread_runs_on_slurm_as_it_runs_locally(runs, cluster):
    """`snakemake spread --profile profiles/slurm`: each (method, seed) and sweep job its own
    sbatch job, the same bytes as `snakemake spread` here, and one state with DVC."""
    local, on_slurm = runs
    local_spread = run(("snakemake", "spread", *SNAKEMAKE[1:]), local.proj, local.env)
    before = {j["id"] for j in cluster.jobs()}
    slurm_spread = run((*SLURM[:1], "spread", *SLURM[1:]), on_slurm.proj, on_slurm.env)
    print(f"\nspread: local {local_spread.seconds:.1f} s, Slurm {slurm_spread.seconds:.1f} s")
    jobs = [j for j in cluster.jobs() if j["id"] not in before]
    params = yaml.safe_load((on_slurm.proj / "params.yaml").read_text())
    expected = spread_jobs(params)
    assert len(jobs) == len(expected) and {j["state"] for j in jobs} == {"COMPLETED"}
    assert {j["cpus"] for j in jobs if j["comment"].startswith("rule_spread_resnet18")} == {"4"}
    outputs = [p for j in expected for p in j.all_outputs]
    assert {p: md5(on_slurm.proj / p) for p in outputs} == {
        p: md5(local.proj / p) for p in outputs}
    assert dvc_changed(on_slurm.proj, on_slurm.env, "spread/dvc.yaml") == set()


@pytest.mark.slow
def test_with_train_gpus_a_training_stage_is_given_the_gpu(runs, cluster):
    _, on_slurm = runs
    outputs = [p for p in locked(on_slurm.proj) if p.startswith(("models/linear",
                                                                 "metrics/linear"))]
    before = {p: md5(on_slurm.proj / p) for p in outputs if p not in WALL_CLOCK}
    gpu = run([*SLURM, "--force", "linear"], on_slurm.proj,
              {**on_slurm.env, "TRAIN_GPUS": "1"})
    assert ran(gpu.log) == {"linear"}
    job = by_rule(cluster.jobs())["linear"]
    assert job["state"] == "COMPLETED" and job["gpus"] == "gres:gpu:1"
    assert on_slurm.saw()["linear"] == (job["id"], "0")  # CUDA_VISIBLE_DEVICES=0
    # No CUDA behind the fake GPU: the stage trained on the CPU, to the same bytes.
    assert {p: md5(on_slurm.proj / p) for p in before} == before
    # linear is recorded, and the page is still up to date: it shows linear's seconds, which
    # a rerun rewrites, but does not depend on them.
    assert dvc_changed(on_slurm.proj, on_slurm.env) == set()


@pytest.mark.slow
def test_a_job_killed_with_scancel_fails_the_run_and_loses_nothing(runs, cluster):
    _, on_slurm = runs
    proj, env = on_slurm.proj, on_slurm.env
    # linear and nn_linear rerun briefly; resnet18 would take minutes.
    set_params(proj, linear={"epochs": 4}, resnet18={"epochs": 100})
    plan = snakemake_plan(proj, env)
    assert {"linear", "nn_linear", "resnet18", "report"} <= plan
    kept = {p: ((proj / p).read_bytes(), (proj / p).stat().st_mtime_ns)
            for s in STAGES if s.name not in plan for p in s.all_outputs}
    recorded = bridge.read_lock(proj / "dvc.lock")["resnet18"]

    log = proj.parent / "cancelled.log"
    with open(log, "w") as out:
        snake = subprocess.Popen(SLURM, cwd=proj, env={**env, "PYTHONPATH": str(proj)},
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        job = cluster.wait_for_job(lambda j: j["comment"].startswith("rule_resnet18")
                                   and j["state"] == "RUNNING", timeout=120)
        cluster.run("scancel", job["id"])
        rc = snake.wait(timeout=180)
    finally:
        if snake.poll() is None:
            os.killpg(snake.pid, signal.SIGTERM)  # its own session: this run and nothing else
            snake.wait(30)
    text = log.read_text()
    assert rc != 0, text[-4000:]
    assert "Error in rule resnet18" in text
    assert f"SLURM-job '{job['id']}' failed, SLURM status is: 'CANCELLED'" in text
    assert "Exiting because a job execution failed" in text

    # What ran beside it finished and was recorded; what came before is as it was.
    assert dvc_changed(proj, env) == {"resnet18", "report"}
    assert snakemake_plan(proj, env) == {"resnet18", "report"}
    assert {p: ((proj / p).read_bytes(), (proj / p).stat().st_mtime_ns) for p in kept} == kept
    # resnet18's last good outputs are still recorded, and in DVC's cache.
    assert bridge.read_lock(proj / "dvc.lock")["resnet18"] == recorded
    cache = proj / ".dvc/cache/files/md5"
    assert all((cache / o["md5"][:2] / o["md5"][2:]).is_file() for o in recorded["outs"])
