"""Shared fixtures: the real archive, tiny synthetic stand-ins for it, and project copies.

The helpers behind them live in tests/harness.py, which `make bench` uses too. `project`
copies this project into a fresh git repo under tmp_path, set to download a tiny archive, so
that a whole Snakemake or DVC run takes seconds and never touches the checkout.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.digits_archive import real_digits_archive
from tests.harness import (
    ENGINES,
    REAL_MODELS,
    engine_env,
    git_commit,
    local_archive,
    make_tiny_archive,
    make_tiny_tensors,
    run_stage,
    sh,
    tiny_project,
    train_all,
    write_params,
)

# The suite runs three files at once on two cores, and their engines run stages side by side,
# so OpenMP threads that spin while they wait burn the cores the others need: resnet18's
# training beside one busy process ran at 208 img/s spinning, 370 img/s waiting passively.
# Alone, as the pipeline runs it, spinning is ~8% faster, so only the tests set this (before
# any test imports torch; every process they start inherits it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The files that take minutes, longest first (`make test` prints --durations): run first, so
# that workers side by side (pytest-xdist, one file each) finish together.
SLOWEST_FIRST = ("test_mnist_real.py", "test_engines.py", "test_mnist.py", "test_faults.py",
                 "test_slurm.py", "test_bench.py", "test_definition_edits.py", "test_spread.py",
                 "test_readme.py", "test_slurm_small_nodes.py", "test_dvc_views.py",
                 "test_compare.py", "test_fresh_clone.py", "test_remotes.py",
                 "test_reproducibility.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


# -- Made once per session, whichever worker asks first ---------------------------------------
@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory) -> Path:
    """A folder all pytest-xdist workers of this session share (the session's own without)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once(shared: Path, name: str, make) -> Path:
    """shared/name, made by `make(folder)` in the first worker to ask; the others wait for it
    (a lock file), then read it. A failed make leaves nothing, so the next asker retries."""
    folder = shared / name
    with open(shared / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            with contextlib.ExitStack() as undo:
                undo.callback(shutil.rmtree, folder, ignore_errors=True)
                make(folder)
                undo.pop_all()
            (folder / ".done").touch()
    return folder


@pytest.fixture(scope="session")
def finished_project(shared_tmp):
    """`finished_project(engine, dest)`: a tiny project (harness.tiny_project) that `engine`
    ran from start to end, copied to `dest`, with its engine state, DVC cache and git repo;
    returns (dest, its archive). Each engine runs once per session: the tests that need a
    finished run to start from copy it, and those that check the clean run itself run their
    own. The archive is shared: read it, never change it."""
    def make(engine: str, folder: Path) -> None:
        (folder / "archive").mkdir()
        archive = make_tiny_archive(folder / "archive")
        proj = tiny_project(folder / "proj", archive)
        sh(*ENGINES[engine], cwd=proj, env=engine_env(MNIST_SAMPLE_URL=str(archive[0])))
        (folder / "archive.json").write_text(json.dumps([str(archive[0]), *archive[1:]]))

    def copy(engine: str, dest: Path) -> tuple[Path, tuple[Path, str, str]]:
        folder = once(shared_tmp, f"finished-{engine}", lambda f: make(engine, f))
        shutil.copytree(folder / "proj", dest, symlinks=True)  # mtimes too, for Snakemake
        path, md5, digest = json.loads((folder / "archive.json").read_text())
        return dest, (Path(path), md5, digest)

    return copy


@pytest.fixture(scope="session")
def finished_experiment(shared_tmp, finished_project):
    """`finished_experiment(dest)`: the finished Snakemake project with its run committed and
    one DVC experiment beside it, `faster` (`dvc exp run -n faster -S mlp.lr=0.1`), copied to
    `dest`; returns (dest, the engines' environment, the experiment's output). Made once per
    session, like finished_project."""
    def make(folder: Path) -> None:
        proj, archive = finished_project("snakemake", folder / "proj")
        for key, value in (("user.name", "t"), ("user.email", "t@example.com")):
            sh("git", "config", key, value, cwd=proj)
        git_commit(proj, "the chapter's run")
        env = engine_env(MNIST_SAMPLE_URL=str(archive[0]))
        r = sh("dvc", "exp", "run", "-n", "faster", "-S", "mlp.lr=0.1", cwd=proj, env=env)
        (folder / "experiment.json").write_text(json.dumps([str(archive[0]), r.stdout]))

    def copy(dest: Path) -> tuple[Path, dict, str]:
        folder = once(shared_tmp, "experiment", make)
        shutil.copytree(folder / "proj", dest, symlinks=True)
        archive, output = json.loads((folder / "experiment.json").read_text())
        return dest, engine_env(MNIST_SAMPLE_URL=archive), output

    return copy


@pytest.fixture(scope="session")
def mnist_archive() -> Path:
    path = local_archive()
    if path is None:
        pytest.fail("the real data is needed: set MNIST_SAMPLE_URL to a local mnist_sample.tgz")
    return path


@pytest.fixture(scope="session")
def mnist_png_archive() -> Path:
    """The real full MNIST, mnist_png.tgz, from MNIST_URL or fastai's cache (session-wide, so
    it is found before a test's own HOME or environment hides it)."""
    return real_digits_archive()


@pytest.fixture(scope="session")
def real_tensors(mnist_archive, shared_tmp) -> Path:
    """The real archive stacked by stages/stack.py, once per test session."""
    def make(folder: Path) -> None:
        r = run_stage("stack", archive=mnist_archive, tensors=folder / "mnist_sample.safetensors",
                      counts=folder / "counts.json")
        assert r.returncode == 0, r.stderr

    return once(shared_tmp, "real-tensors", make) / "mnist_sample.safetensors"


@pytest.fixture(scope="session")
def real_models(real_tensors, shared_tmp) -> Path:
    """REAL_MODELS trained on the real data by their stages, default params, once per test
    session: their checkpoints' folder."""
    def make(folder: Path) -> None:
        params = write_params(folder / "params.yaml", train={"device": "cpu"})
        train_all(REAL_MODELS, folder, real_tensors, params)

    return once(shared_tmp, "real-models", make) / "models"


@pytest.fixture
def tiny_tensors(tmp_path) -> Path:
    return make_tiny_tensors(tmp_path / "tiny.safetensors")


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


@pytest.fixture
def tiny_archive(tmp_path) -> tuple[Path, str, str]:
    """make_tiny_archive in tmp_path/archive: (path, md5, content digest)."""
    (tmp_path / "archive").mkdir()
    return make_tiny_archive(tmp_path / "archive")


@pytest.fixture
def project(tmp_path, tiny_archive, monkeypatch) -> Path:
    """A copy of this project in a fresh git repo, set to download a tiny archive, fast params."""
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(tiny_archive[0]))
    return tiny_project(tmp_path / "proj", tiny_archive)
