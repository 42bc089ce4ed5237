"""A tiny full MNIST for the tests: all ten digits, in the layout of fastai's mnist_png.tgz.

- `make_digits_archive`: `mnist_png/{training,testing}/{0..9}/*.png`, real 28x28 grayscale
  PNGs, no labels file; returns (path, md5, content digest) like `harness.make_tiny_archive`;
- `digit_image`: one seven-segment digit, white on black like MNIST's, shifted and noisy:
  easy for every model to tell apart in a few steps, shaped exactly like the real ones;
- `local_digits_archive` / `real_digits_archive`: the real mnist_png.tgz, from MNIST_URL or
  fastai's cache, as `harness.local_archive` finds mnist_sample.tgz.
"""

from __future__ import annotations

import hashlib
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.harness import content_digest, local_archive

TOP, SPLITS, DIGITS = "mnist_png", ("training", "testing"), tuple(range(10))

# Seven segments on a 28x28 grid, as (rows, columns) slices: a top, b upper right, c lower
# right, d bottom, e lower left, f upper left, g middle.
SEGMENTS = {
    "a": (slice(4, 7), slice(9, 19)), "b": (slice(4, 15), slice(16, 19)),
    "c": (slice(13, 24), slice(16, 19)), "d": (slice(21, 24), slice(9, 19)),
    "e": (slice(13, 24), slice(9, 12)), "f": (slice(4, 15), slice(9, 12)),
    "g": (slice(13, 15), slice(9, 19)),
}
LIT = ["abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg"]


def digit_image(d: int, rng: np.random.Generator) -> np.ndarray:
    """The digit `d` as uint8 [28, 28]: bright strokes, moved up to 2 pixels, a little noise."""
    x = np.zeros((28, 28), np.float32)
    for seg in LIT[d]:
        x[SEGMENTS[seg]] = 1.0
    x = np.roll(x, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
    x = x * rng.uniform(180, 255) + rng.uniform(0, 60, x.shape) * (x > 0)
    return x.clip(0, 255).astype(np.uint8)  # the background stays 0, as in MNIST


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png_bytes(pixels: np.ndarray) -> bytes:
    """A 28x28 8-bit grayscale PNG as the real archives store theirs: IHDR, one IDAT of
    unfiltered rows, IEND."""
    rows = np.zeros((28, 29), np.uint8)  # each row: filter type 0, then 28 pixels
    rows[:, 1:] = pixels
    ihdr = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(
        rows.tobytes())) + _chunk(b"IEND", b""))


def make_digits_tree(root: Path, n_train: int = 3, n_valid: int = 2, seed: int = 0) -> Path:
    """root/mnist_png/ with `n_train` and `n_valid` PNGs of each digit; returns the folder.

    Files are numbered through each split, digits taking turns as in the real archive, so
    that a folder's names sort differently as text and as numbers (13.png before 3.png).
    training/ is stored as the real archive's, testing/ as PIL saves it (filtered rows), so
    that both of the stack stage's decoders run.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    top = root / TOP
    for split, n in zip(SPLITS, (n_train, n_valid), strict=True):
        for i in range(n * len(DIGITS)):
            d = i % len(DIGITS)
            path = top / split / str(d) / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = digit_image(d, rng)
            if split == "training":
                path.write_bytes(png_bytes(pixels))
            else:
                Image.fromarray(pixels).save(path)
    return top


def make_digits_archive(root: Path, **kw) -> tuple[Path, str, str]:
    """A tiny, well-formed mnist_png.tgz: returns (path, md5, content digest)."""
    top = make_digits_tree(root / "tree", **kw)
    path = root / "mnist_png.tgz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(top, arcname=TOP)
    return path, hashlib.md5(path.read_bytes()).hexdigest(), content_digest(top)


def local_digits_archive() -> Path | None:
    """The real mnist_png.tgz: MNIST_URL (a path or file:// URL), or fastai's cache."""
    return local_archive("MNIST_URL", "mnist_png.tgz")


def real_digits_archive() -> Path:
    """`local_digits_archive`, for a test that needs it: fails (never skips) without it."""
    path = local_digits_archive()
    if path is None:
        pytest.fail("the real data is needed: set MNIST_URL to a local mnist_png.tgz")
    return path
