"""Classify your own pictures of a 3 or a 7 with any of the pipeline's trained models.

    python -m mnist_basics predict my_digit.png --model resnet18
    3 (p=0.998)
    python -m mnist_basics predict my_digit.png --dataset mnist   # any digit, 0-9
    4 (p=0.991)
    python -m mnist_basics predict examples/ --model all
    examples/seven.png           pixel_mean 7 (p=0.575)  linear 7 (p=1.000)  mlp 7 (p=1.000) ...
    examples/seven_crossbar.png  pixel_mean 7 (p=0.573)  linear 7 (p=1.000)  mlp 7 (p=1.000) ...

`--dataset mnist` asks the models trained on the full MNIST (models/mnist/), which answer
any digit 0-9. It prints the class and the model's probability for that class, one line per
picture, after the picture's name when there are several; `--model all` puts every model
side by side, and `--json` writes one JSON object per picture instead. A folder stands for
the .png, .jpg and .jpeg files in it, by name. A picture that cannot be read, or that holds
no digit, gets its own `error:` line on stderr; the others are still answered, and the exit
status is 1. The models are loaded once, before any picture is read.

Any PNG or JPEG works. Sizes are checked from the header before anything is decoded, EXIF
orientation is applied, transparent parts count as white paper, and dark ink on light paper
is flipped. Then the picture is prepared the way MNIST was made (mnist_basics/predict/prepare.py):
the digit's bounding box scaled into a 20x20 box (a thin pen widened to MNIST's), its centre
of mass put at the centre of the 28x28. `--show out.png` writes that 28x28 as the model saw
it, 10 times larger. With several pictures (a folder counts as several), or when the path is
a folder, `--show DIR` writes DIR/<name>.png for each: the picture's name without its
extension, with -2, -3 ... when two share one. A picture that fails gets none.
Checkpoints are safetensors read without pickle: nothing in a model file is ever executed.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnist_basics import PipelineError
from mnist_basics.artifacts import load_tensors, read_json, write_bytes
from mnist_basics.pipeline.definition import checkpoint, dvcfile, model_card
from mnist_basics.predict.prepare import prepare, read_picture, short
from mnist_basics.registry import DATASETS, METHODS, SAMPLE

if TYPE_CHECKING:
    from torch import Tensor

SUFFIXES = (".png", ".jpg", ".jpeg")  # what a folder is searched for
SHOW_SCALE = 10  # --show: 28x28 -> 280x280
BATCH = 256  # pictures per forward pass


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("images", type=Path, nargs="+", metavar="PICTURE",
                    help="PNG or JPEG files of one handwritten 3 or 7 each (any digit with "
                         "--dataset mnist), or folders of them")
    ap.add_argument("--model", default="resnet18", metavar="NAME",
                    help=f"one of {', '.join(METHODS)}, or all (default: %(default)s)")
    ap.add_argument("--dataset", choices=DATASETS, default=SAMPLE,
                    help="the models trained on which dataset: mnist_sample (3 or 7) or "
                         "mnist (0-9) (default: %(default)s)")
    ap.add_argument("--models-dir", type=Path,
                    help="where the stages wrote their checkpoints (default: models/ for "
                         "mnist_sample, models/mnist/ for mnist)")
    ap.add_argument("--json", action="store_true",
                    help="one JSON object per picture: file, each model's class, p and probs "
                         "(each class's probability; show: the --show PNG), or file and error")
    ap.add_argument("--show", type=Path, metavar="PATH",
                    help="write the 28x28 each model saw, enlarged: a PNG for one picture, "
                         "a folder of them for several")


def main(args: argparse.Namespace) -> None:
    names = list(METHODS) if args.model == "all" else [args.model]
    models_dir = args.models_dir or Path(checkpoint("x", args.dataset)).parent
    models = {name: load_model(name, models_dir, args.dataset)  # once, up front
              for name in names}
    answers = read_all(args.images)
    ok = [a for a in answers if a.error is None]
    named = len(args.images) > 1 or any(p.is_dir() for p in args.images)
    if args.show is not None and ok:
        folder = named or args.show.is_dir()
        for a, path in zip(ok, show_paths(args.show, [a.path for a in ok], folder), strict=True):
            write_bytes(path, enlarged_png(a.x))
            a.shown = path
    classify(models, ok)
    pad = max(len(str(a.path)) for a in answers)
    for a in answers:
        if a.error is not None:
            if args.json:
                print(json.dumps({"file": str(a.path), "error": a.error}), flush=True)
            print(f"error: {a.error}", file=sys.stderr, flush=True)
        elif args.json:
            record: dict[str, object] = {"file": str(a.path), "models": {
                m: {"class": int(label(p)), "p": round(p[label(p)], 6), "probs": p}
                for m, p in a.probs.items()}}
            if a.shown is not None:
                record["show"] = str(a.shown)
            print(json.dumps(record), flush=True)
        else:
            print(line(str(a.path).ljust(pad) if named else None, a.probs), flush=True)
    if len(ok) < len(answers):
        raise SystemExit(1)


@dataclass
class Answer:
    """One picture: its 28x28 and each model's probability of each class, or why there are
    none."""

    path: Path
    x: np.ndarray | None = None  # uint8 [28, 28]
    error: str | None = None
    probs: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> class -> p
    shown: Path | None = None  # where --show wrote its 28x28


def read_all(given: list[Path]) -> list[Answer]:
    """Every picture the paths stand for, prepared; a failure is kept as that file's answer."""
    answers = []
    for path in given:
        try:
            files = pictures(path)
        except PipelineError as e:
            answers.append(Answer(path, error=str(e)))
            continue
        for f in files:
            try:
                answers.append(Answer(f, x=prepare_file(f)))
            except PipelineError as e:
                answers.append(Answer(f, error=str(e)))
    return answers


def classify(models: dict[str, Model], answers: list[Answer]) -> None:
    """Fill in each answer's probabilities from every model, a batch of pictures at a time;
    the classes by label, as in the stages' `probs` (MNIST_SAMPLE: 7, then 3)."""
    import torch

    with torch.inference_mode():
        for start in range(0, len(answers), BATCH):
            chunk = answers[start:start + BATCH]
            x = torch.from_numpy(np.stack([a.x for a in chunk]))
            for name, model in models.items():
                for a, p in zip(chunk, model.predict(x).float().tolist(), strict=True):
                    a.probs[name] = dict(zip(model.names, p, strict=True))


def label(probs: dict[str, float]) -> str:
    """The class the model chose: the likeliest, the first by label of a tie, as the stages
    count it (on MNIST_SAMPLE a 3 exactly when its probability is over 0.5)."""
    return max(probs, key=probs.__getitem__)


def line(name: str | None, probs: dict[str, dict[str, float]]) -> str:
    """`3 (p=0.998)`; several models side by side, each after its name; the file's name first."""
    cells = [f"{label(p)} (p={p[label(p)]:.3f})" for p in probs.values()]
    if len(probs) > 1:
        cells = [f"{m} {c}" for m, c in zip(probs, cells, strict=True)]
    return "  ".join(cells if name is None else [name, *cells])


# -- The pictures ----------------------------------------------------------------------------
def pictures(path: Path) -> list[Path]:
    """A path as given -> the pictures it stands for: itself, or a folder's pictures by name."""
    if not path.is_dir():
        return [path]  # read_picture says what is wrong with it, if anything
    try:
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES
                       and not p.name.startswith(".") and p.is_file())
    except PermissionError:
        raise PipelineError(f"{path}: permission denied") from None
    if not found:
        raise PipelineError(f"{path}: is a directory, not an image, and has no "
                            f"{', '.join(SUFFIXES)} files in it")
    return found


def prepare_file(path: Path) -> np.ndarray:
    """A picture file -> uint8 [28, 28] as the models read it; PipelineError naming the file."""
    gray = read_picture(path)
    try:
        return prepare(gray)
    except PipelineError as e:
        raise PipelineError(f"{path}: {e}") from None


def show_paths(show: Path, paths: list[Path], folder: bool) -> list[Path]:
    """Where --show writes each picture's 28x28: `show` itself, or show/<stem>.png."""
    if not folder:
        return [show]
    taken: set[str] = set()
    out = []
    for p in paths:
        name, n = f"{p.stem}.png", 1
        while name in taken:
            n += 1
            name = f"{p.stem}-{n}.png"
        taken.add(name)
        out.append(show / name)
    return out


def enlarged_png(x: np.ndarray) -> bytes:
    """uint8 [28, 28], light digit on dark as the model saw it -> PNG bytes, 10x larger."""
    from PIL import Image

    buf = io.BytesIO()
    big = np.kron(x, np.ones((SHOW_SCALE, SHOW_SCALE), dtype=np.uint8))
    Image.fromarray(big, mode="L").save(buf, format="PNG")
    return buf.getvalue()


# -- The model -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Model:
    """A trained model: uint8 [N, 28, 28] -> float [N, C], each class's probability, the
    classes by label as `names` says (the stage's `probs`)."""

    predict: Callable[[Tensor], Tensor]
    names: list[str]


def load_model(name: str, models_dir: Path, dataset: str = SAMPLE) -> Model:
    """The trained `name` from `models_dir`, with the class each of its outputs stands for."""
    if name not in METHODS:
        raise PipelineError(f"unknown model {name!r}; known models: {', '.join(METHODS)}")
    ckpt = models_dir / Path(checkpoint(name)).name
    card_path = models_dir / Path(model_card(name)).name
    stage = name if dataset == SAMPLE else f"{dvcfile(dataset)}:{name}"
    for p in (ckpt, card_path):
        if not p.is_file():
            raise PipelineError(
                f"{p}: not found; run stage {stage} first "
                f"(`snakemake {checkpoint(name, dataset)}` or `dvc repro {stage}`)"
            )
    card = read_json(card_path)
    found = card.get("model") if isinstance(card, dict) else None
    if found != name:
        raise PipelineError(
            f"{card_path}: describes a {found!r} model, not {name!r}; rerun stage {stage}"
        )
    ten = "labels" in card  # a ten-digit model's card lists its labels; the chapter's has none
    if ten != (dataset != SAMPLE):
        trained = "ten digits" if ten else "3s and 7s"
        other = SAMPLE if ten else "mnist"
        raise PipelineError(f"{card_path}: a model of {trained}; pass --dataset {other} "
                            f"(or --models-dir of a {dataset} model)")
    state = load_tensors(ckpt)  # safetensors only: a pickle is refused, never unpickled
    module = importlib.import_module(METHODS[name].import_name)
    from mnist_basics.chapter.train import card_names  # with torch, which the models need anyway

    try:
        return Model(module.load_predictor(state, card), card_names(card))
    except PipelineError as e:
        raise PipelineError(f"{ckpt}: {short(e)}; rerun stage {stage}") from None
    except (KeyError, RuntimeError, ValueError, TypeError) as e:  # e.g. load_state_dict's
        raise PipelineError(
            f"{ckpt}: not a {name} checkpoint ({short(e)}); rerun stage {stage}"
        ) from None
