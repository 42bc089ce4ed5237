"""The stage `stack`: the archive's PNGs -> one safetensors file of uint8 tensors, or a line
naming the bad file.

Broken PNGs are built here in a small tree of valid 28x28 grayscale images, packed into a .tgz
as the download stage leaves it; the real archive checks the whole stage against the chapter's
plain PIL loop. The full MNIST (ten digits, mnist_png/) is stacked here from the tiny archive
of tests/digits_archive.py, after the download stage has vetted it; the real one's stack is
checked against the PIL loop in tests/test_mnist_real.py, which runs its stages anyway.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_basics import PipelineError
from mnist_basics.artifacts import load_tensors
from mnist_basics.data.download import canonical_archive, download
from mnist_basics.data.stack import class_dir, decode_png, decode_pngs, png_members, stack
from mnist_basics.params import load
from mnist_basics.pipeline.definition import BY_NAME
from mnist_basics.registry import DATASETS
from tests.digits_archive import make_digits_archive
from tests.harness import ROOT, make_tiny_archive, run_stage

MNIST = DATASETS["mnist"]


# -- Building PNGs by hand, so that each can be broken in exactly one way --------------------
def chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png_bytes(pixels: np.ndarray | None = None, *, width=28, height=28, depth=8, color=0,
              idat: bytes | None = None) -> bytes:
    """A PNG whose rows are stored unfiltered, as in MNIST_SAMPLE; `idat` replaces the data."""
    if idat is None:
        rows = np.zeros((pixels.shape[0], 1 + pixels.shape[1]), np.uint8)  # filter byte 0
        rows[:, 1:] = pixels
        idat = zlib.compress(rows.tobytes())
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def pil_png_bytes(pixels: np.ndarray, mode: str | None = None) -> bytes:
    """How PIL saves it: adaptive row filters, so decoding goes through PIL."""
    buf = io.BytesIO()
    im = Image.fromarray(pixels)
    (im.convert(mode) if mode else im).save(buf, "PNG")
    return buf.getvalue()


def row_filters(png: bytes) -> set[int]:
    idat = b"".join(body for ctype, body in chunks(png) if ctype == b"IDAT")
    return set(zlib.decompress(idat)[:: 1 + 28])


def chunks(png: bytes):
    pos = 8
    while pos < len(png):
        (n,) = struct.unpack_from(">I", png, pos)
        yield png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + n]
        pos += 12 + n


def digit(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)


def pil_decode(path) -> np.ndarray:
    """The chapter's way: `tensor(Image.open(o))`."""
    return np.asarray(Image.open(path))


@pytest.fixture
def tree(tmp_path) -> Path:
    """raw/{train,valid}/{3,7}/{2,10}.png: train stored unfiltered, valid saved by PIL."""
    raw = tmp_path / "raw"
    seed = 0
    for split in ("train", "valid"):
        for cls in ("3", "7"):
            folder = raw / split / cls
            folder.mkdir(parents=True)
            for name in ("2.png", "10.png"):
                seed += 1
                data = png_bytes(digit(seed)) if split == "train" else pil_png_bytes(digit(seed))
                (folder / name).write_bytes(data)
    return raw


def pack(raw: Path, path: Path | None = None) -> Path:
    """raw/ as mnist_sample/ in a .tgz, as the download stage writes it (its canonical
    re-pack: regular files only, sorted); the real archive's own packing is tested below."""
    path = path or raw.parent / "mnist_sample.tgz"
    files = {p.relative_to(raw).as_posix(): p.read_bytes() for p in raw.rglob("*") if p.is_file()}
    path.write_bytes(canonical_archive(files))
    return path


def into(out: Path) -> dict[str, Path]:
    """The stack stage's two outputs, by flag, in `out`."""
    return {"tensors": out / "x.safetensors", "counts": out / "counts.json"}


# -- Decoding one PNG ------------------------------------------------------------------------
def test_decode_png_matches_pil_for_unfiltered_and_filtered_rows():
    pixels = digit(1)
    plain, filtered = png_bytes(pixels), pil_png_bytes(pixels)
    assert row_filters(plain) == {0}
    assert row_filters(filtered) - {0}, "PIL's encoder should filter some rows"
    for data in (plain, filtered):
        x = decode_png(data, "d.png")
        assert x.dtype == np.uint8 and x.shape == (28, 28)
        np.testing.assert_array_equal(x, np.asarray(Image.open(io.BytesIO(data))))
        np.testing.assert_array_equal(x, pixels)


def test_decode_png_checks_the_crc_that_pil_skips():
    data = bytearray(png_bytes(digit(2)))
    data[data.index(b"IEND") - 5] ^= 0xFF  # the last byte of the IDAT chunk's CRC
    im = Image.open(io.BytesIO(bytes(data)))
    im.load()  # PIL decodes it without a word
    with pytest.raises(PipelineError, match=r"^bad\.png: bad CRC in the 'IDAT' chunk"):
        decode_png(bytes(data), "bad.png")


def test_decode_pngs_keeps_the_order_and_names_the_first_bad_file(tree):
    paths = sorted(tree.rglob("*.png"))
    x = decode_pngs([(str(p), p.read_bytes()) for p in paths])
    assert x.shape == (8, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, np.stack([pil_decode(p) for p in paths]))

    items = [(str(p), p.read_bytes()) for p in paths]
    items[7] = (items[7][0], b"")
    items[4] = (items[4][0], b"not a png")  # the first bad one in order
    with pytest.raises(PipelineError, match="^" + re.escape(f"{paths[4]}: not a PNG file")):
        decode_pngs(items)


# -- The archive -----------------------------------------------------------------------------
def test_stack_orders_3s_then_7s_by_file_name_and_labels_3_as_1(tree):
    tensors, counts = stack(pack(tree))
    assert counts == {"train": {"3": 2, "7": 2}, "valid": {"3": 2, "7": 2}}
    for split in ("train", "valid"):
        x, y = tensors[f"{split}_x"], tensors[f"{split}_y"]
        assert x.shape == (4, 28, 28) and y.shape == (4,)
        assert x.dtype == y.dtype == np.uint8
        assert y.tolist() == [1, 1, 0, 0]
        names = [tree / split / c / n for c in ("3", "7") for n in ("10.png", "2.png")]
        np.testing.assert_array_equal(x, np.stack([pil_decode(p) for p in names]))


def test_png_members_reads_no_member_bigger_than_a_digit_can_be(tree, monkeypatch):
    """A member's declared size is checked before a byte of it is read (no memory bomb)."""
    (tree / "valid" / "3" / "2.png").write_bytes(bytes(5_000_000))
    archive, read = pack(tree), []
    extractfile = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile",
                        lambda self, m: read.append(m.name) or extractfile(self, m))
    with pytest.raises(PipelineError, match="5000000 bytes, too big for a 28x28 digit"):
        png_members(archive)
    assert read and "mnist_sample/valid/3/2.png" not in read


def test_png_members_ignores_other_files(tree):
    (tree / "train" / "3" / "notes.txt").write_text("not an image")
    (tree / "labels.csv").write_text("name,label\n")
    (tree / "train" / "3" / "deeper").mkdir()
    (tree / "train" / "3" / "deeper" / "1.png").write_bytes(b"not looked at")
    archive = pack(tree)
    names = [name for name, _ in png_members(archive)["train"]["3"]]
    assert names == [f"{archive}:mnist_sample/train/3/{n}.png" for n in (10, 2)]


# -- The stage, as the engines run it -------------------------------------------------------
def test_help_lists_the_flags_and_where_the_command_is():
    out = subprocess.run([*BY_NAME["stack"].argv(), "--help"], capture_output=True, text=True,
                         cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    for flag in ("--archive PATH", "--counts PATH", "--tensors PATH", "--dataset"):
        assert flag in out
    assert "dvc.yaml" in out  # the pipeline's command, with every path


def test_stage_writes_every_digit_as_pil_reads_it(tree, tmp_path):
    out = tmp_path / "out"
    r = run_stage("stack", archive=pack(tree), **into(out))
    assert r.returncode == 0, r.stderr
    t = load_tensors(out / "x.safetensors")
    assert sorted(t) == ["train_x", "train_y", "valid_x", "valid_y"]
    for split in ("train", "valid"):  # 3s then 7s, each by file name: 10.png before 2.png
        files = [tree / split / cls / name for cls in ("3", "7") for name in ("10.png", "2.png")]
        expected = np.stack([np.asarray(Image.open(f)) for f in files])
        np.testing.assert_array_equal(t[f"{split}_x"].numpy(), expected)
        assert t[f"{split}_y"].tolist() == [1, 1, 0, 0]
    assert json.loads((out / "counts.json").read_text())["valid"] == {"3": 2, "7": 2}


def _replace(name: str, data_or_fn):
    """A breaker: rewrite train/7/10.png (the third train file in order)."""

    def breaker(raw: Path) -> str:
        path = raw / "train" / "7" / "10.png"
        data = data_or_fn(path.read_bytes()) if callable(data_or_fn) else data_or_fn
        path.write_bytes(data)
        return "mnist_sample/train/7/10.png"

    breaker.__name__ = name
    return breaker


def _flip_idat_crc(data: bytes) -> bytes:
    data = bytearray(data)
    data[data.index(b"IEND") - 5] ^= 0xFF
    return bytes(data)


def _wide(shape):
    return png_bytes(np.zeros(shape, np.uint8), width=shape[1], height=shape[0])


def _remove_all_pngs(raw: Path) -> str:
    folder = raw / "valid" / "7"
    for p in folder.iterdir():
        p.unlink()
    (folder / "notes.txt").write_text("no digits here")
    return ""


def _remove_folder(raw: Path) -> str:
    folder = raw / "train" / "3"
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    return ""


def _too_big(raw: Path) -> str:
    (raw / "valid" / "3" / "2.png").write_bytes(png_bytes(digit(4)) + bytes(1 << 16))
    return "mnist_sample/valid/3/2.png"


BROKEN = [
    (_replace("truncated", lambda d: d[: len(d) // 2]), "truncated PNG"),
    (_replace("bad_crc", _flip_idat_crc), "bad CRC in the 'IDAT' chunk"),
    (_replace("text", b"this is not an image\n"), "not a PNG file"),
    (_replace("zero_bytes", b""), "empty file (0 bytes)"),
    (_replace("27_wide", _wide((28, 27))), "image is 27x28, expected 28x28"),
    (_replace("rgb", pil_png_bytes(digit(3), "RGB")), "8-bit RGB, expected 8-bit grayscale"),
    (_replace("rgba", pil_png_bytes(digit(3), "RGBA")), "8-bit RGBA, expected"),
    (_replace("palette", pil_png_bytes(digit(3), "P")), "palette, expected 8-bit grayscale"),
    (_replace("gray_alpha", pil_png_bytes(digit(3), "LA")), "grayscale+alpha, expected"),
    (_replace("16_bit", pil_png_bytes(digit(3), "I;16")), "16-bit grayscale, expected"),
    (_replace("1_bit", pil_png_bytes(digit(3), "1")), "1-bit grayscale, expected"),
    (_replace("bomb", png_bytes(width=100_000, height=100_000, idat=zlib.compress(b"\0" * 99))),
     "image is 100000x100000, expected 28x28"),
    (_replace("bad_zlib", png_bytes(idat=b"\x78\x9c not deflate data")), "corrupt image data"),
    (_replace("too_long", png_bytes(np.zeros((29, 28), np.uint8))), "corrupt image data"),
    (_replace("no_idat", png_bytes(idat=b"")), "corrupt image data"),
    (_too_big, "bytes, too big for a 28x28 digit"),
    (_remove_all_pngs, "no PNG files in mnist_sample/valid/7/"),
    (_remove_folder, "no PNG files in mnist_sample/train/3/"),
]


@pytest.mark.parametrize(("breaker", "why"), BROKEN, ids=[b.__name__ for b, _ in BROKEN])
def test_stage_names_the_bad_file_and_writes_nothing(tree, tmp_path, breaker, why):
    member = breaker(tree)
    archive = pack(tree)
    bad = f"{archive}:{member}" if member else str(archive)
    out = tmp_path / "out"
    r = run_stage("stack", archive=archive, **into(out))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1, r.stderr  # one line, no traceback
    assert r.stderr.startswith(f"error: {bad}: ") and why in r.stderr, r.stderr
    assert not out.exists() or not any(out.iterdir())


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    return info, data


@pytest.mark.parametrize(("extra", "why"), [
    (_member("mnist_sample/train/3/s.png", tarfile.SYMTYPE, link="/etc/passwd"),
     "mnist_sample/train/3/s.png: not a regular file"),
    (_member("mnist_sample/train/3/2.png", data=b"again"),
     "mnist_sample/train/3/2.png: in the archive twice"),
], ids=["symlink", "duplicate"])
def test_stage_refuses_odd_members_it_would_read(tree, tmp_path, extra, why):
    """The download stage refuses these; a hand-replaced archive still fails clearly here."""
    archive = pack(tree)
    with tarfile.open(archive) as tar:
        kept = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
    with tarfile.open(archive, "w:gz") as tar:
        for m, data in [*kept, extra]:
            tar.addfile(m, io.BytesIO(data) if m.isfile() else None)
    r = run_stage("stack", archive=archive, **into(tmp_path / "out"))
    assert r.returncode == 1
    assert r.stderr == f"error: {archive}:{why}; rerun the download stage\n"


@pytest.mark.parametrize("case", ["truncated", "not an archive", "missing", "a folder"])
def test_stage_refuses_a_broken_or_missing_archive(tree, tmp_path, case):
    archive = pack(tree)
    words = {"truncated": "truncated or corrupt archive", "not an archive": "not a readable",
             "missing": "not found", "a folder": "is a folder"}[case]
    if case == "truncated":
        archive.write_bytes(archive.read_bytes()[:-200])
    elif case == "not an archive":
        archive.write_bytes(bytes(range(256)) * 4)
    elif case == "missing":
        archive.unlink()
    else:
        archive.unlink()
        archive.mkdir()
    r = run_stage("stack", archive=archive, **into(tmp_path / "out"))
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {archive}: {words}") and r.stderr.count("\n") == 1, \
        r.stderr
    assert r.stderr.endswith("; rerun the download stage\n"), r.stderr


def test_stage_keeps_previous_outputs_when_it_fails(tree, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.safetensors").write_text("previous")
    (out / "counts.json").write_text("previous")
    _replace("text", b"oops")(tree)
    assert run_stage("stack", archive=pack(tree), **into(out)).returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["counts.json", "x.safetensors"]
    assert {p.read_text() for p in out.iterdir()} == {"previous"}


# -- The real data ----------------------------------------------------------------------------
def test_stage_on_the_real_archive_equals_the_chapters_pil_loop(mnist_archive, tmp_path):
    out = tmp_path / "out"
    r = run_stage("stack", threads=2, archive=mnist_archive, **into(out))
    assert r.returncode == 0, r.stderr

    counts = json.loads((out / "counts.json").read_text())
    assert counts == {"train": {"3": 6131, "7": 6265}, "valid": {"3": 1010, "7": 1028}}
    t = load_tensors(out / "x.safetensors")
    assert sorted(t) == ["train_x", "train_y", "valid_x", "valid_y"]
    with tarfile.open(mnist_archive) as tf:
        pngs = {m.name: tf.extractfile(m).read() for m in tf if m.name.endswith(".png")}
    for split, n3, n7 in [("train", 6131, 6265), ("valid", 1010, 1028)]:
        x, y = t[f"{split}_x"], t[f"{split}_y"]
        assert tuple(x.shape) == (n3 + n7, 28, 28) and tuple(y.shape) == (n3 + n7,)
        assert str(x.dtype) == str(y.dtype) == "torch.uint8"
        assert y[:n3].eq(1).all() and y[n3:].eq(0).all()  # 1 for a 3, 0 for a 7
        # The chapter's loop: each class folder's PNGs, sorted by name, opened by PIL.
        files = sorted((n for n in pngs if n.startswith(f"mnist_sample/{split}/")),
                       key=lambda n: (n.split("/")[2], n.rsplit("/", 1)[1]))
        pixels = [pil_decode(io.BytesIO(pngs[n])) for n in files]
        np.testing.assert_array_equal(x.numpy(), np.stack(pixels))


# -- The full MNIST: ten digits, labelled by their own value ---------------------------------
MNIST_DATA = load(ROOT / "params.yaml", "mnist.data")["mnist.data"]
DIGITS = [str(d) for d in range(10)]


def downloaded(source: Path, tmp_path: Path, monkeypatch, data=MNIST_DATA) -> Path:
    """`source` through the download stage's function, via MNIST_URL: data/mnist.tgz."""
    monkeypatch.setenv("MNIST_URL", str(source))
    monkeypatch.setenv("HOME", str(tmp_path))  # no fastai cache but the one a test puts there
    out = tmp_path / "data" / "mnist.tgz"
    download(data, out, layout=MNIST)
    return out


@pytest.fixture
def digits(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(the tiny mnist_png.tgz's tree, its verified re-pack as the download stage wrote it)."""
    (tmp_path / "digits").mkdir()
    archive, _, digest = make_digits_archive(tmp_path / "digits")
    data = MNIST_DATA.model_copy(update={"content_digest": digest})
    return tmp_path / "digits" / "tree" / "mnist_png", downloaded(archive, tmp_path,
                                                                 monkeypatch, data)


def test_class_dir_follows_the_layout():
    assert class_dir("mnist_png/training/0/1.png", MNIST) == "training/0"
    assert class_dir("mnist_png/testing/9/10.png", MNIST) == "testing/9"
    assert class_dir("mnist_sample/train/3/1.png") == "train/3"  # MNIST_SAMPLE by default
    for other in ("mnist_sample/train/3/1.png", "mnist_png/training/3/a/1.png",
                  "mnist_png/valid/3/1.png", "mnist_png/training/10/1.png",
                  "mnist_png/training/3/1.txt"):
        assert class_dir(other, MNIST) is None, other
    assert class_dir("mnist_png/training/3/1.png") is None


def test_stack_orders_digits_0_to_9_by_file_name_and_labels_each_by_its_value(digits):
    tree, archive = digits
    tensors, counts = stack(archive, MNIST)
    assert counts == {"training": dict.fromkeys(DIGITS, 3), "testing": dict.fromkeys(DIGITS, 2)}
    assert list(counts["training"]) == DIGITS  # the counts JSON lists them in order too
    assert sorted(tensors) == ["train_x", "train_y", "valid_x", "valid_y"]
    for key, split, n in [("train", "training", 3), ("valid", "testing", 2)]:
        x, y = tensors[f"{key}_x"], tensors[f"{key}_y"]
        assert x.shape == (10 * n, 28, 28) and y.shape == (10 * n,)
        assert x.dtype == y.dtype == np.uint8
        assert y.tolist() == [d for d in range(10) for _ in range(n)]
        # The chapter's order: class folder by class folder, each sorted by file name as text.
        files = [p for d in DIGITS for p in sorted((tree / split / d).iterdir(),
                                                   key=lambda p: p.name)]
        np.testing.assert_array_equal(x, np.stack([pil_decode(p) for p in files]))
    names = [name for name, _ in png_members(archive, MNIST)["training"]["3"]]
    assert names == [f"{archive}:mnist_png/training/3/{n}.png" for n in (13, 23, 3)]  # as text


def test_stack_refuses_an_archive_of_the_other_layout(tmp_path, digits):
    """MNIST_SAMPLE's archive stacked as MNIST (and back): one line naming what is missing."""
    _, archive = digits
    (tmp_path / "sample").mkdir()
    sample, _, _ = make_tiny_archive(tmp_path / "sample")
    with pytest.raises(PipelineError) as exc:
        stack(sample, MNIST)
    assert str(exc.value) == (f"{sample}: no PNG files in mnist_png/training/0/; "
                              "rerun the download stage")
    with pytest.raises(PipelineError, match="no PNG files in mnist_sample/train/3/"):
        stack(archive)
