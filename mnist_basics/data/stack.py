"""The stacked tensors: the chapter's `stacked_threes`/`stacked_sevens`, train and valid.

`data/mnist_sample.safetensors` holds four tensors:
    train_x  uint8 [12396, 28, 28]   train_y  uint8 [12396]   (1 for a 3, 0 for a 7)
    valid_x  uint8 [2038, 28, 28]    valid_y  uint8 [2038]

The stage `stack` writes it with `stack()`: 3s then 7s, each sorted by file name, so the bytes
never change. The full MNIST (`MNIST`, the chapter's "further research") has the same four
tensors, 60,000 and 10,000 digits (its `testing/` folder is valid), 0s to 9s, each labelled
by its own value. A `Layout` says where each dataset keeps what in its archive.

The PNGs are read straight out of `data/mnist_sample.tgz`, never extracted to disk. The
chapter decodes each PNG with PIL; here most are decoded with zlib alone, and each is checked
(signature, 28x28 8-bit grayscale header, every chunk's CRC, the image data's length) before
its pixels are trusted. A file that fails names itself in a PipelineError, raised before the
stage writes anything.

Compare the decoding speed with the chapter's single-process PIL loop:
    python -m mnist_basics.data.stack --bench data/mnist_sample.tgz
    python -m mnist_basics.data.stack --bench data/mnist.tgz --dataset mnist
"""

from __future__ import annotations

import contextlib
import io
import struct
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from mnist_basics import PipelineError
from mnist_basics.artifacts import load_tensors
from mnist_basics.registry import DATASETS, SAMPLE, Layout

if TYPE_CHECKING:
    import torch


MNIST_SAMPLE = DATASETS[SAMPLE]

# MNIST_SAMPLE's layout, under the names the chapter's code uses.
TOP = MNIST_SAMPLE.top
SPLITS = MNIST_SAMPLE.splits
CLASSES = MNIST_SAMPLE.classes
CLASS_DIRS = MNIST_SAMPLE.class_dirs
LABELS = MNIST_SAMPLE.labels_file
LABEL = MNIST_SAMPLE.label
SIZE = 28
MAX_PNG_BYTES = 1 << 16  # the real ones are under 1 KiB; anything this big is no digit


@dataclass(frozen=True)
class MnistSample:
    train_x: torch.Tensor  # uint8 [N, 28, 28]
    train_y: torch.Tensor  # uint8 [N]
    valid_x: torch.Tensor
    valid_y: torch.Tensor


def load_sample(path: str | Path) -> MnistSample:
    """Load the stage `stack` output, checking that it has what the models expect."""
    t = load_tensors(path)
    missing = sorted({"train_x", "train_y", "valid_x", "valid_y"} - set(t))
    if missing:
        raise PipelineError(f"{path}: missing tensor {missing[0]!r}; rerun the stack stage")
    return MnistSample(t["train_x"], t["train_y"], t["valid_x"], t["valid_y"])


# -- Decoding one PNG ------------------------------------------------------------------------
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}
ROW = 1 + SIZE  # each decompressed row: one filter-type byte, then 28 pixels


def decode_png(data: bytes, name: str | Path) -> np.ndarray:
    """One 28x28 8-bit grayscale PNG's bytes -> uint8 [28, 28]; PipelineError naming `name`.

    The header is checked before anything is decompressed, so a PNG declaring a huge size
    (a decompression bomb) costs nothing; every chunk's CRC is checked because PIL skips the
    image data's CRC when it decodes.
    """

    def bad(why: str) -> PipelineError:
        return PipelineError(f"{name}: {why}")

    if not data:
        raise bad("empty file (0 bytes)")
    if not data.startswith(PNG_SIGNATURE):
        raise bad("not a PNG file (bad signature)")
    pos, idat, interlaced = len(PNG_SIGNATURE), [], False
    while True:
        if pos + 12 > len(data):
            raise bad("truncated PNG (no IEND chunk)")
        length, ctype = struct.unpack_from(">I4s", data, pos)  # then the body, then its CRC
        if pos + 12 + length > len(data):
            raise bad(f"truncated PNG (in the {ctype.decode('latin-1')!r} chunk)")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(body, zlib.crc32(ctype)) != crc:
            raise bad(f"bad CRC in the {ctype.decode('latin-1')!r} chunk (corrupt file)")
        if pos == len(PNG_SIGNATURE):  # the first chunk must be the header
            if ctype != b"IHDR" or length != 13:
                raise bad("not a PNG file (no IHDR header)")
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if (width, height) != (SIZE, SIZE):
                raise bad(f"image is {width}x{height}, expected {SIZE}x{SIZE}")
            if (color, depth) != (0, 8):
                kind = f"{depth}-bit {COLOR_TYPES.get(color, f'color type {color}')}"
                raise bad(f"image is {kind}, expected 8-bit grayscale")
            interlaced = interlace != 0
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            break
        pos += 12 + length

    if not interlaced:
        z = zlib.decompressobj()
        try:  # at most one byte more than a 28x28 image needs: enough to see it's too long
            raw = z.decompress(b"".join(idat), SIZE * ROW + 1)
        except zlib.error as e:
            raise bad(f"corrupt image data ({e})") from None
        if len(raw) != SIZE * ROW or not z.eof:
            raise bad(f"corrupt image data ({len(raw)} bytes decompressed, {SIZE * ROW} expected)")
        rows = np.frombuffer(raw, np.uint8).reshape(SIZE, ROW)
        if not rows[:, 0].any():  # every row stored unfiltered: the pixels are the bytes
            return rows[:, 1:]
    return _decode_with_pil(data, bad)  # filtered rows or interlacing: PIL undoes them


def _decode_with_pil(data: bytes, bad) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode != "L" or im.size != (SIZE, SIZE):
                raise bad(f"image is {im.mode} {im.size}, expected L ({SIZE}, {SIZE})")
            return np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise bad(f"cannot decode ({e})") from None


def decode_pngs(items: Sequence[tuple[str, bytes]]) -> np.ndarray:
    """Decode (name, PNG bytes) pairs, in order: uint8 [N, 28, 28]; the first bad one is named.

    One process: with the bytes already in memory, the 14,434 digits take about 0.1 s, less
    than starting worker processes would.
    """
    out = np.empty((len(items), SIZE, SIZE), np.uint8)
    for i, (name, data) in enumerate(items):
        out[i] = decode_png(data, name)
    return out


# -- The archive -----------------------------------------------------------------------------
def open_archive(archive: str | Path | bytes, name: str | Path, hint: str) -> tarfile.TarFile:
    """A .tgz (a path, or its bytes) opened for reading; PipelineError ending with `hint`."""
    try:
        if isinstance(archive, bytes):
            return tarfile.open(fileobj=io.BytesIO(archive), mode="r:*")
        return tarfile.open(archive, "r:*")  # gzip as published; any tar a re-pack may use
    except FileNotFoundError:
        raise PipelineError(f"{name}: not found; {hint}") from None
    except IsADirectoryError:
        raise PipelineError(f"{name}: is a folder, not a .tgz archive; {hint}") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError):
        raise PipelineError(f"{name}: not a readable .tgz archive; {hint}") from None


@contextlib.contextmanager
def reading(name: str | Path, hint: str = "fetch a fresh copy") -> Iterator[None]:
    """Turn tarfile's errors, while iterating or reading members, into one PipelineError.

    Callers iterate `for m in members(tar)` and read a member (`tar.extractfile(m).read()`)
    only once its header (type, path, declared size) has passed their checks; nothing is ever
    extracted.
    """
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise PipelineError(f"{name}: truncated or corrupt archive ({e}); {hint}") from None


def members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Each member in turn, as `for m in tar` gives them, without tarfile keeping every
    header it has read: the full MNIST's 70,000 would hold on to some 30 MB."""
    while (m := tar.next()) is not None:
        tar.members.clear()
        yield m


def class_dir(member: str, layout: Layout = MNIST_SAMPLE) -> str | None:
    """'train/3' for the digit `mnist_sample/train/3/<name>.png` ('training/0' for
    `mnist_png/training/0/<name>.png`); None for any other member."""
    parts = PurePosixPath(member).parts
    if len(parts) == 4 and parts[0] == layout.top and parts[3].endswith(".png"):
        folder = f"{parts[1]}/{parts[2]}"
        return folder if folder in layout.class_dirs else None
    return None


def png_members(archive: str | Path, layout: Layout = MNIST_SAMPLE
                ) -> dict[str, dict[str, list[tuple[str, bytes]]]]:
    """split -> class -> its (name, PNG bytes) sorted by file name; every class must have some.

    Only `<top>/<split>/<class>/*.png` is read (labels.csv and the rest are the download
    stage's business). The download stage vetted the archive; this checks again what it
    relies on, so a hand-replaced file fails here with a clear message.
    """
    hint = "rerun the download stage"
    files: dict[str, dict[str, list[tuple[str, bytes]]]] = {
        split: {cls: [] for cls in layout.classes} for split in layout.splits}
    seen = set()
    with open_archive(archive, archive, hint) as tar, reading(archive, hint):
        for m in members(tar):
            folder = class_dir(m.name, layout)
            if folder is None:
                continue
            name, path = f"{archive}:{m.name}", PurePosixPath(m.name)
            if not m.isfile():
                raise PipelineError(f"{name}: not a regular file; {hint}")
            if path in seen:
                raise PipelineError(f"{name}: in the archive twice; {hint}")
            seen.add(path)
            if m.size > MAX_PNG_BYTES:
                raise PipelineError(
                    f"{name}: {m.size} bytes, too big for a {SIZE}x{SIZE} digit; {hint}")
            split, cls = folder.split("/")
            files[split][cls].append((name, tar.extractfile(m).read()))
    for split in layout.splits:
        for cls in layout.classes:
            if not files[split][cls]:
                raise PipelineError(
                    f"{archive}: no PNG files in {layout.top}/{split}/{cls}/; {hint}")
            files[split][cls].sort(key=lambda item: PurePosixPath(item[0]).name)
    return files


def in_order(files: dict[str, dict[str, list[tuple[str, bytes]]]]) -> list[tuple[str, bytes]]:
    """Split by split (train then valid); within each, class by class (the 3s then the 7s)."""
    return [item for by_class in files.values() for items in by_class.values() for item in items]


def stack(archive: str | Path, layout: Layout = MNIST_SAMPLE
          ) -> tuple[dict[str, np.ndarray], dict]:
    """The archive -> ({train_x, train_y, valid_x, valid_y}, counts per split and class).

    x is uint8 [N, 28, 28] (3s then 7s; for MNIST, 0s to 9s), y uint8 [N] the class's label
    (1 for a 3 and 0 for a 7; a digit's own value). The first split is train, the second
    valid, whatever their folders are called. NumPy arrays, not torch tensors: the stage
    never pays torch's import (the file is the same).
    """
    files = png_members(archive, layout)
    x = decode_pngs(in_order(files))  # uint8 [12396 + 2038, 28, 28]; MNIST [60000 + 10000, ...]

    tensors, start = {}, 0
    for key, split in zip(("train", "valid"), layout.splits, strict=True):
        n = sum(len(files[split][cls]) for cls in layout.classes)
        tensors[f"{key}_x"] = x[start : start + n]
        tensors[f"{key}_y"] = np.array(
            [layout.label[cls] for cls in layout.classes for _ in files[split][cls]],
            dtype=np.uint8,
        )
        start += n
    counts = {split: {cls: len(files[split][cls]) for cls in layout.classes}
              for split in layout.splits}
    return tensors, counts


# -- Benchmark -------------------------------------------------------------------------------
def bench(archive: str | Path, repeat: int = 3, layout: Layout = MNIST_SAMPLE
          ) -> dict[str, float]:
    """Best-of-`repeat` seconds to decode every PNG: the chapter's loop vs `decode_pngs`."""
    import time

    from PIL import Image

    order = in_order(png_members(archive, layout))

    def best(fn) -> float:
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    return {
        "images": len(order),
        "read_archive": best(lambda: png_members(archive, layout)),
        "pil_loop": best(lambda: [np.asarray(Image.open(io.BytesIO(d))) for _, d in order]),
        "decode_pngs": best(lambda: decode_pngs(order)),
    }


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="time decoding the PNGs (see the docstring)")
    ap.add_argument("--bench", type=Path, metavar="ARCHIVE", required=True,
                    help="the archive, e.g. data/mnist_sample.tgz")
    ap.add_argument("--dataset", choices=DATASETS, default=SAMPLE,
                    help="the archive's layout (default: %(default)s)")
    args = ap.parse_args()
    for k, v in bench(args.bench, layout=DATASETS[args.dataset]).items():
        print(f"{k:16s} {v:8.3f}" if isinstance(v, float) else f"{k:16s} {v:8d}")
