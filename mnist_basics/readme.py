"""The README's measured figures, generated: results from metrics/, speed from bench/.

Figures live where they are measured (a stage's metrics, `make bench`'s results.json) and
reach the README only through this module, so no two copies can disagree:

    python -m mnist_basics.readme           # rewrite the tables between the README's markers
    python -m mnist_basics.readme --check   # exit 1 if they are out of date (make lint, tests)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from mnist_basics.pipeline import ROOT, generated_file_main, metrics

README = ROOT / "README.md"
BENCH = ROOT / "bench/results.json"


def results_table(root: Path = ROOT) -> str:
    """One row per method from its metrics file, beside the book's figure (report.BOOK)."""
    from mnist_basics.report import BOOK, BOOK_PIXEL_MEAN, TITLES, row_source

    lines = ["| method | accuracy | on 3s | on 7s | epochs | the book |",
             "|---|---|---|---|---|---|"]
    for key, title in TITLES.items():
        method, prefix = row_source(key)
        m = json.loads((root / metrics(method)).read_text())
        book = "—" if BOOK[key] is None else f"{BOOK[key]:g}"
        if key == "pixel_mean":
            book += f" / {BOOK_PIXEL_MEAN['accuracy_3']:g} / {BOOK_PIXEL_MEAN['accuracy_7']:g}"
        cells = [m[f"{prefix}accuracy"], m[f"{prefix}accuracy_3"], m[f"{prefix}accuracy_7"]]
        lines.append(f"| {title} | " + " | ".join(f"{v:.4f}" for v in cells)
                     + f" | {m.get('epochs', '—')} | {book} |")
    return "\n".join(lines)


def performance_table(bench: Path = BENCH) -> str:
    r = json.loads(bench.read_text())
    runs = "One run" if r["runs"] == 1 else f"Medians of {r['runs']} runs"
    lines = [f"{runs}, {r['date'][:10]}, on {r['machine']['cpu']} "
             f"({r['machine']['cores']} cores), real data, default params:", "",
             "| figure | measured | target | |", "|---|---|---|---|"]
    for name, t in r["targets"].items():
        lines.append(f"| {name} | {t['value']:g} {t['unit']} | ≤ {t['limit']:g} {t['unit']} | "
                     f"{'met' if t['met'] else '**missed**'} |")
    return "\n".join(lines)


TABLES = {"results": results_table, "performance": performance_table}


def render(text: str) -> str:
    """The README with every generated table replaced by its current version."""
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}: .*? -->\n)(?:.*?\n)?(<!-- /{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name}: ... --> marker")
        text = pattern.sub(lambda m, make=make: f"{m.group(1)}{make()}\n{m.group(2)}", text)
    return text


def main(argv: list[str] | None = None) -> int:
    return generated_file_main(argv, README, lambda: render(README.read_text()), "readme")


if __name__ == "__main__":
    sys.exit(main())
