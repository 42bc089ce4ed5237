"""The report in a real browser: Debian's headless Chromium, offline, driven by Playwright.

The page, in each language of params.yaml `report.lang`, must open from disk with the
network off, decode every figure, log no errors and ask for nothing beyond its own file. A
full-page screenshot of each, report-en.png and report-et.png, is left in the test's tmp dir.
Needs /usr/bin/chromium: `make test-deps` installs it.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from mnist_basics.report.i18n import LANGUAGES
from tests.test_i18n import render_page
from tests.test_report import write_artifacts

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SECTIONS = ["summary", "accuracy", "data", "pixel-similarity", "sgd", "loss-function", "linear",
            "mlp", "resnet18", "mistakes", "try-it", "reproducibility"]


def chromium() -> Path:
    """Debian's Chromium; its absence fails the test (a skip would hide an untested page)."""
    if shutil.which(str(CHROMIUM)) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make test-deps` installs Debian's headless Chromium")
    return CHROMIUM


@contextlib.contextmanager
def offline_browser(tmp_path: Path, width: int = 1200, height: int = 900):
    """A Playwright context of Debian's headless Chromium: a fresh profile (no cache, no
    extensions) under tmp_path, the network off."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(chromium()), headless=True,
            args=ARGS, viewport={"width": width, "height": height})
        try:
            context.set_offline(True)
            yield context
        finally:
            context.close()


@pytest.mark.browser
def test_report_opens_offline_with_every_figure_decoded(tmp_path):
    root = write_artifacts(tmp_path / "run")
    pages = {}
    for lang in LANGUAGES:  # the same artifacts, each language in turn
        pages[lang] = tmp_path / f"index.{lang}.html"
        pages[lang].write_text(render_page(root, lang))

    asked: list[str] = []  # every request that is not a page itself or an inline figure
    errors: list[str] = []
    seen: dict[str, dict] = {}
    with offline_browser(tmp_path) as context:
        def route(r):
            if r.request.url.startswith(("file://", "data:")):
                r.continue_()
            else:
                asked.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        for lang, page_file in pages.items():
            page = context.new_page()
            page.on("request", lambda req: None if req.url.startswith(("file://", "data:"))
                    else asked.append(req.url))
            page.on("console", lambda m, lang=lang: errors.append(f"{lang}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e, lang=lang: errors.append(f"{lang}: {e}"))
            page.goto(page_file.as_uri(), wait_until="load")
            seen[lang] = {
                "lang": page.evaluate("document.documentElement.lang"),
                "images": page.eval_on_selector_all(
                    "img", "els => els.map(e => ({alt: e.alt, ok: e.complete,"
                    " w: e.naturalWidth, h: e.naturalHeight}))"),
                "sections": page.eval_on_selector_all("section", "els => els.map(e => e.id)"),
                "rows": page.eval_on_selector_all("#accuracy-table tbody tr",
                                                  "els => els.length"),
                "overflow": page.evaluate("document.documentElement.scrollWidth"
                                          " - document.documentElement.clientWidth"),
            }
            page.screenshot(path=str(tmp_path / f"report-{lang}.png"), full_page=True)
            page.close()

    assert asked == []
    assert errors == []
    assert set(seen) == set(LANGUAGES) == {"en", "et"}
    for lang, s in seen.items():
        assert s["lang"] == lang
        assert len(s["images"]) > 20, lang
        undecoded = [i["alt"] for i in s["images"] if not (i["ok"] and i["w"] > 0 and i["h"] > 0)]
        assert undecoded == [], lang
        assert s["sections"] == SECTIONS, lang
        assert s["rows"] == 5, lang
        assert s["overflow"] <= 0, lang  # nothing wider than the window
        assert (tmp_path / f"report-{lang}.png").stat().st_size > 10_000, lang
    # The same figures in both, described in each language.
    assert len(seen["et"]["images"]) == len(seen["en"]["images"])
    assert all(a["alt"] != b["alt"] for a, b in zip(seen["en"]["images"], seen["et"]["images"],
                                                    strict=True))
