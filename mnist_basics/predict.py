"""Classify your own picture of a 3 or a 7 with any of the pipeline's trained models.

    python -m mnist_basics predict my_digit.png --model resnet18
    3 (p=0.998)

It prints the class and the model's probability for that class. Any PNG or JPEG works: it is
turned to grayscale (transparent parts count as white paper), inverted when it is dark ink on
a light background (MNIST digits are light on dark: the border is compared with the inside),
then padded to a square and resized to 28x28. Sizes are checked from the header, before
anything is decoded. Checkpoints are safetensors read without pickle: nothing in a model
file is ever executed.
"""

from __future__ import annotations

import argparse
import importlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_basics import PipelineError
from mnist_basics.artifacts import load_tensors, read_json
from mnist_basics.pipeline import METHODS, MODEL_CODE, checkpoint, model_card

if TYPE_CHECKING:
    from torch import Tensor

MIN_SIDE, MAX_SIDE = 8, 4096  # pixels; a larger header is refused before decoding
FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG"}  # MPO: the JPEG many cameras write
SIZE = 28


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("image", type=Path, help="a PNG or JPEG of one handwritten 3 or 7")
    ap.add_argument("--model", default="resnet18", metavar="NAME",
                    help=f"one of {', '.join(METHODS)} (default: %(default)s)")
    ap.add_argument("--models-dir", type=Path, default=Path(checkpoint("x")).parent,
                    help="where the stages wrote their checkpoints (default: %(default)s)")


def main(args: argparse.Namespace) -> None:
    import torch

    predict = load_model(args.model, args.models_dir)
    x = read_image(args.image)
    with torch.inference_mode():
        prob3 = float(predict(x)[0])
    label, p = (3, prob3) if prob3 > 0.5 else (7, 1 - prob3)
    print(f"{label} (p={p:.3f})")


# -- The image -------------------------------------------------------------------------------
def read_image(path: Path) -> Tensor:
    """A PNG or JPEG file -> uint8 [1, 28, 28], light digit on dark like MNIST."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise PipelineError(f"{path}: no such file")
    if path.is_dir():
        raise PipelineError(f"{path}: is a directory, not an image")
    try:
        with warnings.catch_warnings():
            # Pillow warns past ~89M pixels; our own limit below refuses those anyway, in one line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)  # reads the header only
        with img:
            if img.format not in FORMATS:
                raise PipelineError(f"{path}: a {img.format} image; give a PNG or JPEG")
            w, h = img.size
            if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
                raise PipelineError(
                    f"{path}: {w}x{h} pixels; each side must be {MIN_SIDE} to {MAX_SIDE}"
                )
            img.load()
            gray = to_gray(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError:  # Pillow's own guard, for headers far past ours
        raise PipelineError(
            f"{path}: too many pixels to decode safely; each side must be {MIN_SIDE} to {MAX_SIDE}"
        ) from None
    except UnidentifiedImageError:
        raise PipelineError(f"{path}: not a PNG or JPEG image") from None
    except PermissionError:
        raise PipelineError(f"{path}: permission denied") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PipelineError(f"{path}: broken image, cannot decode it ({short(e)})") from None
    return to_mnist(gray)


def to_gray(img):
    """Any PIL mode -> "L". Transparency is composited over white, as a viewer shows it."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img.convert("RGBA"))
    elif img.mode.startswith("I"):  # 16- or 32-bit grey: keep the top 8 bits, don't clip
        import numpy as np

        scale = 257 if img.mode.startswith("I;16") or np.asarray(img).max() > 255 else 1
        img = Image.fromarray((np.asarray(img, dtype=np.float64) / scale).astype(np.uint8))
    return img.convert("L")


def to_mnist(gray) -> Tensor:
    """A grayscale PIL image -> uint8 [1, 28, 28]: inverted if dark on light, square, 28x28."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    a = np.asarray(gray, dtype=np.float32)  # [H, W]
    b = max(1, min(a.shape) // 10)  # border strip width
    border = np.ones_like(a, dtype=bool)
    border[b:-b, b:-b] = False
    if a[border].mean() > a[~border].mean():  # light paper, dark ink: flip to MNIST's way
        gray, a = ImageOps.invert(gray), 255 - a
    background = round(a[border].mean())
    square = ImageOps.pad(gray, (SIZE, SIZE), method=Image.Resampling.LANCZOS, color=background)
    return torch.from_numpy(np.array(square, dtype=np.uint8)).unsqueeze(0)  # [1, 28, 28]


# -- The model -------------------------------------------------------------------------------
def load_model(name: str, models_dir: Path) -> Callable[[Tensor], Tensor]:
    """The trained `name` from `models_dir`: uint8 [N, 28, 28] -> prob3 float [N]."""
    if name not in METHODS:
        raise PipelineError(f"unknown model {name!r}; known models: {', '.join(METHODS)}")
    ckpt = models_dir / Path(checkpoint(name)).name
    card_path = models_dir / Path(model_card(name)).name
    for p in (ckpt, card_path):
        if not p.is_file():
            raise PipelineError(
                f"{p}: not found; run stage {name} first "
                f"(`snakemake {checkpoint(name)}` or `dvc repro {name}`)"
            )
    card = read_json(card_path)
    found = card.get("model") if isinstance(card, dict) else None
    if found != name:
        raise PipelineError(
            f"{card_path}: describes a {found!r} model, not {name!r}; rerun stage {name}"
        )
    state = load_tensors(ckpt)  # safetensors only: a pickle is refused, never unpickled
    module = importlib.import_module(MODEL_CODE[name].removesuffix(".py").replace("/", "."))
    try:
        return module.load_predictor(state, card)
    except PipelineError as e:
        raise PipelineError(f"{ckpt}: {short(e)}; rerun stage {name}") from None
    except (KeyError, RuntimeError, ValueError, TypeError) as e:  # e.g. load_state_dict's
        raise PipelineError(
            f"{ckpt}: not a {name} checkpoint ({short(e)}); rerun stage {name}"
        ) from None


def short(e: Exception, limit: int = 300) -> str:
    """An error as one readable line: a state_dict mismatch can list hundreds of keys."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "..."
