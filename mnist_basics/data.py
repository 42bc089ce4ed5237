"""The stacked tensors: the chapter's `stacked_threes`/`stacked_sevens`, train and valid.

`data/mnist_sample.safetensors` holds four tensors:
    train_x  uint8 [12396, 28, 28]   train_y  uint8 [12396]   (1 for a 3, 0 for a 7)
    valid_x  uint8 [2038, 28, 28]    valid_y  uint8 [2038]

The stage `stack` writes it with `stack()`: 3s then 7s, each sorted by file name, so the bytes
never change. The chapter decodes one PNG at a time with PIL; here the files are split among
worker processes, and each PNG is checked (signature, 28x28 8-bit grayscale header, every
chunk's CRC, the image data's length) before its pixels are trusted. A file that fails names
itself in a PipelineError, raised before the stage writes anything.

Compare the decoding speed with the chapter's single-process PIL loop:
    python -m mnist_basics.data --bench data/mnist_sample
"""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnist_basics import PipelineError
from mnist_basics.artifacts import load_tensors

if TYPE_CHECKING:
    import torch

CLASSES = ("3", "7")  # folder names; the chapter labels a 3 as 1 and a 7 as 0
LABEL = {"3": 1, "7": 0}
SPLITS = ("train", "valid")
SIZE = 28


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


def read_pngs(paths: Sequence[str]) -> bytes:
    """Read and decode some PNGs in this process: uint8 [len(paths) * 28 * 28] as bytes."""
    out = np.empty((len(paths), SIZE, SIZE), np.uint8)
    for i, path in enumerate(paths):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise PipelineError(f"{path}: cannot read ({e.strerror or e})") from None
        out[i] = decode_png(data, path)
    return out.tobytes()


def decode_pngs(paths: Sequence[str | Path], workers: int = 1, chunk: int = 500) -> np.ndarray:
    """Decode PNGs in `workers` processes, in order: uint8 [len(paths), 28, 28].

    On an error, the first bad file in `paths` order is the one reported.
    """
    names = [os.fspath(p) for p in paths]  # str: pickles to the workers far faster than Path
    chunks = [names[i : i + chunk] for i in range(0, len(names), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        return _join(map(read_pngs, chunks), len(names))
    # Workers take SIGTERM's default action: the Pool stops them with it when it closes, and
    # the stage's own handler (inherited through fork) could leave one stuck on a queue lock.
    with multiprocessing.Pool(min(workers, len(chunks)), initializer=signal.signal,
                              initargs=(signal.SIGTERM, signal.SIG_DFL)) as pool:
        return _join(pool.imap(read_pngs, chunks), len(names))  # imap keeps the order


def _join(parts, n: int) -> np.ndarray:
    return np.frombuffer(b"".join(parts), np.uint8).reshape(n, SIZE, SIZE)


# -- The whole folder ------------------------------------------------------------------------
def png_files(raw: str | Path) -> dict[str, dict[str, list[Path]]]:
    """split -> class -> its PNGs sorted by file name; every class folder must have some."""
    raw = Path(raw)
    if not raw.is_dir():
        raise PipelineError(f"{raw}: no such folder; run the download stage first")
    files: dict[str, dict[str, list[Path]]] = {}
    for split in SPLITS:
        files[split] = {}
        for cls in CLASSES:
            folder = raw / split / cls
            if not folder.is_dir():
                raise PipelineError(f"{folder}: class folder missing; rerun the download stage")
            pngs = sorted(folder.glob("*.png"), key=lambda p: p.name)
            if not pngs:
                raise PipelineError(f"{folder}: no PNG files in this class folder")
            files[split][cls] = pngs
    return files


def in_order(files: dict[str, dict[str, list[Path]]]) -> list[Path]:
    """train then valid; within each, the 3s then the 7s."""
    return [p for split in SPLITS for cls in CLASSES for p in files[split][cls]]


def stack(raw: str | Path, workers: int = 1) -> tuple[dict[str, np.ndarray], dict]:
    """The extracted folder -> ({train_x, train_y, valid_x, valid_y}, counts per split and class).

    x is uint8 [N, 28, 28] (3s then 7s), y uint8 [N] with 1 for a 3 and 0 for a 7. NumPy
    arrays, not torch tensors: the stage never pays torch's import (the file is the same).
    """
    files = png_files(raw)
    x = decode_pngs(in_order(files), workers)  # uint8 [12396 + 2038, 28, 28]

    tensors, start = {}, 0
    for split in SPLITS:
        n = sum(len(files[split][cls]) for cls in CLASSES)
        tensors[f"{split}_x"] = x[start : start + n]
        tensors[f"{split}_y"] = np.array(
            [LABEL[cls] for cls in CLASSES for _ in files[split][cls]], dtype=np.uint8
        )
        start += n
    counts = {split: {cls: len(files[split][cls]) for cls in CLASSES} for split in SPLITS}
    return tensors, counts


# -- Benchmark -------------------------------------------------------------------------------
def bench(raw: str | Path, workers: int, repeat: int = 3) -> dict[str, float]:
    """Best-of-`repeat` seconds to decode every PNG: the chapter's loop vs `decode_pngs`."""
    import time

    from PIL import Image

    order = in_order(png_files(raw))

    def best(fn) -> float:
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    return {
        "images": len(order),
        "pil_loop": best(lambda: [np.asarray(Image.open(p)) for p in order]),
        "decode_pngs_1": best(lambda: decode_pngs(order, 1)),
        f"decode_pngs_{workers}": best(lambda: decode_pngs(order, workers)),
    }


if __name__ == "__main__":
    import argparse

    from mnist_basics.cli import cpu_threads

    ap = argparse.ArgumentParser(description="time decoding the PNGs (see the docstring)")
    ap.add_argument("--bench", type=Path, metavar="RAW", required=True,
                    help="the extracted folder, e.g. data/mnist_sample")
    ap.add_argument("--workers", type=int, default=cpu_threads(), help="(default: %(default)s)")
    args = ap.parse_args()
    for k, v in bench(args.bench, args.workers).items():
        print(f"{k:16s} {v:8.3f}" if isinstance(v, float) else f"{k:16s} {v:8d}")
