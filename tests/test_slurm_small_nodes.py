"""The Slurm profile on a cluster whose nodes are smaller than a local run's resnet18 job.

resnet18 asks for the 4 CPUs a local run gives it. On nodes of 2 CPUs, under Slurm's
default limits (EnforcePartLimits=NO), such a job would pend forever with reason
PartitionConfig, and Snakemake would wait on it, silent. The profile fits the job to the
largest node of the default partition instead: the run ends, and resnet18's bytes are those
of a local run given the same 2 threads. Needs root and `make test-deps`.
"""

from __future__ import annotations

import pytest
import yaml

from mnist_basics.pipeline.definition import STAGES, WALL_CLOCK, timing
from tests.cluster import SlurmUnavailable, slurm_cluster
from tests.harness import make_tiny_archive
from tests.test_slurm import SLURM, by_rule, locked, md5, project, run

# resnet18 and what it needs (download, stack): the stage at stake.
LOCAL_TWO = ("snakemake", "resnet18", "--cores", "2", "--resources", "gpu=1")


@pytest.mark.slow
def test_on_two_cpu_nodes_resnet18_is_fitted_to_them_and_the_run_ends(tmp_path):
    (tmp_path / "archive").mkdir()
    archive = make_tiny_archive(tmp_path / "archive")
    for d in ("local", "slurm"):
        (tmp_path / d).mkdir()
    local = run(LOCAL_TWO, *project(tmp_path / "local", archive))
    try:
        with slurm_cluster(tmp_path / "cluster", cpus=2, memory_mb=8000,
                           enforce_limits=False) as cluster:
            on_slurm = run((*SLURM, "resnet18"), *project(tmp_path / "slurm", archive,
                                                           cluster), timeout=240)
            jobs = by_rule(cluster.jobs())
    except SlurmUnavailable as e:
        pytest.fail(str(e), pytrace=False)

    assert set(jobs) == {"download", "stack", "resnet18"}
    assert {j["state"] for j in jobs.values()} == {"COMPLETED"}
    assert jobs["resnet18"]["cpus"] == "2"
    threads = yaml.safe_load((on_slurm.proj / timing("resnet18")).read_text())["threads"]
    assert threads == 2
    # Every output as a local run on 2 threads makes it, resnet18's included.
    want = {p: h for p, h in locked(local.proj).items() if p not in WALL_CLOCK}
    assert {p for s in STAGES if s.name == "resnet18" for p in s.outputs.values()
            if p not in WALL_CLOCK} <= set(want)
    assert {p: md5(on_slurm.proj / p) for p in want} == want
