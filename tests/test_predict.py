"""`python -m mnist_basics predict`: your own pictures, each model, and every way it can go wrong.

The checkpoints are tiny ones, trained by the stages on tests/harness.py's stand-in data: they
test the command, not the accuracy (tests/test_prepare.py measures that on the real data).
"""

from __future__ import annotations

import json
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

from mnist_basics.__main__ import main
from mnist_basics.artifacts import save_tensors
from mnist_basics.predict import predict as predict_module
from mnist_basics.predict.predict import load_model
from mnist_basics.predict.prepare import prepare, read_picture
from mnist_basics.registry import METHODS
from tests.handwriting import digit as handwritten
from tests.handwriting import render
from tests.harness import make_tiny_tensors, train_all, write_params

ROOT = Path(__file__).resolve().parent.parent
MODELS = {m: METHODS[m] for m in ("pixel_mean", "linear", "mlp")}  # the registry, no resnet18


def train(root: Path, names: tuple[str, ...]) -> Path:
    """models/ under root as the stages write it, trained on tiny data (all at once)."""
    tensors = make_tiny_tensors(root / "tiny.safetensors")
    params = write_params(root / "params.yaml", train={"device": "cpu"},
                          linear={"epochs": 3, "batch_size": 16},
                          mlp={"epochs": 3, "batch_size": 16, "hidden": 8},
                          resnet18={"epochs": 1, "batch_size": 8})
    return train_all(names, root, tensors, params)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Tiny checkpoints of the three CPU models, and the tiny data's validation digits."""
    from safetensors.numpy import load_file

    root = tmp_path_factory.mktemp("predict")
    models = train(root, MODELS)
    return models, load_file(root / "tiny.safetensors")


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
    return sample["valid_x"][int(np.flatnonzero(sample["valid_y"] == label)[0])]


def drawn(label: int, **kw) -> np.ndarray:
    """A handwritten-looking 3 or 7 on white paper (tests/handwriting.py)."""
    style = "3 round" if label == 3 else "7 plain"
    return render(handwritten(style), (200, 240), height=170, at=(40, 30), width=14, **kw)


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


def model_says(name: str, models: Path, x: np.ndarray) -> str:
    """What predict should print for the prepared x: `3 (p=0.998)`."""
    model = load_model(name, models)
    p7, p3 = model.predict(torch.from_numpy(x)[None])[0].tolist()  # by label: 7, then 3
    assert model.names == ["7", "3"]
    return f"3 (p={p3:.3f})" if p3 > 0.5 else f"7 (p={p7:.3f})"


# -- It works --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_a_picture_gets_the_models_answer_on_it_prepared(name, trained, predict, tmp_path):
    models, sample = trained
    for label in (3, 7):
        for i, g in enumerate((drawn(label), 255 - digit(sample, 1 if label == 3 else 0))):
            path = png(tmp_path / f"{label}-{i}.png", g)
            want = model_says(name, models, prepare(g))
            assert predict(path, "--model", name, "--models-dir", models) == (0, want + "\n", "")


def test_the_file_is_read_as_it_is(tmp_path):
    """read_picture gives the grey levels unchanged; every other step is prepare's."""
    g = drawn(3)
    assert np.array_equal(read_picture(png(tmp_path / "d.png", g)), g)
    sixteen = png(tmp_path / "c.png", g.astype(np.uint16) * 257)  # 16-bit: its top 8 bits
    assert Image.open(sixteen).mode.startswith("I")
    assert np.array_equal(read_picture(sixteen), g)
    rgb = np.stack([g, g, g], axis=-1)
    assert np.array_equal(read_picture(png(tmp_path / "rgb.png", rgb)), g)
    # Black ink on a transparent canvas reads as ink on white paper.
    rgba = np.zeros((*g.shape, 4), np.uint8)
    rgba[..., 3] = 255 - g
    assert np.abs(read_picture(png(tmp_path / "a.png", rgba, "RGBA")).astype(int) - g).max() <= 1


def test_exif_orientation_is_applied(tmp_path):
    g = drawn(7)
    img = Image.fromarray(g)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif, quality=95)
    upright = read_picture(path)
    assert upright.shape == g.shape[::-1]
    assert np.abs(upright.astype(int) - np.rot90(g, -1)).mean() < 2


def test_a_photo_like_picture_is_prepared_like_the_drawing(trained, predict, tmp_path):
    """Larger, JPEG, RGB, grey paper, lighter ink, a wide page: nearly the same 28x28."""
    models, _ = trained
    for label in (3, 7):
        g = drawn(label)
        photo = drawn(label, paper=215, ink=70, light=15)
        wide = np.full((240, 700), 215, np.uint8)  # the digit off to one side
        wide[:, 450:650] = photo
        big = np.kron(wide, np.ones((3, 3), np.uint8))  # [720, 2100]
        path = tmp_path / f"{label}.jpg"
        Image.fromarray(big).convert("RGB").save(path, quality=85)
        x = prepare(read_picture(path))
        assert np.abs(x.astype(np.float64) - prepare(g)).mean() / 255 < 0.04
        code, out, _ = predict(path, "--model", "mlp", "--models-dir", models)
        assert code == 0 and out == model_says("mlp", models, x) + "\n"


def test_several_pictures_one_line_each_models_loaded_once(trained, predict, tmp_path,
                                                            monkeypatch):
    models, sample = trained
    folder = tmp_path / "pictures"
    folder.mkdir()
    png(folder / "b.png", drawn(7))
    Image.fromarray(drawn(3)).save(folder / "a.JPG")
    (folder / "notes.txt").write_text("not a picture, not a .png: skipped\n")
    (folder / "sub").mkdir()  # not looked into
    png(folder / "sub" / "c.png", drawn(3))
    one = png(tmp_path / "one.png", drawn(3))
    loads = []
    real_load = predict_module.load_model

    def counting(name, models_dir, dataset):
        loads.append(name)
        return real_load(name, models_dir, dataset)

    monkeypatch.setattr(predict_module, "load_model", counting)
    code, out, err = predict(one, folder, "--model", "linear", "--models-dir", models)
    assert (code, err) == (0, "") and loads == ["linear"]
    lines = out.splitlines()
    names = [str(one), str(folder / "a.JPG"), str(folder / "b.png")]
    assert [ln.split()[0] for ln in lines] == names
    for ln, path in zip(lines, names, strict=True):
        want = model_says("linear", models, prepare(read_picture(Path(path))))
        assert ln == f"{path.ljust(len(names[1]))}  {want}"
    # A folder alone still names each picture.
    code, out, _ = predict(folder, "--model", "linear", "--models-dir", models)
    assert [ln.split()[0] for ln in out.splitlines()] == names[1:]


def test_model_all_puts_every_model_side_by_side(trained, predict, tmp_path, monkeypatch):
    models, _ = trained
    monkeypatch.setattr(predict_module, "METHODS", MODELS)  # the tiny set has no resnet18
    a, b = png(tmp_path / "a.png", drawn(3)), png(tmp_path / "b.png", drawn(7))
    code, out, err = predict(a, b, "--model", "all", "--models-dir", models)
    assert (code, err) == (0, "")
    for ln, path in zip(out.splitlines(), (a, b), strict=True):
        x = prepare(read_picture(path))
        cells = [f"{m} {model_says(m, models, x)}" for m in MODELS]
        assert ln == "  ".join([str(path), *cells])
    code, out, _ = predict(a, "--model", "all", "--models-dir", models)
    assert out.startswith("pixel_mean ") and out.count(" (p=") == 3  # one picture: no name


def test_json_is_one_object_per_picture(trained, predict, tmp_path, monkeypatch):
    models, _ = trained
    monkeypatch.setattr(predict_module, "METHODS", MODELS)
    a = png(tmp_path / "a.png", drawn(3))
    blank = png(tmp_path / "blank.png", np.full((40, 40), 200, np.uint8))
    code, out, err = predict(a, blank, "--model", "all", "--json", "--models-dir", models)
    assert code == 1 and err == f"error: {blank}: no digit found\n"
    first, second = (json.loads(ln) for ln in out.splitlines())
    assert second == {"file": str(blank), "error": f"{blank}: no digit found"}
    assert first["file"] == str(a) and list(first["models"]) == list(MODELS)
    x = torch.from_numpy(prepare(read_picture(a)))[None]
    for name, got in first["models"].items():
        p7, p3 = load_model(name, models).predict(x)[0].tolist()
        assert got["probs"] == {"7": pytest.approx(p7, abs=1e-6), "3": pytest.approx(p3, abs=1e-6)}
        assert got["class"] == (3 if p3 > 0.5 else 7)
        assert got["p"] == pytest.approx(p3 if p3 > 0.5 else p7, abs=1e-6)


def test_show_writes_what_the_model_saw(trained, predict, tmp_path):
    models, _ = trained
    a = png(tmp_path / "a.png", drawn(3))
    out_png = tmp_path / "seen.png"
    code, _, err = predict(a, "--model", "mlp", "--models-dir", models, "--show", out_png)
    assert (code, err) == (0, "")
    seen = np.array(Image.open(out_png))
    assert seen.shape == (280, 280)
    x = prepare(read_picture(a))
    assert np.array_equal(seen, np.kron(x, np.ones((10, 10), np.uint8)))
    # Several pictures: a folder, one PNG each, named after the picture; a repeated name
    # gets -2. A picture that fails has none.
    (tmp_path / "other").mkdir()
    b = png(tmp_path / "other" / "a.png", drawn(7))
    c = png(tmp_path / "b.jpg", drawn(7))
    blank = png(tmp_path / "blank.png", np.full((40, 40), 255, np.uint8))
    shown = tmp_path / "shown"
    code, out, err = predict(a, b, c, blank, "--model", "mlp", "--models-dir", models,
                             "--show", shown)
    assert code == 1 and len(out.splitlines()) == 3 and err.count("\n") == 1
    assert sorted(p.name for p in shown.iterdir()) == ["a-2.png", "a.png", "b.png"]
    again = np.array(Image.open(shown / "a-2.png"))[::10, ::10]
    assert np.array_equal(again, prepare(read_picture(b)))


# -- The picture is wrong --------------------------------------------------------------------
def test_image_errors(trained, predict, tmp_path):
    models, _ = trained
    args = ("--model", "mlp", "--models-dir", models)

    expect_error(predict(tmp_path / "nope.png", *args), "nope.png: no such file")
    empty_folder = tmp_path / "pictures"
    empty_folder.mkdir()
    expect_error(predict(empty_folder, *args), "pictures: is a directory, not an image")

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


@pytest.mark.parametrize("case", ["grey", "white", "paper grain", "a speck"])
def test_a_blank_picture_holds_no_digit(case, trained, predict, tmp_path):
    """Before, a plain grey square was called "3 (p=1.000)"."""
    g = {"grey": np.full((64, 64), 128, np.uint8),
         "white": np.full((300, 200), 255, np.uint8),
         "paper grain": np.clip(np.random.default_rng(0).normal(230, 4, (120, 160)), 0,
                                255).astype(np.uint8),
         "a speck": np.pad(np.zeros((3, 3), np.uint8), 100, constant_values=250)}[case]
    path = png(tmp_path / "blank.png", g)
    expect_error(predict(path, "--model", "mlp", "--models-dir", trained[0]),
                 f"error: {path}: no digit found")


def test_one_bad_picture_among_good_ones(trained, predict, tmp_path):
    """The bad one gets its own error line, the others are answered, exit status 1."""
    models, _ = trained
    good = [png(tmp_path / "a.png", drawn(3)), png(tmp_path / "c.png", drawn(7))]
    bad = tmp_path / "b.png"
    bad.write_text("a shopping list\n")
    code, out, err = predict(good[0], bad, good[1], "--model", "mlp", "--models-dir", models)
    assert code == 1
    assert err == f"error: {bad}: not a PNG or JPEG image\n"
    pad = len(str(good[0]))
    assert out.splitlines() == [
        f"{str(p).ljust(pad)}  {model_says('mlp', models, prepare(read_picture(p)))}"
        for p in good]


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
    models, _ = trained
    img = png(tmp_path / "three.png", drawn(3))
    hidden = json.loads((models / "mlp.json").read_text())["arch"]["hidden"]

    expect_error(predict(img, "--model", "lenet", "--models-dir", models),
                 "unknown model 'lenet'; known models: pixel_mean, linear, mlp, resnet18")
    expect_error(predict(img, "--model", "resnet18", "--models-dir", models),
                 "resnet18.safetensors: not found; run stage resnet18 first")
    expect_error(predict(img, "--model", "all", "--models-dir", models),  # every model
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
    card = json.loads((models / "mlp.json").read_text())
    card["arch"]["hidden"] = hidden + 22
    (shapes / "mlp.json").write_text(json.dumps(card))
    expect_error(predict(img, "--model", "mlp", "--models-dir", shapes),
                 f"0.weight has shape [{hidden}, 784], expected [{hidden + 22}, 784]")
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
    models, _ = trained
    img = png(tmp_path / "seven.png", drawn(7))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*argv):
        return subprocess.run([sys.executable, "-m", "mnist_basics", *map(str, argv)],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    r = run("predict", img, "--model", "mlp", "--models-dir", models)
    want = model_says("mlp", models, prepare(drawn(7)))
    assert (r.returncode, r.stdout, r.stderr) == (0, want + "\n", "")
    r = run("predict", img, "--model", "mlp")  # ./models does not exist here
    assert r.returncode == 1
    assert r.stderr == ("error: models/mlp.safetensors: not found; run stage mlp first "
                        "(`snakemake models/mlp.safetensors` or `dvc repro mlp`)\n")
    r = run("--help")
    assert r.returncode == 0 and "predict" in r.stdout
    r = run("predict", "--help")
    assert r.returncode == 0 and "--show" in r.stdout and "--json" in r.stdout


@pytest.mark.slow
def test_model_all_with_resnet18(tmp_path):
    """Every model of the pipeline, resnet18 included, on a folder of pictures."""
    models = train(tmp_path, (*MODELS, "resnet18"))
    folder = tmp_path / "pictures"
    folder.mkdir()
    for label in (3, 7):
        png(folder / f"{label}.png", drawn(label))
    r = subprocess.run([sys.executable, "-m", "mnist_basics", "predict", folder, "--model", "all",
                        "--models-dir", models], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and r.stderr == ""
    for ln, label in zip(r.stdout.splitlines(), (3, 7), strict=True):
        x = prepare(drawn(label))
        assert ln == "  ".join([str(folder / f"{label}.png"),
                                *(f"{m} {model_says(m, models, x)}" for m in
                                  (*MODELS, "resnet18"))])
