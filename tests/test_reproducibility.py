"""Reproducibility: two clean runs give the same bytes, and a DVC remote gives them back.

The tests compare two clean `dvc repro` runs of the project (see `tiny_project` in
tests/harness.py) on one tiny archive, with few epochs. Run them with
`pytest tests/test_reproducibility.py`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from mnist_basics.pipeline.definition import STAGES, WALL_CLOCK
from tests.harness import dvc_changed, engine_env, sh, tiny_project

# What may differ between two runs: wall-clock seconds, and the date the page was made.
# Seconds live in the timing files and on the page alone (histories, metrics and
# reports/accuracy.csv are results only).
ALL_OUTPUTS = [p for s in STAGES for p in s.all_outputs]
MAY_DIFFER = set(WALL_CLOCK) & set(ALL_OUTPUTS)  # the chapter's (these runs are the chapter)
GIT = ("git", "-c", "user.name=t", "-c", "user.email=t@example.com")


def locked_md5s(proj: Path) -> dict[str, str]:
    """Every output's md5 as dvc.lock records it (a folder's is the md5 of its listing)."""
    lock = yaml.safe_load((proj / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage["outs"]}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, finished_project) -> tuple[Path, Path]:
    """Two copies of the project, each run from scratch by `dvc repro`, on the same archive:
    the session's finished run (conftest.py), and one more here."""
    root = tmp_path_factory.mktemp("repro")
    first, archive = finished_project("dvc", root / "a")
    second = tiny_project(root / "b", archive)
    sh("dvc", "repro", cwd=second, env=engine_env(MNIST_SAMPLE_URL=str(archive[0])))
    return first, second


@pytest.mark.slow
def test_two_clean_runs_differ_only_in_wall_clock_figures(two_runs):
    a, b = (locked_md5s(p) for p in two_runs)
    assert set(a) == set(b) == set(ALL_OUTPUTS)
    differ = {path for path in a if a[path] != b[path]}
    assert differ <= MAY_DIFFER, sorted(differ - MAY_DIFFER)
    # ...and the comparison sees a difference where there surely is one: every timing file,
    # and the page that shows them (and when it was written).
    assert differ == MAY_DIFFER


@pytest.mark.slow
def test_wall_clock_figures_are_not_results(two_runs):
    """Neither `dvc metrics` nor `dvc exp show` presents seconds as results: the second run's
    metrics against the first's, committed, show no change at all."""
    first, second = two_runs
    env = engine_env()
    sh(*GIT, "add", "-A", cwd=second)
    sh(*GIT, "commit", "-qm", "run", cwd=second)
    metrics = [p for s in STAGES for p in s.metrics.values()]
    try:
        for path in metrics:  # kept in git: the first run's in place of the second's
            shutil.copyfile(first / path, second / path)
        assert json.loads(sh("dvc", "metrics", "diff", "--json", cwd=second,
                             env=env).stdout) == {}
    finally:
        sh("git", "checkout", "--", *metrics, cwd=second)
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=second, env=env).stdout)
    files = {f for rev in shown.values() for f in rev["data"]}
    # The four methods' metrics: the full MNIST's dvc.yaml is DVC's to see once it is built,
    # and the spread's summary is a plain output.
    assert files == {p for s in STAGES for p in s.metrics.values()} and len(files) == 4
    columns = sh("dvc", "exp", "show", "--csv", "--no-pager", cwd=second,
                 env=env).stdout.splitlines()[0]
    assert "seconds" not in columns and "accuracy" in columns and "mlp.lr" in columns


@pytest.mark.slow
def test_push_delete_pull_gives_every_artifact_back(two_runs, tmp_path):
    proj = two_runs[0]
    env = engine_env()
    sh("dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"), cwd=proj, env=env)
    # The chapter's dvc.yaml: mnist/dvc.yaml's stages never ran in this copy.
    sh("dvc", "push", "dvc.yaml", cwd=proj, env=env)
    assert "in sync" in sh("dvc", "status", "--cloud", "dvc.yaml", cwd=proj, env=env).stdout
    # Metrics and plots are kept in git (cache: false): commit them with dvc.lock. The
    # timing files are DVC outputs like the checkpoints: the remote gives them back.
    sh(*GIT, "add", "-A", cwd=proj)
    sh(*GIT, "commit", "-qm", "run", cwd=proj)
    before = locked_md5s(proj)

    shutil.rmtree(proj / ".dvc" / "cache")
    for d in ("data", "models", "metrics", "reports"):
        for p in (proj / d).iterdir() if (proj / d).exists() else []:
            if p.name != ".gitignore" and str(p.relative_to(proj)) in ALL_OUTPUTS:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    assert not any((proj / p).exists() for p in ALL_OUTPUTS)
    sh("git", "checkout", "--", ".", cwd=proj)  # what git keeps: metrics and plots
    sh("dvc", "pull", "dvc.yaml", cwd=proj, env=env)

    assert dvc_changed(proj, env) == set()
    assert all((proj / p).exists() for p in ALL_OUTPUTS)
    assert locked_md5s(proj) == before
    for path, md5 in before.items():  # and each file's bytes, hashed here (folders: by DVC)
        if (proj / path).is_file():
            assert hashlib.md5((proj / path).read_bytes()).hexdigest() == md5, path
