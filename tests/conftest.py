"""Shared fixtures: the real archive, and a tiny synthetic stand-in for the stacked tensors."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent


def local_archive() -> Path | None:
    """The real mnist_sample.tgz: MNIST_SAMPLE_URL (a path or file:// URL), or fastai's cache."""
    url = os.environ.get("MNIST_SAMPLE_URL", "")
    candidates = []
    if url:
        candidates.append(Path(urlparse(url).path if url.startswith("file://") else url))
    candidates.append(Path.home() / ".fastai/archive/mnist_sample.tgz")
    return next((p for p in candidates if p.is_file()), None)


@pytest.fixture(scope="session")
def mnist_archive() -> Path:
    path = local_archive()
    if path is None:
        pytest.fail("the real data is needed: set MNIST_SAMPLE_URL to a local mnist_sample.tgz")
    return path


def make_tiny_tensors(path: Path, n_train: int = 96, n_valid: int = 48, seed: int = 0) -> Path:
    """Write a small, learnable stand-in for data/mnist_sample.safetensors.

    A "3" is a bright right-hand arc and a "7" a top bar with a diagonal, plus noise: easy
    enough for every model to learn in a few steps, shaped exactly like the real tensors.
    """
    import torch

    from mnist_basics.artifacts import save_tensors

    g = torch.Generator().manual_seed(seed)
    three = torch.zeros(28, 28)
    three[4:24, 16:22] = 1.0
    three[4:7, 8:22] = three[13:15, 10:22] = three[21:24, 8:22] = 1.0
    seven = torch.zeros(28, 28)
    seven[4:7, 6:22] = 1.0
    for i in range(7, 25):
        seven[i, max(0, 21 - (i - 7) // 2 - 2) : 21 - (i - 7) // 2 + 1] = 1.0

    def split(n):
        y = (torch.arange(n) % 2 == 0).to(torch.uint8)  # 1 = a 3, 0 = a 7
        base = torch.where(y.bool()[:, None, None], three, seven)
        x = (base * 200 + torch.rand(n, 28, 28, generator=g) * 55).clamp(0, 255)
        return x.to(torch.uint8), y

    tx, ty = split(n_train)
    vx, vy = split(n_valid)
    save_tensors(path, {"train_x": tx, "train_y": ty, "valid_x": vx, "valid_y": vy})
    return path


@pytest.fixture
def tiny_tensors(tmp_path) -> Path:
    return make_tiny_tensors(tmp_path / "tiny.safetensors")


def content_digest(folder: Path) -> str:
    """The archive's content digest, written out independently of mnist_basics.download."""
    import hashlib

    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    lines = "".join(
        f"{hashlib.sha256((folder / f).read_bytes()).hexdigest()}  {f}\n" for f in files
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def make_tiny_tree(root: Path, n_train: int = 24, n_valid: int = 12, seed: int = 0) -> Path:
    """A tiny mnist_sample/ folder of real PNG files (the tiny_tensors digits), with labels.csv."""
    from PIL import Image
    from safetensors.torch import load_file

    t = load_file(make_tiny_tensors(root / "tiny.safetensors", n_train, n_valid, seed))
    (root / "tiny.safetensors").unlink()
    top = root / "mnist_sample"
    rows = ["name,label"]
    for split in ("train", "valid"):
        for i, (x, y) in enumerate(zip(t[f"{split}_x"], t[f"{split}_y"], strict=True)):
            cls = "3" if y else "7"
            name = f"{split}/{cls}/{1000 + i}.png"
            (top / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x.numpy(), mode="L").save(top / name)
            rows.append(f"{name},{0 if y else 1}")
    (top / "labels.csv").write_text("\n".join(rows) + "\n")
    return top


def make_tiny_archive(root: Path, **kw) -> tuple[Path, str, str]:
    """A tiny, well-formed mnist_sample.tgz: returns (path, md5, content digest)."""
    import hashlib
    import tarfile

    src = root / "tree"
    top = make_tiny_tree(src, **kw)
    path = root / "mnist_sample.tgz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(top, arcname="mnist_sample")
    return path, hashlib.md5(path.read_bytes()).hexdigest(), content_digest(top)
