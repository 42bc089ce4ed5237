"""The full MNIST through the chapter's stages: one definition, two datasets.

On tiny archives, both engines run both datasets to the same bytes and one state, and a param
that only the full MNIST's stages read reruns only them. On the real mnist_png.tgz (slow), the
stages reach the issue's figures: pixel_mean's exactly, the trained methods' targets.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from mnist_basics.pipeline import MNIST_STAGES, STAGES, WALL_CLOCK, metrics, report
from tests.digits_archive import make_digits_archive, real_digits_archive
from tests.harness import (
    ROOT,
    SNAKEMAKE,
    dvc_changed,
    engine_env,
    make_tiny_archive,
    ran,
    run_stage,
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
    assert set(json.loads((proj / metrics("linear", "mnist")).read_text())) >= {
        "accuracy", *(f"accuracy_{d}" for d in range(10))}
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


# -- The real data ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """The full MNIST's stages on the real archive, once: download to the page."""
    out = tmp_path_factory.mktemp("mnist-real")
    env = {"MNIST_URL": str(real_digits_archive())}
    for s in MNIST_STAGES:
        paths = {}
        if s.name == "report":  # beside the chapter's committed figures
            paths = {f"sample_{m}_metrics": ROOT / metrics(m) for m in
                     ("pixel_mean", "linear", "mlp", "resnet18")}
        params = ROOT / "params.yaml" if s.params else None
        r = run_stage(s.name, dataset="mnist", under=out, params=params, threads=None,
                      env=env, timeout=900, **paths)
        assert r.returncode == 0, f"{s.address}:\n{r.stderr[-3000:]}"
    return out


def real_metrics(out: Path, method: str) -> dict:
    return json.loads((out / metrics(method, "mnist")).read_text())


@pytest.mark.slow
def test_pixel_mean_on_ten_digits_gives_its_figures_exactly(real):
    m = real_metrics(real, "pixel_mean")
    assert (m["accuracy"], m["rmse_accuracy"]) == (0.6685, 0.8203)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "target"),
                         [("linear", 0.920), ("mlp", 0.970), ("resnet18", 0.990)])
def test_each_trained_method_reaches_its_target_on_ten_digits(real, method, target):
    assert real_metrics(real, method)["accuracy"] >= target


@pytest.mark.slow
def test_the_page_sets_each_method_beside_mnist_sample(real):
    page = (real / report("mnist")).read_text()
    for method in ("pixel_mean", "linear", "mlp", "resnet18"):
        here = real_metrics(real, method)["accuracy"]
        sample = json.loads((ROOT / metrics(method)).read_text())["accuracy"]
        assert f"{here:.4f}" in page and f"{sample:.4f}" in page, method


def predict(*args: str) -> tuple[int, str, str]:
    r = sh("python", "-m", "mnist_basics", "predict", *args, cwd=ROOT, check=False)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.slow
def test_predict_reads_any_digit_with_the_full_mnist_models(real):
    models = str(real / "models/mnist")
    code, out, err = predict("examples", "--dataset", "mnist", "--models-dir", models,
                             "--model", "all", "--json")
    assert code == 0, err
    answers = {Path(json.loads(line)["file"]).name: json.loads(line)["models"]
               for line in out.splitlines()}
    assert set(answers) == {p.name for p in (ROOT / "examples").glob("*.png")}
    for name, by_model in answers.items():
        for model, a in by_model.items():
            assert a["class"] in range(10) and len(a["probs"]) == 10, (name, model)
            assert a["p"] == pytest.approx(max(a["probs"]), abs=1e-6)
    assert answers["three.png"]["resnet18"]["class"] == 3
    assert answers["seven.png"]["resnet18"]["class"] == 7
    # A ten-digit model asked as a 3-or-7 one says how to ask it.
    code, _, err = predict("examples/three.png", "--models-dir", models)
    assert code == 1 and "pass --dataset mnist" in err
