"""The README's measured figures, generated: results from metrics/, speed from bench/.

Figures live where they are measured (a stage's metrics, `make bench`'s results.json) and
reach the README only through this module, so no two copies can disagree:

    python -m mnist_basics.report.readme          # rewrite the tables between the README's markers
    python -m mnist_basics.report.readme --check  # exit 1 if out of date (make lint, tests)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from mnist_basics.pipeline.definition import ROOT, SPREAD_METRICS, classes, metrics
from mnist_basics.pipeline.engines import generated_file_main

README = ROOT / "README.md"
BENCH = ROOT / "bench/results.json"


def results_table(root: Path = ROOT) -> str:
    """One row per method from its metrics file, beside the book's figure (page.BOOK)."""
    from mnist_basics.report.chapter import BOOK_PIXEL_MEAN
    from mnist_basics.report.page import BOOK, TITLES, row_source

    lines = ["| method | accuracy | on 3s | on 7s | epochs | the book |",
             "|---|---|---|---|---|---|"]
    for key, title in TITLES.items():
        method, prefix = row_source(key)
        m = {**json.loads((root / metrics(method)).read_text()),
             **json.loads((root / classes(method)).read_text())}
        book = "—" if BOOK[key] is None else f"{BOOK[key]:g}"
        if key == "pixel_mean":
            book += f" / {BOOK_PIXEL_MEAN['accuracy_3']:g} / {BOOK_PIXEL_MEAN['accuracy_7']:g}"
        cells = [m[f"{prefix}accuracy"], m[f"{prefix}accuracy_3"], m[f"{prefix}accuracy_7"]]
        lines.append(f"| {title} | " + " | ".join(f"{v:.4f}" for v in cells)
                     + f" | {m.get('epochs', '—')} | {book} |")
    return "\n".join(lines)


def spread_table(root: Path = ROOT) -> str:
    """Each method over the spread's seeds, and the sweep, from metrics/spread.json."""
    s = json.loads((root / SPREAD_METRICS).read_text())
    n = next(iter(s["methods"].values()))["n"]
    lines = [f"| method | chapter's run | ± over {n} seeds | min–max | the book "
             "| book's percentile |", "|---|---|---|---|---|---|"]
    for m, v in s["methods"].items():
        lines.append(f"| {m} | {v['chapter_run']:.4f} | {v['mean']:.4f} ± {v['sd']:.4f} | "
                     f"{v['min']:.4f}–{v['max']:.4f} | {v['book']:g} | {v['book_percentile']:g} |")
    sweep = s["sweep"]
    if sweep["values"]:
        seeds = sweep["values"][0]["n"]
        lines += ["", f"| {sweep['key']} | ± over {seeds} seeds | min–max |", "|---|---|---|"]
        lines += [f"| {v['value']:g} | {v['mean']:.4f} ± {v['sd']:.4f} | "
                  f"{v['min']:.4f}–{v['max']:.4f} |" for v in sweep["values"]]
    return "\n".join(lines)


def mnist_table(root: Path = ROOT) -> str:
    """Each method on ten digits (metrics/mnist/) beside its MNIST_SAMPLE figure, its target
    and the published figures the full MNIST's page cites (its entry in the registry)."""
    from mnist_basics.registry import DATASETS
    from mnist_basics.report.page import TITLES, row_source

    mnist = DATASETS["mnist"]
    lines = ["| method | ten digits | 3s and 7s | target | for comparison |",
             "|---|---|---|---|---|"]
    for key, title in TITLES.items():
        method, prefix = row_source(key)
        ten = json.loads((root / metrics(method, "mnist")).read_text())
        two = json.loads((root / metrics(method)).read_text())
        target, exactly = mnist.targets[key]
        others = "; ".join(f"{source}: {figure:g}"
                           for figure, source in mnist.comparisons.get(key, []))
        lines.append(f"| {title} | {ten[f'{prefix}accuracy']:.4f} | "
                     f"{two[f'{prefix}accuracy']:.4f} | "
                     f"{f'{target:g} exactly' if exactly else f'≥ {target:.3f}'} | "
                     f"{others or '—'} |")
    return "\n".join(lines)


SIDE_BY_SIDE = {  # bench/side_by_side.py's comparisons, as the README names them
    "chapter": "the chapter: clean `make run` / the notebook, archive to resnet18",
    "resnet18": "resnet18: the stage / `fit_one_cycle(1, 0.1)`",
    "mnist_resnet18": "full MNIST resnet18: the stage / `fit_one_cycle(1, 0.1)`",
}


def performance_table(bench: Path = BENCH) -> str:
    r = json.loads(bench.read_text())
    runs = "One run" if r["runs"] == 1 else f"Medians of {r['runs']} runs"
    lines = [f"{runs}, {r['date'][:10]}, on {r['machine']['cpu']} "
             f"({r['machine']['cores']} cores), real data, default params:", "",
             "| figure | measured | target | |", "|---|---|---|---|"]
    for name, t in r["targets"].items():
        unit = "×" if t["unit"] == "x" else f" {t['unit']}"
        lines.append(f"| {name} | {t['value']:g}{unit} | ≤ {t['limit']:g}{unit} | "
                     f"{'met' if t['met'] else '**missed**'} |")
    side = r.get("side_by_side")
    if side:
        lines += ["", "Beside the book's notebook run with fastai (same torch, same machine, "
                  "alternating rounds; medians, with the range):", "",
                  "| comparison | rounds | this pipeline | fastai | ratio |",
                  "|---|---|---|---|---|"]
        for name, v in side.items():
            lines.append(f"| {SIDE_BY_SIDE.get(name, name)} | {v['rounds']} | {v['ours_s']:.1f} s "
                         f"({v['ours_range'][0]:.1f}–{v['ours_range'][1]:.1f}) | "
                         f"{v['fastai_s']:.1f} s ({v['fastai_range'][0]:.1f}–"
                         f"{v['fastai_range'][1]:.1f}) | {v['ratio']:.2f}× |")
    by = r["figures"].get("spread_by_cores")
    if by:
        jobs = next(iter(by.values()))["jobs"]
        lines += ["", f"`make spread` ({jobs} jobs): " + ", ".join(
            f"{v['seconds']:.0f} s at `--cores {n}`" + (f" (×{v['speedup']:.2f})"
                                                       if v["speedup"] != 1 else "")
            for n, v in by.items()) + "."]
    mn = r["figures"].get("mnist")
    if mn:
        lines += ["", f"The full MNIST (`make mnist`, 70,000 digits) from nothing: "
                  f"{mn['clean_s']:.0f} s. Each stage alone, wall time and peak RSS: " + "; ".join(
                      f"{n} {v['wall_s']:.1f} s and {v['peak_rss_mib'] / 1024:.2f} GiB"
                      for n, v in mn["stages"].items()) + "."]
    return "\n".join(lines)


TABLES = {"results": results_table, "spread": spread_table, "mnist": mnist_table,
          "performance": performance_table}


def render(text: str) -> str:
    """The README with every generated table replaced by its current version."""
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}: .*? -->\n)(?:.*?\n)?(<!-- /{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name}: ... --> marker")
        text = pattern.sub(lambda m, make=make: f"{m.group(1)}{make()}\n{m.group(2)}", text)
    return text


def main(argv: list[str] | None = None) -> int:
    return generated_file_main(argv, {README: lambda: render(README.read_text())}, "readme")


if __name__ == "__main__":
    sys.exit(main())
