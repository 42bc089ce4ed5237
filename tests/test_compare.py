"""`python -m mnist_basics compare A B`: two runs side by side, read through DVC at their
revisions, in a clone as in the project that made them, and in a real browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load

from mnist_basics.pipeline.definition import METHODS, WALL_CLOCK, metrics, predictions
from mnist_basics.registry import ROWS
from tests.harness import set_params, sh
from tests.test_report import Page
from tests.test_report_browser import offline_browser

SECTIONS = ["params", "accuracy", "curves", "confusion", "disagreements", "artifacts"]


@pytest.fixture(scope="module")
def runs(finished_experiment, tmp_path_factory) -> tuple[Path, dict]:
    """A finished tiny run, committed, and one experiment beside it: `faster`, mlp.lr 0.1."""
    proj, env, _ = finished_experiment(tmp_path_factory.mktemp("compare") / "proj")
    return proj, env


def at(proj: Path, rev: str, path: str) -> str:
    """A git-tracked file at a revision, through git itself (an experiment by its ref)."""
    if rev != "HEAD":
        refs = sh("git", "for-each-ref", "--format=%(refname)", "refs/exps", cwd=proj).stdout
        rev = next(r for r in refs.split() if r.endswith(f"/{rev}"))
    return sh("git", "show", f"{rev}:{path}", cwd=proj).stdout


def cached(proj: Path, md5: str) -> dict[str, np.ndarray]:
    """A DVC-tracked file by its hash, from the cache itself."""
    return load((proj / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).read_bytes())


def compare(proj: Path, env: dict, a: str, b: str, out: Path) -> Page:
    r = sh("python", "-m", "mnist_basics", "compare", a, b, "--out", str(out), cwd=proj, env=env)
    assert r.stdout.strip() == f"wrote {out}: {a} beside {b}"
    return Page(out.read_text())


@pytest.mark.slow
def test_the_page_sets_a_commit_beside_an_experiment(runs, tmp_path):
    proj, env = runs
    page = compare(proj, env, "HEAD", "faster", tmp_path / "c.html")
    assert [i for i in page.ids if i in SECTIONS] == SECTIONS

    assert page.tables["params-table"][1:] == [["mlp.lr", "0.2", "0.1"]]

    locks = {rev: {o["path"]: o["md5"] for s in yaml.safe_load(at(proj, rev, "dvc.lock"))
                   ["stages"].values() for o in s["outs"]} for rev in ("HEAD", "faster")}
    got = {rev: {m: json.loads(at(proj, rev, metrics(m))) for m in METHODS}
           for rev in locks}
    rows = page.tables["accuracy-table"][1:]
    assert [r[0] for r in rows] == [r.title for r in ROWS.values()]
    for row, (key, spec) in zip(rows, ROWS.items(), strict=True):
        method = "pixel_mean" if key.startswith("pixel_mean") else key
        a, b = (got[rev][method][f"{spec.prefix}accuracy"] for rev in ("HEAD", "faster"))
        assert row[1:] == [f"{a:.6f}", f"{b:.6f}", f"{b - a:+.6f}"], key

    # Every output whose hash differs, and no other; the wall-clock ones marked.
    differ = sorted(p for p in locks["HEAD"] if locks["HEAD"][p] != locks["faster"][p])
    listed = page.tables["artifacts-table"][1:]
    assert [r[0].removesuffix(" (wall-clock)") for r in listed] == differ
    assert {r[0].removesuffix(" (wall-clock)") for r in listed if "wall-clock" in r[0]} == {
        p for p in differ if p in WALL_CLOCK}
    assert "models/mlp.safetensors" in differ and "models/linear.safetensors" not in differ

    # The digits each run gets right and the other wrong, counted from its predictions.
    y = cached(proj, locks["HEAD"]["data/mnist_sample.safetensors"])["valid_y"]
    text = " ".join(page.text)
    for m in ("mlp", "resnet18"):
        pa, pb = (cached(proj, locks[rev][predictions(m)])["pred"] for rev in locks)
        only_a = int(((pa == y) & (pb != y)).sum())
        assert re.search(rf"\b{only_a} digits? HEAD gets right and faster wrong", text), m
    assert len(page.tables["confusion-1-mlp"]) == len(page.tables["confusion-2-mlp"]) == 4


@pytest.mark.slow
def test_the_workspace_is_a_run_too_and_a_clone_reads_both_through_dvc(runs, tmp_path):
    proj, env = runs
    # After `dvc exp run`, the workspace holds the experiment's results: the same run.
    page = compare(proj, env, "workspace", "faster", tmp_path / "same.html")
    assert "params-table" not in page.tables and "Both runs have the same params." in page.text
    assert page.tables["artifacts-table"][1:] == []

    # A clone with the experiment's ref and a cache that holds both runs, none of their
    # files in its workspace.
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(proj), str(clone), cwd=tmp_path)
    sh("git", "fetch", "-q", "origin", "refs/exps/*:refs/exps/*", cwd=clone)
    sh("dvc", "cache", "dir", "--local", str(proj / ".dvc/cache"), cwd=clone)
    assert not (clone / "models").exists() or not any((clone / "models").rglob("*.safetensors"))
    there = compare(clone, env, "HEAD", "faster", tmp_path / "clone.html")
    here = compare(proj, env, "HEAD", "faster", tmp_path / "here.html")
    for table in ("params-table", "accuracy-table", "artifacts-table"):
        assert there.tables[table] == here.tables[table], table

    r = sh("python", "-m", "mnist_basics", "compare", "HEAD", "no-such-run", cwd=proj,
           env=env, check=False)
    assert r.returncode == 1 and r.stderr.splitlines() == [
        "error: compare: 'no-such-run' is neither a git revision nor a DVC experiment "
        "(`dvc exp show` lists them), nor 'workspace'"]


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_opens_offline_in_both_languages(runs, tmp_path):
    proj, env = runs
    pages = {}
    for lang in ("en", "et"):
        set_params(proj, report={"lang": lang})  # the workspace's report.lang
        pages[lang] = tmp_path / f"compare.{lang}.html"
        compare(proj, env, "HEAD", "faster", pages[lang])
    set_params(proj, report={"lang": "en"})
    asked, errors, seen = [], [], {}
    with offline_browser(tmp_path) as context:
        context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(
            ("file://", "data:")) else (asked.append(r.request.url), r.abort()))
        for lang, path in pages.items():
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(path.as_uri(), wait_until="load")
            seen[lang] = page.evaluate("""() => ({
                lang: document.documentElement.lang,
                sections: [...document.querySelectorAll('section')].map(s => s.id),
                images: [...document.images].map(i => i.complete && i.naturalWidth > 0),
                alts: [...document.images].map(i => i.alt),
                visible: [...document.querySelectorAll('section')].every(
                    s => s.getBoundingClientRect().height > 0),
                overflow: document.documentElement.scrollWidth
                          - document.documentElement.clientWidth})""")
            page.screenshot(path=str(tmp_path / f"compare-{lang}.png"), full_page=True)
            page.close()
    assert asked == [] and errors == []
    for lang, s in seen.items():
        assert s["lang"] == lang and s["sections"] == SECTIONS and s["visible"], lang
        assert len(s["images"]) >= 4 and all(s["images"]), lang  # the curves, the steps
        assert s["overflow"] <= 0, lang
        assert (tmp_path / f"compare-{lang}.png").stat().st_size > 10_000
    # The same figures, described in each language.
    assert all(a != b for a, b in zip(seen["en"]["alts"], seen["et"]["alts"], strict=True))
