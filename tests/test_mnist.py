"""The full MNIST through the chapter's stages: one definition, two datasets.

On tiny archives, both engines run both datasets to the same bytes and one state, and a param
that only the full MNIST's stages read reruns only them. The real mnist_png.tgz's figures are
test_mnist_real.py's (a file of its own, so the two long runs go side by side).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from mnist_basics.pipeline.definition import (
    MNIST_STAGES,
    STAGES,
    WALL_CLOCK,
    classes,
    metrics,
    report,
)
from tests.digits_archive import make_digits_archive
from tests.harness import (
    SNAKEMAKE,
    dvc_changed,
    engine_env,
    make_tiny_archive,
    ran,
    set_params,
    sh,
    snakemake_plan,
    tiny_project,
)

BOTH = ("dvc.yaml", "mnist/dvc.yaml")  # `dvc status` of both datasets
EVERY_OUTPUT = [p for s in [*STAGES, *MNIST_STAGES] for p in s.all_outputs]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    sample = make_tiny_archive(root / "sample")
    digits = make_digits_archive(root / "digits")
    env = engine_env(MNIST_SAMPLE_URL=str(sample[0]), MNIST_URL=str(digits[0]))
    return root, sample, digits, env


def md5s(proj: Path) -> dict[str, str]:
    """Every output of both datasets' stages but the wall-clock ones: path -> md5."""
    return {p: hashlib.md5((proj / p).read_bytes()).hexdigest() for p in EVERY_OUTPUT
            if p not in WALL_CLOCK}


def as_rule(address: str) -> str:
    """DVC's `mnist/dvc.yaml:mlp` is Snakemake's rule mnist_mlp; `mlp` is `mlp`."""
    file, _, name = address.rpartition(":")
    return f"{Path(file).parent.name}_{name}" if file else name


@pytest.mark.slow
def test_both_engines_run_both_datasets_to_the_same_bytes_and_one_state(tiny):
    root, sample, digits, env = tiny
    proj = tiny_project(root / "both", sample, digits=digits,
                        params={"datasets": ["mnist_sample", "mnist"]})

    # `make run` once params.yaml lists both datasets: every stage of both, one state after.
    log = sh(*SNAKEMAKE, cwd=proj, env=env).stderr
    assert ran(log) == {s.rule for s in [*STAGES, *MNIST_STAGES]}
    assert dvc_changed(proj, env, *BOTH) == set()
    made = md5s(proj)
    card = json.loads((proj / "models/mnist/linear.json").read_text())
    assert card["labels"] == [str(d) for d in range(10)]
    # The chapter's metrics keys; each digit's accuracy beside them.
    assert list(json.loads((proj / metrics("linear", "mnist")).read_text())) == [
        "accuracy", "epochs", "train_loss", "valid_loss"]
    assert list(json.loads((proj / classes("linear", "mnist")).read_text())) == [
        f"accuracy_{d}" for d in range(10)]
    assert (proj / report("mnist")).read_text().startswith("<!DOCTYPE html>")

    # `make repro`, from nothing (DVC's run-cache would restore the runs: it must train).
    for p in EVERY_OUTPUT:
        (proj / p).unlink()
    for f in BOTH:
        (proj / f.replace(".yaml", ".lock")).unlink()
    files = sh("python", "-m", "mnist_basics", "dvcfiles", cwd=proj).stdout.split()
    assert files == list(BOTH)
    r = sh("dvc", "repro", "--no-run-cache", *files, cwd=proj, env=env)
    ran_dvc = set(re.findall(r"^Running stage '([^']+)'", r.stdout + r.stderr, re.M))
    assert {as_rule(a) for a in ran_dvc} == {s.rule for s in [*STAGES, *MNIST_STAGES]}
    assert md5s(proj) == made
    assert snakemake_plan(proj, env) == set()

    # A param only the full MNIST's mlp reads reruns it and its page, under either engine.
    set_params(proj, mnist={"mlp": {"epochs": 1}})
    assert {as_rule(a) for a in dvc_changed(proj, env, *BOTH)} == {"mnist_mlp", "mnist_report"}
    assert snakemake_plan(proj, env) == {"mnist_mlp", "mnist_report"}
    # And the chapter's run alone stays the chapter's: no full-MNIST job.
    set_params(proj, datasets=["mnist_sample"])
    assert snakemake_plan(proj, env) == set()
