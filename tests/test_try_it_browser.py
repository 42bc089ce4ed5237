"""The report's "Try it" panel in a real browser: Debian's headless Chromium, offline.

- prepare.js gives the same bytes as mnist_basics/predict/prepare.py, on pictures of every kind;
- drawn with the mouse, a 3 and a 7 are prepared, read by pixel_mean, linear and mlp in the
  page, and saved with the download button; `predict` on the saved PNG sees the same 28x28
  (within 2/255 per pixel) and gives the same probabilities (within 1e-3); linear and mlp
  read both right. These models are trained on the real data (conftest.py's real_models), so
  that test is slow too;
- a model left out hides its part; the page logs no errors and asks for nothing.

`panel_page` renders the panel inside a minimal page, as the report renders its own (the
report's environment: autoescape, StrictUndefined); once the report includes the panel, it
can render the report instead. Needs /usr/bin/chromium: `make test-deps` installs it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mnist_basics import PipelineError
from mnist_basics.pipeline.definition import checkpoint
from mnist_basics.predict.prepare import NoDigit, prepare, read_picture
from mnist_basics.report.try_it import context, embedded_bytes
from tests.handwriting import digit, render, sample

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Try it</title></head>
<body>
{% include "try_it.html.j2" %}
</body></html>
"""


def panel_page(try_it: dict) -> str:
    """A minimal page holding the panel, rendered in the report's own environment."""
    from mnist_basics.report.page import environment

    return environment().from_string(PAGE).render(try_it=try_it)


def checkpoints(models: Path) -> dict[str, dict[str, np.ndarray]]:
    """pixel_mean, linear and mlp's checkpoints as numpy arrays, as the report reads them."""
    from safetensors.numpy import load_file

    return {name: load_file(models / f"{name}.safetensors")
            for name in ("pixel_mean", "linear", "mlp")}


def chromium() -> Path:
    """Debian's Chromium; its absence fails the test (a skip would hide an untested page)."""
    if shutil.which(str(CHROMIUM)) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make test-deps` installs Debian's headless Chromium")
    return CHROMIUM


@dataclass
class Tab:
    """A page in headless Chromium, offline, in a fresh profile.

    `errors` collects console errors and uncaught exceptions; `asked` every request that is
    neither a page opened from disk nor a data: URL.
    """

    page: Any
    folder: Path
    errors: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def open(self, html: str, name: str = "page.html") -> Any:
        path = self.folder / name
        path.write_text(html)
        self.page.goto(path.as_uri(), wait_until="load")
        return self.page


@contextlib.contextmanager
def chromium_tab(tmp_path: Path) -> Iterator[Tab]:
    from playwright.sync_api import sync_playwright

    tmp_path.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(chromium()), headless=True,
            args=ARGS, accept_downloads=True, viewport={"width": 1100, "height": 900})
        try:
            browser.set_offline(True)
            tab = Tab(browser.new_page(), tmp_path)

            def route(r):
                if r.request.url.startswith(("file://", "data:")):
                    r.continue_()
                else:
                    tab.asked.append(r.request.url)
                    r.abort()

            browser.route("**/*", route)
            tab.page.on("request", lambda req: None if req.url.startswith(("file://", "data:"))
                        else tab.asked.append(req.url))
            tab.page.on("console",
                        lambda m: tab.errors.append(m.text) if m.type == "error" else None)
            tab.page.on("pageerror", lambda e: tab.errors.append(str(e)))
            yield tab
        finally:
            browser.close()


def draw(page, label: int) -> None:
    """Draw a 3 or a 7 on the panel with the mouse, stroke by stroke."""
    d = digit("3 round" if label == 3 else "7 plain")
    box = page.locator("#try-it-pad").bounding_box()
    left = box["x"] + (box["width"] - 200 * d.width) / 2
    for stroke in d.strokes:
        points = [(left + x * 200, box["y"] + 40 + y * 200) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for p in points[1:]:
            page.mouse.move(*p)
        page.mouse.up()


# -- prepare.js is prepare.py ---------------------------------------------------------------
def pictures() -> dict[str, np.ndarray]:
    """Grey pictures of every kind the panel or predict may meet."""
    rng = np.random.default_rng(11)
    out = {f"handwriting {i}": g for i, (g, _) in enumerate(sample(20, seed=4))}
    seven = digit("7 crossbar", rng)
    out |= {
        "large, thin pen": render(seven, (1500, 1100), height=900, at=(300, 100), width=6),
        "thick pen, touching the edges": render(seven, (120, 100), height=100, at=(0, 0),
                                                width=18),
        "light on dark": 255 - render(seven, (90, 140), height=110, at=(10, 15), width=9),
        "8x8": np.pad(np.full((4, 4), 0, np.uint8), 2, constant_values=255),
        "tall and narrow": render(digit("3 narrow"), (60, 400), height=380, at=(2, 10),
                                  width=8),
        "noise": rng.integers(0, 256, (37, 53), dtype=np.uint8),
        "low contrast": render(seven, (200, 200), height=150, at=(30, 20), width=12,
                               paper=230, ink=180),
        "too faint": render(seven, (200, 200), height=150, at=(30, 20), width=12,
                            paper=230, ink=200),
        "blank grey": np.full((50, 50), 128, np.uint8),
        "a speck": np.pad(np.zeros((2, 2), np.uint8), 60, constant_values=255),
    }
    return out


def py_prepare(g: np.ndarray) -> np.ndarray | None:
    try:
        return prepare(g)
    except NoDigit:
        return None


SCRIPT_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>prepare</title>
<script>{{ try_it.script }}</script></head><body></body></html>
"""


@pytest.mark.browser
def test_prepare_js_gives_the_same_bytes_as_prepare_py(tmp_path):
    import jinja2

    cases = pictures()
    html = jinja2.Environment(autoescape=True).from_string(SCRIPT_PAGE).render(
        try_it=context())
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with chromium_tab(tmp_path) as tab:
        page = tab.open(html)
        got = page.evaluate(
            """cases => cases.map(c => {
                 const g = Uint8Array.from(atob(c.b64), ch => ch.charCodeAt(0));
                 const x = mnistPrepare.prepare(g, c.w, c.h);
                 return x === null ? null : Array.from(x);
               })""",
            [{"w": int(g.shape[1]), "h": int(g.shape[0]),
              "b64": base64.b64encode(np.ascontiguousarray(g).tobytes()).decode()}
             for g in cases.values()])
        rgba = np.concatenate([rgb, np.full((64, 64, 1), 255, np.uint8)], axis=-1)
        js_gray = page.evaluate("b64 => Array.from(mnistPrepare.gray(Uint8Array.from("
                                "atob(b64), ch => ch.charCodeAt(0))))",
                                base64.b64encode(rgba.tobytes()).decode())
    assert tab.errors == [] and tab.asked == []
    blanks = []
    for (name, g), js in zip(cases.items(), got, strict=True):
        py = py_prepare(g)
        if py is None or js is None:
            assert py is None and js is None, name
            blanks.append(name)
            continue
        assert np.array_equal(np.array(js, np.uint8).reshape(28, 28), py), name
    assert blanks == ["too faint", "blank grey", "a speck"]
    pillow = np.array(Image.fromarray(rgb).convert("L")).ravel()
    assert np.array_equal(np.array(js_gray, np.uint8), pillow)  # Pillow's own RGB -> L


# -- The panel -------------------------------------------------------------------------------
def fake_state(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Weights of the right shapes (not trained): for what does not need a model's sense."""
    rng = np.random.default_rng(seed)
    return {
        "pixel_mean": {"mean3": rng.random((28, 28), np.float32),
                       "mean7": rng.random((28, 28), np.float32)},
        "linear": {"weights": rng.normal(0, 1, (784, 1)).astype(np.float32),
                   "bias": np.zeros(1, np.float32)},
        "mlp": {"0.weight": rng.normal(0, 0.1, (30, 784)).astype(np.float32),
                "0.bias": np.zeros(30, np.float32),
                "2.weight": rng.normal(0, 1, (1, 30)).astype(np.float32),
                "2.bias": np.zeros(1, np.float32)},
    }


def test_context_checks_the_weights_and_the_page_stays_small():
    state = fake_state()
    ctx = context(**state)
    html = panel_page(ctx)
    added = len(html.encode()) - len(panel_page(context()).encode())
    # The three models' weights, base64 float32: 4/3 * 4 bytes * 26,146 numbers.
    assert 138_000 < added < 142_000
    assert len(html.encode()) < 160_000 and embedded_bytes(ctx) < 150_000
    for name, key, bad in (("linear", "weights", np.zeros((28, 28))),
                           ("mlp", "2.weight", np.zeros((1, 29))),
                           ("pixel_mean", "mean3", None)):
        broken = dict(state[name])
        if bad is None:
            del broken[key]
        else:
            broken[key] = bad
        with pytest.raises(PipelineError, match=f"^{name}: .*{key}"):
            context(**{name: broken})
    # Only what is given is on the page.
    page = panel_page(context(linear=state["linear"]))
    assert 'id="try-it-linear"' in page and 'id="try-it-evidence"' in page
    assert 'id="try-it-mlp"' not in page and "data-mean3" not in page
    assert "python -m mnist_basics predict drawing.png --model resnet18" in page


@pytest.mark.browser
def test_a_missing_model_hides_its_part(tmp_path):
    state = fake_state()
    with chromium_tab(tmp_path) as tab:
        page = tab.open(panel_page(context(linear=state["linear"])))
        draw(page, 7)
        seen = page.evaluate("window.tryIt")
        rows = page.eval_on_selector_all("#try-it-verdicts tr[id]", "els => els.map(e => e.id)")
        page.click("#try-it-clear")
        cleared = page.evaluate("window.tryIt")
        status = page.text_content("#try-it-status")
        page = tab.open(panel_page(context()), "no-models.html")
        draw(page, 3)
        bare = page.evaluate("window.tryIt")
    assert tab.errors == [] and tab.asked == []
    assert rows == ["try-it-linear"]
    assert seen["prepared"] is not None and seen["linear"] is not None
    assert seen["pixelMean"] is None and seen["mlp"] is None
    assert cleared["prepared"] is None and cleared["linear"] is None
    assert status == "Nothing drawn yet."
    assert bare["prepared"] is not None and bare["linear"] is None


def report_page(root: Path, models: Path, lang: str = "en") -> str:
    """The report itself, rendered from artifacts at `root` with these real checkpoints."""
    from tests.test_i18n import render_page
    from tests.test_report import write_artifacts

    write_artifacts(root)
    for name in ("pixel_mean", "linear", "mlp"):
        shutil.copy(models / f"{name}.safetensors", root / checkpoint(name))
    return render_page(root, lang)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("lang", ["en", "et"])
def test_draw_a_3_and_a_7_and_predict_agrees(real_models, tmp_path, capsys, lang):
    """In the report's own Try it section, in each of its languages."""
    models = real_models
    from mnist_basics.__main__ import main

    saved = {}
    state = checkpoints(models)
    with chromium_tab(tmp_path) as tab:
        page = tab.open(report_page(tmp_path / "run", models, lang))
        for label in (3, 7):
            page.click("#try-it-clear")
            draw(page, label)
            seen = page.evaluate("window.tryIt")
            with page.expect_download() as download:
                page.click("#try-it-download")
            path = tmp_path / f"drawn-{label}.png"
            download.value.save_as(path)
            assert download.value.suggested_filename == "drawing.png"
            saved[label] = (path, seen, page.text_content("#try-it-linear .p3"))
        page.locator("#try-it").screenshot(path=str(tmp_path / f"try-it-{lang}.png"))
    assert tab.errors == [] and tab.asked == []

    for label, (path, seen, shown) in saved.items():
        answers = {}
        for name in ("pixel_mean", "linear", "mlp"):
            show = tmp_path / f"seen-{label}-{name}.png"
            try:
                main(["predict", str(path), "--model", name, "--models-dir", str(models),
                      "--json", "--show", str(show)])
            except SystemExit as e:
                pytest.fail(f"predict exited with {e.code}")
            answers[name] = json.loads(capsys.readouterr().out)["models"][name]
            x = np.array(Image.open(show))[::10, ::10]
            page_x = np.array(seen["prepared"], np.uint8).reshape(28, 28)
            assert np.abs(page_x.astype(int) - x).max() <= 2, (label, name)
        assert np.array_equal(page_x, prepare(read_picture(path)))  # in fact byte for byte
        assert abs(seen["pixelMean"]["prob3"] - answers["pixel_mean"]["probs"]["3"]) <= 1e-3
        assert abs(seen["linear"]["prob3"] - answers["linear"]["probs"]["3"]) <= 1e-3
        assert abs(seen["mlp"]["prob3"] - answers["mlp"]["probs"]["3"]) <= 1e-3
        xs = page_x.astype(np.float64) / 255
        for d, mean in (("d3", "mean3"), ("d7", "mean7")):
            assert seen["pixelMean"][d] == pytest.approx(
                np.abs(xs - state["pixel_mean"][mean]).mean(), abs=1e-6)
        for name in ("linear", "mlp"):
            assert seen[name]["label"] == label == answers[name]["class"], name
        assert shown == f"{seen['linear']['prob3']:.3f}"
