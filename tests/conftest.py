"""Shared fixtures: the real archive, tiny synthetic stand-ins for it, and project copies.

`project` copies this project into a fresh git repo under tmp_path, set to download a tiny
archive, so that a whole Snakemake or DVC run takes seconds and never touches the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

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


@pytest.fixture(scope="session")
def real_tensors(mnist_archive, tmp_path_factory) -> Path:
    """The real archive stacked by stages/stack.py, once per test session."""
    tmp = tmp_path_factory.mktemp("real")
    tensors = tmp / "mnist_sample.safetensors"
    r = subprocess.run(
        [sys.executable, str(ROOT / "stages/stack.py"), "--archive", str(mnist_archive),
         "--tensors", str(tensors), "--counts", str(tmp / "counts.json")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    return tensors


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


# -- A local web server, for the download stage's http(s) path -----------------------------


class Handler(BaseHTTPRequestHandler):
    """Serves `server.routes[path] = (content type, body, bytes actually sent)`."""

    def do_GET(self):
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        ctype, body, sent = route
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:sent])  # HTTP/1.0: the connection closes after this

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    """A web server on 127.0.0.1 for this module's tests; add pages to `server.routes`."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.routes = {}
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


# -- One stage, run as its engine would, outputs under a tmp folder -------------------------


def write_params(path: Path, **sections: dict) -> Path:
    """params.yaml with the defaults, some values replaced: write_params(p, mlp={"epochs": 2})."""
    from mnist_basics.params import defaults

    values = defaults()
    for name, updates in sections.items():
        values[name].update(updates)
    path.write_text(yaml.safe_dump(values))
    return path


def run_stage(name: str, out: Path, tensors: Path, params: Path | None = None,
              **env: str) -> subprocess.CompletedProcess:
    """Run stages/<name>.py (a model stage) with every output under `out`, one thread."""
    from mnist_basics.pipeline import BY_NAME

    s = BY_NAME[name]
    cmd = [sys.executable, str(ROOT / s.script), "--tensors", str(tensors)]
    if params is not None:
        cmd += ["--params", str(params)]
    for flag, path in {**s.outputs, **s.metrics, **s.plots}.items():
        cmd += [f"--{flag.replace('_', '-')}", str(out / path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(cmd, cwd=out.parent, env=env, capture_output=True, text=True,
                          timeout=600)


# -- A copy of the project, for tests that run whole engines --------------------------------

VENV_BIN = Path(sys.executable).parent
OUTPUT_DIRS = ("data", "models", "metrics")  # where the stages write; never copied
GENERATED = ("dvc.lock", "reports/index.html", "reports/accuracy.csv")


def engine_env(**extra) -> dict:
    """The environment the engines run in: this venv first on PATH, no thread cap."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", **extra}
    env.pop("OMP_NUM_THREADS", None)
    return env


def sh(*cmd, cwd=ROOT, env=None, check=True, timeout=600) -> subprocess.CompletedProcess:
    # Stage scripts in a project copy import the copy's package, not the one installed here.
    env = {**(env or engine_env()), "PYTHONPATH": str(cwd)}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def set_params(proj: Path, **sections: dict) -> None:
    """Update params.yaml in `proj`: set_params(p, mlp={"epochs": 2})."""
    path = proj / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


# A whole run in seconds: these copies test the machinery, not the accuracy.
FAST_PARAMS = {"linear": {"epochs": 3}, "mlp": {"epochs": 3},
               "resnet18": {"epochs": 1, "batch_size": 8}}


def make_project(dest: Path, archive: Path, md5: str, digest: str,
                 params: dict | None = None) -> Path:
    """Copy this project's tracked and new files (no outputs) into a fresh git repo at `dest`.

    params.yaml accepts `archive` (by md5 and content digest), updated with `params`.
    Point MNIST_SAMPLE_URL at `archive` for the download stage to use it.
    """
    files = sh("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z").stdout
    for rel in filter(None, files.split("\0")):
        if rel.split("/")[0] in OUTPUT_DIRS or rel in GENERATED or not (ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    set_params(dest, data={"md5": md5, "content_digest": digest}, **(params or {}))
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@example.com")
    sh("git", "init", "-q", cwd=dest)
    sh(*git, "add", "-A", cwd=dest)
    sh(*git, "commit", "-qm", "copy", cwd=dest)
    return dest


@pytest.fixture
def tiny_archive(tmp_path) -> tuple[Path, str, str]:
    """make_tiny_archive in tmp_path/archive: (path, md5, content digest)."""
    (tmp_path / "archive").mkdir()
    return make_tiny_archive(tmp_path / "archive")


@pytest.fixture
def project(tmp_path, tiny_archive, monkeypatch) -> Path:
    """A copy of this project in a fresh git repo, set to download a tiny archive, fast params."""
    archive, md5, digest = tiny_archive
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(archive))
    return make_project(tmp_path / "proj", archive, md5, digest, FAST_PARAMS)


SNAKEMAKE = ("snakemake", "--cores", "4", "--resources", "gpu=1")


def dvc_changed(proj: Path, env: dict | None = None) -> set[str]:
    """The stages `dvc status` reports as changed."""
    out = sh("dvc", "status", cwd=proj, env=env).stdout
    if "Data and pipelines are up to date." in out:
        return set()
    return {line[:-1] for line in out.splitlines() if re.match(r"^\w+:$", line)}


def snakemake_plan(proj: Path, env: dict | None = None) -> set[str] | str:
    """The stages a Snakemake dry run would run, or its error when it refuses to plan."""
    r = sh(*SNAKEMAKE, "--dry-run", cwd=proj, env=env, check=False)
    if r.returncode != 0:
        return r.stdout + r.stderr
    return set(re.findall(r"^(?:local)?rule (\w+):$", r.stdout, re.M)) - {"all"}
