"""`python -m mnist_basics predict`: your own image, each model, and every way it can go wrong."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_basics import pixel_mean
from mnist_basics.__main__ import main
from mnist_basics.artifacts import save_tensors, write_json
from mnist_basics.data import load_sample
from mnist_basics.models import LINEAR_ARCH, Linear1, fit, mlp_arch, prepare, results, simple_net
from mnist_basics.params import Linear, Mlp, Train
from mnist_basics.predict import load_model, read_image
from mnist_basics.train import Clock, setup
from tests.conftest import make_tiny_tensors

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("pixel_mean", "linear", "mlp")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny trained checkpoints of the three CPU models, written as their stages write them."""
    root = tmp_path_factory.mktemp("predict")
    sample = load_sample(make_tiny_tensors(root / "tiny.safetensors"))
    models = root / "models"
    device = setup(0, "cpu", "mlp")
    data = prepare(sample, device)
    outs = {"pixel_mean": pixel_mean.results(sample, Clock())}
    linear = Linear1(std=0.01)  # std 1 needs far more than 96 images to learn
    outs["linear"] = results(
        "linear", linear, fit(linear, data, lr=1.0, epochs=3, batch_size=16, seed=0), data,
        arch=LINEAR_ARCH, params={"train": Train(), "linear": Linear()}, clock=Clock(),
        device=device)
    mlp = simple_net(8)
    outs["mlp"] = results(
        "mlp", mlp, fit(mlp, data, lr=0.5, epochs=3, batch_size=16, seed=0), data,
        arch=mlp_arch(8), params={"train": Train(), "mlp": Mlp(hidden=8)}, clock=Clock(),
        device=device)
    for name, out in outs.items():
        assert out["metrics"]["accuracy"] == 1.0, name
        save_tensors(models / f"{name}.safetensors", out["state"])
        write_json(models / f"{name}.json", out["card"])
    return models, sample


@pytest.fixture
def predict(capsys):
    """Run `python -m mnist_basics predict ARGS` in-process: (exit status, stdout, stderr)."""

    def run(*argv) -> tuple[int, str, str]:
        try:
            main(["predict", *map(str, argv)])
            code = 0
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def digit(sample, label: int) -> np.ndarray:
    """The first validation image of a 3 (label 1) or a 7 (label 0): uint8 [28, 28]."""
    i = int((sample.valid_y == label).nonzero()[0])
    return sample.valid_x[i].numpy()


def png(path: Path, a: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(a, mode).save(path)
    return path


def expect_error(result, *parts: str) -> None:
    code, out, err = result
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0], lines[0]


# -- It works --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_an_mnist_png_gets_the_models_own_answer(name, trained, predict, tmp_path):
    models, sample = trained
    for label, cls in ((1, 3), (0, 7)):
        x = digit(sample, label)
        prob3 = float(load_model(name, models)(torch.from_numpy(x)[None])[0])
        p = prob3 if cls == 3 else 1 - prob3
        code, out, err = predict(png(tmp_path / f"{cls}.png", x), "--model", name,
                                 "--models-dir", models)
        assert (code, out, err) == (0, f"{cls} (p={p:.3f})\n", "")


def test_a_28x28_png_is_read_unchanged(trained, tmp_path):
    x = digit(trained[1], 1)
    assert torch.equal(read_image(png(tmp_path / "d.png", x)), torch.from_numpy(x)[None])


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_a_photo_like_image_is_prepared_like_mnist(name, trained, predict, tmp_path):
    """Dark ink on light paper, 10x larger, JPEG, RGB: still the right digit."""
    models, sample = trained
    for label, cls in ((1, 3), (0, 7)):
        big = np.kron(255 - digit(sample, label), np.ones((10, 10), np.uint8))  # [280, 280]
        path = tmp_path / f"{cls}.jpg"
        Image.fromarray(big).convert("RGB").save(path, quality=90)
        code, out, _ = predict(path, "--model", name, "--models-dir", models)
        assert code == 0 and out.startswith(f"{cls} (p=")


def test_inversion_padding_and_other_modes(trained, tmp_path):
    x = digit(trained[1], 1)
    light_on_dark = read_image(png(tmp_path / "a.png", x))
    # Dark on light is flipped back.
    assert torch.equal(read_image(png(tmp_path / "b.png", 255 - x)), light_on_dark)
    # 16-bit grey keeps its top 8 bits.
    sixteen = png(tmp_path / "c.png", x.astype(np.uint16) * 257)
    assert Image.open(sixteen).mode.startswith("I")
    assert torch.equal(read_image(sixteen), light_on_dark)
    # Black ink on a transparent canvas reads as ink on white paper.
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = x
    assert torch.equal(read_image(png(tmp_path / "d.png", rgba, "RGBA")), light_on_dark)
    # A wide image is padded to a square, not squashed: the digit keeps its shape.
    wide = np.zeros((28, 84), np.uint8)
    wide[:, 28:56] = x
    out = read_image(png(tmp_path / "e.png", wide))
    assert out.shape == (1, 28, 28) and out.dtype == torch.uint8
    assert out[0, :9].float().mean() < 10 and out[0, 10:19].float().mean() > 20  # top band empty


# -- The image is wrong ----------------------------------------------------------------------
def test_image_errors(trained, predict, tmp_path):
    models, _ = trained
    args = ("--model", "mlp", "--models-dir", models)

    expect_error(predict(tmp_path / "nope.png", *args), "nope.png: no such file")
    expect_error(predict(tmp_path, *args), "is a directory")

    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n")
    expect_error(predict(text, *args), "notes.png: not a PNG or JPEG image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    expect_error(predict(empty, *args), "not a PNG or JPEG image")

    gif = tmp_path / "d.gif"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(gif)
    expect_error(predict(gif, *args), "a GIF image; give a PNG or JPEG")

    noise = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    data = png(tmp_path / "full.png", noise).read_bytes()
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 2])
    expect_error(predict(broken, *args), "broken.png: broken image, cannot decode it")

    expect_error(predict(png(tmp_path / "small.png", np.zeros((7, 20), np.uint8)), *args),
                 "20x7 pixels; each side must be 8 to 4096")


def claims(path: Path, side: int) -> Path:
    """A 10x10 PNG whose header says side x side: decoding it would fail (or explode)."""
    data = bytearray(png(path, np.zeros((10, 10), np.uint8)).read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = side.to_bytes(4, "big") * 2  # width, height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def test_a_huge_header_is_refused_before_decoding(trained, predict, tmp_path):
    """Sizes come from the header: a decompression bomb is never decoded."""
    args = ("--model", "mlp", "--models-dir", trained[0])
    # Were it decoded, this would be "broken image": the size check comes first.
    expect_error(predict(claims(tmp_path / "big.png", 5000), *args),
                 "big.png: 5000x5000 pixels; each side must be 8 to 4096")
    expect_error(predict(claims(tmp_path / "bomb.png", 50000), *args),
                 "bomb.png: too many pixels to decode safely; each side must be 8 to 4096")
    wide = png(tmp_path / "wide.png", np.zeros((8, 4097), np.uint8))  # a real one, just too wide
    expect_error(predict(wide, *args), "4097x8 pixels")


# -- The model is wrong ----------------------------------------------------------------------
def copy_models(src: Path, dst: Path, renames: dict[str, str]) -> Path:
    """dst with src's files copied under new names: {"linear.json": "mlp.json"}."""
    dst.mkdir()
    for a, b in renames.items():
        shutil.copy(src / a, dst / b)
    return dst


class Trap:
    """Unpickling this creates a file: proof of whether a pickle was ever executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_model_errors(trained, predict, tmp_path):
    models, sample = trained
    img = png(tmp_path / "three.png", digit(sample, 1))

    expect_error(predict(img, "--model", "lenet", "--models-dir", models),
                 "unknown model 'lenet'; known models: pixel_mean, linear, mlp, resnet18")
    expect_error(predict(img, "--model", "resnet18", "--models-dir", models),
                 "resnet18.safetensors: not found; run stage resnet18 first")
    no_card = copy_models(models, tmp_path / "no_card", {"mlp.safetensors": "mlp.safetensors"})
    expect_error(predict(img, "--model", "mlp", "--models-dir", no_card),
                 "mlp.json: not found; run stage mlp first")

    # The card says another model.
    other = copy_models(models, tmp_path / "other", {"linear.safetensors": "mlp.safetensors",
                                                     "linear.json": "mlp.json"})
    expect_error(predict(img, "--model", "mlp", "--models-dir", other),
                 "mlp.json: describes a 'linear' model, not 'mlp'")
    # The card is right but the tensors are another model's, or another size's.
    keys = copy_models(models, tmp_path / "keys", {"linear.safetensors": "mlp.safetensors",
                                                   "mlp.json": "mlp.json"})
    expect_error(predict(img, "--model", "mlp", "--models-dir", keys),
                 "does not fit a mlp model: it holds tensors ['bias', 'weights']")
    shapes = copy_models(models, tmp_path / "shapes", {"mlp.safetensors": "mlp.safetensors"})
    card = (models / "mlp.json").read_text().replace('"hidden": 8', '"hidden": 30')
    (shapes / "mlp.json").write_text(card)
    expect_error(predict(img, "--model", "mlp", "--models-dir", shapes),
                 "0.weight has shape [8, 784], expected [30, 784]")
    many = copy_models(models, tmp_path / "many", {"mlp.json": "mlp.json"})
    save_tensors(many / "mlp.safetensors", {f"layer{i}.weight": torch.zeros(1) for i in range(99)})
    expect_error(predict(img, "--model", "mlp", "--models-dir", many), "does not fit a mlp model")
    assert len(predict(img, "--model", "mlp", "--models-dir", many)[2]) < 500  # kept short
    means = copy_models(models, tmp_path / "means", {"pixel_mean.json": "pixel_mean.json"})
    save_tensors(means / "pixel_mean.safetensors", {"mean3": torch.zeros(28, 28)})
    expect_error(predict(img, "--model", "pixel_mean", "--models-dir", means),
                 "does not fit a pixel_mean model")

    # A truncated checkpoint.
    cut = copy_models(models, tmp_path / "cut", {"linear.json": "linear.json"})
    data = (models / "linear.safetensors").read_bytes()
    (cut / "linear.safetensors").write_bytes(data[: len(data) // 2])
    expect_error(predict(img, "--model", "linear", "--models-dir", cut),
                 "linear.safetensors: not a valid safetensors file")

    # A pickle renamed to .safetensors is refused and never unpickled.
    marker, check = tmp_path / "pwned", tmp_path / "live"
    pickle.loads(pickle.dumps(Trap(check)))
    assert check.exists()  # the trap is live
    trap = copy_models(models, tmp_path / "trap", {"linear.json": "linear.json"})
    (trap / "linear.safetensors").write_bytes(pickle.dumps({"weights": Trap(marker)}))
    expect_error(predict(img, "--model", "linear", "--models-dir", trap),
                 "linear.safetensors: not a valid safetensors file")
    assert not marker.exists()


# -- The command line ------------------------------------------------------------------------
def test_python_dash_m(trained, tmp_path):
    models, sample = trained
    img = png(tmp_path / "seven.png", digit(sample, 0))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*argv):
        return subprocess.run([sys.executable, "-m", "mnist_basics", *map(str, argv)],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    r = run("predict", img, "--model", "mlp", "--models-dir", models)
    assert r.returncode == 0 and r.stdout.startswith("7 (p=") and r.stderr == ""
    r = run("predict", img, "--model", "mlp")  # ./models does not exist here
    assert r.returncode == 1
    assert r.stderr == ("error: models/mlp.safetensors: not found; run stage mlp first "
                        "(`snakemake models/mlp.safetensors` or `dvc repro mlp`)\n")
    r = run("--help")
    assert r.returncode == 0 and "predict" in r.stdout
