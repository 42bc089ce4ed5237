"""The full MNIST's stages on the real mnist_png.tgz (slow): the download's files verified, the
stack as the chapter's PIL loop makes it, pixel_mean's figures exactly, the trained methods'
targets, the page beside MNIST_SAMPLE's figures, and predict on its models.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mnist_basics.artifacts import load_tensors
from mnist_basics.pipeline.definition import MNIST_STAGES, metrics, report
from tests.harness import ROOT, run_stage, sh
from tests.test_download import MNIST_DATA, digest_of_files, files_of
from tests.test_stack import pil_decode

COUNTS = {"training": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
          "testing": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]}


# -- The real data ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(tmp_path_factory, mnist_png_archive) -> Path:
    """The full MNIST's stages on the real archive, once: download to the page."""
    out = tmp_path_factory.mktemp("mnist-real")
    env = {"MNIST_URL": str(mnist_png_archive)}
    for s in MNIST_STAGES:
        paths = {}
        if s.name == "report":  # beside the chapter's committed figures
            paths = {f"sample_{m}_metrics": ROOT / metrics(m) for m in
                     ("pixel_mean", "linear", "mlp", "resnet18")}
        params = ROOT / "params.yaml" if s.params else None
        r = run_stage(s.name, dataset="mnist", under=out, params=params, threads=None,
                      env=env, timeout=900, **paths)
        assert r.returncode == 0, f"{s.address}:\n{r.stderr[-3000:]}"
        (out / f"{s.name}.log").write_text(r.stderr)  # what the stage said
    return out


def real_metrics(out: Path, method: str) -> dict:
    return json.loads((out / metrics(method, "mnist")).read_text())


@pytest.mark.slow
def test_the_download_writes_the_real_files_verified_by_their_content_digest(
        real, mnist_png_archive):
    counts = ", ".join(f"{split}/{d} {n}" for split, ns in COUNTS.items() for d, n in enumerate(ns))
    assert re.search(rf"\({re.escape(counts)}; verified by (md5|content digest)\)$",
                     (real / "download.log").read_text(), re.M)
    written = files_of((real / "data/mnist.tgz").read_bytes(), "mnist_png")
    assert digest_of_files(written) == MNIST_DATA.content_digest == (
        "440aecd9ceb2cd44eac149611340e78472690a02053a621bc064406d89cd0985")
    assert written == files_of(mnist_png_archive.read_bytes(), "mnist_png")


@pytest.mark.slow
def test_the_stack_is_what_the_chapters_pil_loop_makes(real, mnist_png_archive):
    counts = json.loads((real / "data/mnist_counts.json").read_text())
    digits = [str(d) for d in range(10)]
    assert counts == {split: dict(zip(digits, ns, strict=True)) for split, ns in COUNTS.items()}
    t = load_tensors(real / "data/mnist.safetensors")
    assert {k: (tuple(v.shape), str(v.dtype)) for k, v in t.items()} == {
        "train_x": ((60000, 28, 28), "torch.uint8"), "train_y": ((60000,), "torch.uint8"),
        "valid_x": ((10000, 28, 28), "torch.uint8"), "valid_y": ((10000,), "torch.uint8")}
    with tarfile.open(mnist_png_archive) as tf:
        pngs = {m.name: tf.extractfile(m).read() for m in tf if m.name.endswith(".png")}
    for key, split in [("train", "training"), ("valid", "testing")]:
        assert t[f"{key}_y"].tolist() == [d for d, n in enumerate(COUNTS[split]) for _ in range(n)]
        # The chapter's loop: each digit's PNGs, sorted by name, opened by PIL.
        files = sorted((n for n in pngs if n.startswith(f"mnist_png/{split}/")),
                       key=lambda n: (n.split("/")[2], n.rsplit("/", 1)[1]))
        pixels = [pil_decode(io.BytesIO(pngs[n])) for n in files]
        np.testing.assert_array_equal(t[f"{key}_x"].numpy(), np.stack(pixels))


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
            assert a["class"] in range(10) and list(a["probs"]) == list("0123456789"), name
            chosen = a["probs"][str(a["class"])]
            assert chosen == max(a["probs"].values()), model
            assert a["p"] == pytest.approx(chosen, abs=1e-6), model
    assert answers["three.png"]["resnet18"]["class"] == 3
    assert answers["seven.png"]["resnet18"]["class"] == 7
    # A ten-digit model asked as a 3-or-7 one says how to ask it.
    code, _, err = predict("examples/three.png", "--models-dir", models)
    assert code == 1 and "pass --dataset mnist" in err
