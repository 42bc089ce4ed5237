"""The report in a real browser: Debian's headless Chromium, offline, driven by Playwright.

The page must open from disk with the network off, decode every figure, log no errors and
ask for nothing beyond its own file. A full-page screenshot is left in the test's tmp dir.
Needs /usr/bin/chromium: `make browser` installs it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.test_report import render_report, write_artifacts

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> Path:
    """Debian's Chromium; its absence fails the test (a skip would hide an untested page)."""
    if shutil.which(str(CHROMIUM)) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's headless Chromium")
    return CHROMIUM


@pytest.mark.browser
def test_report_opens_offline_with_every_figure_decoded(tmp_path):
    from playwright.sync_api import sync_playwright

    browser = chromium()

    html, _ = render_report(write_artifacts(tmp_path / "run"))
    page_file = tmp_path / "index.html"
    page_file.write_text(html)

    asked: list[str] = []  # every request that is not the page itself or an inline figure
    errors: list[str] = []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile: no cache, no extensions
            executable_path=str(browser), headless=True, args=ARGS,
            viewport={"width": 1200, "height": 900},
        )
        try:
            context.set_offline(True)

            def route(r):
                if r.request.url.startswith(("file://", "data:")):
                    r.continue_()
                else:
                    asked.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("request", lambda req: None if req.url.startswith(("file://", "data:"))
                    else asked.append(req.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri(), wait_until="load")

            images = page.eval_on_selector_all(
                "img", "els => els.map(e => ({alt: e.alt, ok: e.complete, w: e.naturalWidth,"
                " h: e.naturalHeight}))")
            sections = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
            rows = page.eval_on_selector_all("#accuracy-table tbody tr", "els => els.length")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            context.close()

    assert asked == []
    assert errors == []
    assert len(images) > 20
    undecoded = [i["alt"] for i in images if not (i["ok"] and i["w"] > 0 and i["h"] > 0)]
    assert undecoded == []
    assert sections == ["summary", "accuracy", "data", "pixel-similarity", "linear", "mlp",
                        "resnet18", "mistakes", "reproducibility"]
    assert rows == 5
    assert overflow <= 0  # nothing wider than the window
    assert (tmp_path / "report.png").stat().st_size > 10_000
