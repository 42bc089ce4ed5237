"""The seed spread and the sweep, gathered: `reports/spread.html`, its tables and summary.

One number from one seed says little: `make spread` trains each method once per seed of
params.yaml `spread.seeds` (and the swept method once per value and seed of `sweep`), every
run a job of its own (spread/dvc.yaml, the Snakefile's `spread` target). This module reads
those runs' JSON files and writes
- `reports/spread.csv` and `reports/sweep.csv`: one row per run;
- `metrics/spread.json`: per method, the mean, standard deviation (n - 1), min and max over
  the seeds, and where the book's figure falls among them; per swept value the same;
- `reports/spread.html`: those tables, a strip plot of each method's seeds and the sweep's
  accuracy against the swept value with the seeds' spread as error bars; like the chapter's
  page it is one self-contained file in params.yaml's `report.lang`, and it holds no
  wall-clock figure, so equal runs give equal bytes.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mnist_basics import PipelineError
from mnist_basics.artifacts import read_json
from mnist_basics.registry import TRAINED as SPREAD_METHODS
from mnist_basics.registry import spread_name, sweep_name
from mnist_basics.report.figures import canvas, chart
from mnist_basics.report.i18n import gettext as _
from mnist_basics.report.i18n import language
from mnist_basics.report.page import BOOK, environment, key_params, page_language

COLUMNS = ("method", "seed", "accuracy", "accuracy_3", "accuracy_7", "train_loss",
           "valid_loss")


@dataclass(frozen=True)
class Spread:
    """Accuracies over the seeds: what the page and metrics/spread.json say of them."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float | None:
        """The sample standard deviation (n - 1); none for a single seed."""
        return statistics.stdev(self.values) if self.n >= 2 else None

    def percentile(self, figure: float) -> float:
        """The percentile of `figure` among the seeds: the share below it, ties half."""
        below = sum(v < figure for v in self.values)
        equal = sum(v == figure for v in self.values)
        return 100 * (below + equal / 2) / self.n

    def summary(self, book: float | None = None) -> dict[str, object]:
        out: dict[str, object] = {
            "n": self.n, "mean": round(self.mean, 6),
            "sd": None if self.sd is None else round(self.sd, 6),
            "min": min(self.values), "max": max(self.values)}
        if book is not None:
            out |= {"book": book, "book_percentile": round(self.percentile(book), 1)}
        return out


def _read(path: Path, job: str, expect: Mapping[str, object]) -> dict:
    """One run's JSON, checked to be the run asked for (not a stale file of another)."""
    if not path.exists():
        raise PipelineError(f"{path}: missing; run {job} first (make spread runs every job)")
    run = read_json(path)
    got = {k: run.get(k) for k in expect}
    if got != dict(expect):
        raise PipelineError(f"{path}: holds the run {got}, not {dict(expect)}; rerun {job}")
    return {c: run[c] for c in COLUMNS}


def read_runs(spread_runs: Path, sweep_runs: Path,
              params: Mapping[str, Mapping]) -> tuple[list[dict], list[dict]]:
    """The runs params.yaml asks for, as rows: (spread, sweep). Other files in the folders,
    such as the runs of seeds no longer listed, are left out."""
    spread = [_read(spread_runs / spread_name(m, seed), f"spread_{m}@{seed}",
                    {"method": m, "seed": seed, "set": {}})
              for m in SPREAD_METHODS for seed in params["spread"]["seeds"]]
    sw = params["sweep"]
    sweep = [{"key": f"{sw['method']}.{sw['key']}", "value": value,
              **_read(sweep_runs / sweep_name(value, seed),
                      f"spread_sweep@{value}-{seed}",
                      {"method": sw["method"], "seed": seed, "set": {sw["key"]: value}})}
             for value in sw["values"] for seed in sw["seeds"]]
    return spread, sweep


def summarise(spread: Sequence[Mapping], sweep: Sequence[Mapping],
              chapter: Mapping[str, Mapping]) -> dict:
    """metrics/spread.json: each method's spread beside the book's figure and the chapter's
    own run (train.seed); the sweep's spread per value."""
    methods = {}
    for m in SPREAD_METHODS:
        acc = Spread(tuple(r["accuracy"] for r in spread if r["method"] == m))
        methods[m] = {**acc.summary(BOOK[m]), "chapter_run": chapter[m]["accuracy"]}
    values = {}
    for r in sweep:
        values.setdefault(r["value"], []).append(r["accuracy"])
    key = sweep[0]["key"] if sweep else None
    return {"methods": methods,
            "sweep": {"key": key, "values": [{"value": v, **Spread(tuple(a)).summary()}
                                             for v, a in values.items()]}}


# -- The page --------------------------------------------------------------------------------
def strip_chart(spread: Sequence[Mapping], summary: Mapping):
    """Each method's seeds as dots, their mean and one sd either side, the book's figure and
    the chapter's own run (train.seed)."""
    fig, axes = canvas(3.2 * len(SPREAD_METHODS), 3.0, ncols=len(SPREAD_METHODS))
    for ax, m in zip(axes, SPREAD_METHODS, strict=True):
        acc = [r["accuracy"] for r in spread if r["method"] == m]
        s = summary["methods"][m]
        # Seeds side by side in the order they ran: an even spread, not random jitter.
        xs = [(i - (len(acc) - 1) / 2) * 0.6 / max(len(acc), 1) for i in range(len(acc))]
        ax.scatter(xs, acc, s=22, color="#1f5f99", zorder=3, label=_("one seed"))
        sd = s["sd"] or 0.0
        ax.errorbar([0.45], [s["mean"]], yerr=[sd], fmt="s", color="#1d2125", capsize=4,
                    label=_("mean ± sd"))
        ax.axhline(s["book"], color="#a1261b", linestyle="--", linewidth=1, label=_("book"))
        ax.scatter([0.62], [s["chapter_run"]], marker="D", s=30, color="#d07a00", zorder=3,
                   label=_("chapter's run"))
        ax.set_title(m)
        ax.set_xticks([])
        ax.set_xlim(-0.5, 0.75)
        ax.set_ylabel(_("validation accuracy"))
        ax.ticklabel_format(axis="y", useOffset=False)
    axes[0].legend(loc="lower left", fontsize=8)
    alt = "; ".join(_("%(method)s: %(n)s seeds from %(lo)s to %(hi)s, book %(book)s") % {
        "method": m, "n": summary["methods"][m]["n"], "lo": f"{summary['methods'][m]['min']:.4f}",
        "hi": f"{summary['methods'][m]['max']:.4f}", "book": f"{summary['methods'][m]['book']:.4f}"}
        for m in SPREAD_METHODS)
    return chart(fig, alt)


def sweep_chart(sweep: Sequence[Mapping], summary: Mapping):
    """Accuracy against the swept value: each seed a dot, the mean with one sd as a bar."""
    fig, ax = canvas(5.0, 3.2)
    rows = summary["sweep"]["values"]
    ax.scatter([r["value"] for r in sweep], [r["accuracy"] for r in sweep], s=14,
               color="#9bb7d4", label=_("one seed"))
    ax.errorbar([r["value"] for r in rows], [r["mean"] for r in rows],
                yerr=[r["sd"] or 0.0 for r in rows], fmt="o-", color="#1f5f99", capsize=4,
                label=_("mean ± sd"))
    values = [r["value"] for r in rows]
    if all(isinstance(v, (int, float)) and v > 0 for v in values) and \
            max(values) / min(values) >= 4:
        ax.set_xscale("log")
        ax.set_xticks(values, [str(v) for v in values])
        ax.minorticks_off()
    ax.set_xlabel(summary["sweep"]["key"])
    ax.set_ylabel(_("validation accuracy"))
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.legend(fontsize=8)
    alt = _("Validation accuracy against %(key)s: %(values)s") % {
        "key": summary["sweep"]["key"],
        "values": ", ".join(f"{r['value']}: {r['mean']:.4f}" for r in rows)}
    return chart(fig, alt)


def render(*, spread: Sequence[Mapping], sweep: Sequence[Mapping], summary: Mapping,
           params: Mapping[str, Mapping]) -> str:
    """The page, in params.yaml's `report.lang`, as the chapter's page is."""
    lang = page_language(params)
    sw = params["sweep"]
    held = {k: v for k, v in params[sw["method"]].items() if k != sw["key"]}
    with language(lang):  # the figures' words and key_params, like the template's
        fixed = {m: key_params(m, params) for m in SPREAD_METHODS}
        strip = strip_chart(spread, summary)
        figure = sweep_chart(sweep, summary) if sweep else None
    return environment(lang).get_template("spread.html.j2").render(
        lang=lang, summary=summary, spread=spread, sweep=sweep, seeds=params["spread"]["seeds"],
        chapter_seed=params["train"]["seed"], device=params["train"]["device"], fixed=fixed,
        sweep_params=sw, sweep_held=held, strip=strip, sweep_figure=figure)
