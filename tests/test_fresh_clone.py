"""A fresh clone's `make run` reproduces the committed dvc.lock, whoever packed the archive,
and reaches the book's figures.

The download stage re-packs the verified files canonically, so any faithful copy of the
archive gives the same bytes, and so does everything after it; only the files that hold
wall-clock figures differ between two runs, and the page says so.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pytest
import yaml

from mnist_basics.data.download import download
from mnist_basics.params import load
from mnist_basics.pipeline.definition import (
    ARCHIVE,
    BY_NAME,
    STAGES,
    WALL_CLOCK,
    classes,
    metrics,
    timing,
)
from tests.harness import (
    ROOT,
    borrow_venv,
    content_digest,
    engine_env,
    make_project,
    make_tiny_tree,
    sh,
)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def repack(top: Path, path: Path, *, mode: str, reverse: bool, mtime: int, owner: str) -> Path:
    """mnist_sample/ packed one particular way: member order, dates, owners, compression."""
    files = sorted((p for p in top.rglob("*") if p.is_file()), reverse=reverse)
    with tarfile.open(path, mode) as tar:
        for p in files:
            info = tar.gettarinfo(p, arcname=f"mnist_sample/{p.relative_to(top).as_posix()}")
            info.mtime, info.uname, info.gname = mtime, owner, owner
            with open(p, "rb") as f:
                tar.addfile(info, f)
    return path


def test_two_packings_of_the_same_files_give_the_same_verified_archive(tmp_path, monkeypatch):
    top = make_tiny_tree(tmp_path / "tree")
    data = load(ROOT / "params.yaml", "data")["data"].model_copy(
        update={"content_digest": content_digest(top)})
    a = repack(top, tmp_path / "a.tgz", mode="w:gz", reverse=False, mtime=1_600_000_000,
               owner="alice")
    b = repack(top, tmp_path / "b.tar.xz", mode="w:xz", reverse=True, mtime=1_700_000_000,
               owner="bob")
    assert md5(a) != md5(b)
    outs = []
    for source in (a, b):
        monkeypatch.setenv("MNIST_SAMPLE_URL", str(source))
        out = tmp_path / source.stem / "mnist_sample.tgz"
        assert download(data, out).verified_by == "content digest"
        outs.append(out)
    assert md5(outs[0]) == md5(outs[1])
    # ...and the canonical archive holds every file, unchanged, in sorted order.
    with tarfile.open(outs[0]) as tar:
        names = tar.getnames()
        assert names == sorted(names)
        assert {n: tar.extractfile(n).read() for n in names} == {
            f"mnist_sample/{p.relative_to(top).as_posix()}": p.read_bytes()
            for p in top.rglob("*") if p.is_file()}
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in tar} == {
            (0, 0, 0, "", "", 0o644)}
    assert io.BytesIO(outs[0].read_bytes()).read(10)[4:8] == b"\0\0\0\0"  # gzip mtime 0


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory, mnist_archive) -> Path:
    """The project as a clone has it, with its committed dvc.lock, after `make run`."""
    proj = make_project(tmp_path_factory.mktemp("clone") / "proj", clone=True)
    borrow_venv(proj)
    env = engine_env(MNIST_SAMPLE_URL=str(mnist_archive))
    env.pop("PYTHONPATH", None)
    r = sh("make", "run", cwd=proj, env=env, timeout=1200)
    assert "error" not in r.stderr.lower(), r.stderr
    return proj


@pytest.mark.slow
def test_make_run_in_a_fresh_clone_reproduces_every_locked_hash(fresh_clone):
    committed = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    outs = {o["path"]: o["md5"] for s in committed.values() for o in s["outs"]}
    clock = {p for p in WALL_CLOCK if p in {o for s in STAGES for o in s.all_outputs}}
    assert ARCHIVE in outs and clock and clock <= set(outs)  # the chapter's, in dvc.lock
    got = {p: md5(fresh_clone / p) for p in outs if p not in WALL_CLOCK}
    assert got == {p: h for p, h in outs.items() if p not in WALL_CLOCK}


@pytest.mark.slow
def test_a_bare_dvc_status_is_clean_after_make_run(fresh_clone):
    """Every dvc.yaml DVC sees is up to date: the chapter's, which the run made, and the
    spread's, whose outputs a clone has; the full MNIST's, not built, is not DVC's to see."""
    r = sh("dvc", "status", cwd=fresh_clone)
    assert r.stdout.splitlines() == ["Data and pipelines are up to date."]
    assert "/mnist/dvc.yaml" in (fresh_clone / ".dvcignore").read_text()


@pytest.mark.slow
def test_the_page_of_a_fresh_run_tells_wall_clock_figures_from_edits(fresh_clone):
    html = (fresh_clone / "reports/index.html").read_text()
    summary = re.search(r'<td id="git-dirty">(.*?)</td>', html, re.S).group(1)
    assert summary.startswith("no")
    status = sh("git", "status", "--porcelain", "--untracked-files=no", cwd=fresh_clone).stdout
    assert [line[3:] for line in status.splitlines()] == ["dvc.lock"]  # the run's seconds

    # Edit a tracked file: the page names it, and still sets dvc.lock apart.
    with open(fresh_clone / "README.md", "a") as f:
        f.write("\nA note of mine.\n")
    env = {**engine_env(), "PYTHONPATH": str(fresh_clone)}
    sh("sh", "-c", BY_NAME["report"].cmd, cwd=fresh_clone, env=env)  # as dvc.yaml runs it
    html = (fresh_clone / "reports/index.html").read_text()
    summary = re.search(r'<td id="git-dirty">(.*?)</td>', html, re.S).group(1)
    assert summary.startswith("yes") and "<code>README.md</code>" in summary
    assert re.search(r"Besides, <code>dvc.lock</code> differs, and only in this run's "
                     r"wall-clock figures", summary)


@pytest.mark.slow
def test_a_fresh_run_reaches_the_books_figures(fresh_clone):
    """Every method of the chapter, default params, MNIST_SAMPLE: the book's figures."""
    m = {n: {**json.loads((fresh_clone / metrics(n)).read_text()),
             **json.loads((fresh_clone / classes(n)).read_text())}
         for n in ("pixel_mean", "linear", "mlp", "resnet18")}
    # The book: 0.9168 on 3s, 0.9854 on 7s, 0.9511 on average, to 4 places.
    pm = m["pixel_mean"]
    assert (round(pm["accuracy_3"], 4), round(pm["accuracy_7"], 4), round(pm["accuracy"], 4)) == (
        0.9168, 0.9854, 0.9511)
    # The book's linear1: 0.9696. Seed 42 gives 0.9701; 9 of 11 seeds tried reach 0.9696
    # (the spread is 0.9671-0.9750).
    assert m["linear"]["accuracy"] >= 0.9696
    # The book's simple_net: 0.982826, 2003 of 2038 right, from one run. The book's lr 0.1
    # ends at 2000-2002 over 11 seeds here; the default lr 0.2 (same 40 epochs) at 2003-2008.
    assert m["mlp"]["accuracy"] >= 0.9828
    # resnet18, one epoch from scratch: the README gives the spread over seeds.
    assert m["resnet18"]["accuracy"] >= 0.995
    assert min(m["resnet18"]["accuracy_3"], m["resnet18"]["accuracy_7"]) >= 0.99
    batch = load(fresh_clone / "params.yaml", "resnet18")["resnet18"].batch_size
    steps = list(csv.DictReader((fresh_clone / "metrics/resnet18_steps.csv").open()))
    assert len(steps) == 12396 // batch  # the last partial batch dropped
    t = json.loads((fresh_clone / timing("resnet18")).read_text())
    assert t["images_per_second"] == pytest.approx(len(steps) * batch / t["train_seconds"],
                                                   rel=0.01)
