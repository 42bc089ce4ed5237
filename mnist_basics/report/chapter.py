"""The report: one self-contained HTML page to read beside the chapter, and the accuracy table.

`python stages/report.py` reads every file the other stages write (metrics, histories,
timings, checkpoints, validation predictions, the walk-through), draws the chapter's figures
and writes
- `reports/index.html`: every figure embedded as a PNG data: URI, inline CSS, and only the
  Try it section's inline script (mnist_basics/report/try_it.py), so it opens from disk with no
  network;
- `reports/accuracy.csv`: the accuracy table of the page, one row per method.

A stage that has not run yet leaves a note in place of its section; the report still renders.
The page is in the language of params.yaml `report.lang` (mnist_basics/report/i18n.py): every string
shown on it, in the template or a figure, is a gettext message, and numbers are formatted the
same way in every language. accuracy.csv is data, in English whatever the page's language.
The figures are mnist_basics/report/figures.py's, and what every page shares (reading, provenance,
the templates) is mnist_basics/report/page.py's; neither imports torch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_basics.artifacts import read_json
from mnist_basics.data.stack import CLASSES, LABEL, MNIST_SAMPLE, SIZE
from mnist_basics.params import page_sections
from mnist_basics.pipeline.cli import named_paths
from mnist_basics.pipeline.cli import parser as stage_parser
from mnist_basics.registry import METHODS, flags
from mnist_basics.report.figures import (
    curve_chart,
    distances_chart,
    four_panels_chart,
    hidden_units_chart,
    history_chart,
    ink,
    linear_weights_chart,
    montage,
    picture,
    pixels_table,
    steps_chart,
)
from mnist_basics.report.i18n import N_, language
from mnist_basics.report.i18n import gettext as _
from mnist_basics.report.page import (
    BOOK,
    TITLES,
    Inputs,
    check_predictions,
    confusion,
    confusion_table,
    file_hashes,
    git_state,
    key_params,
    page_language,
    read_arrays,
    read_counts,
    read_rows,
    row_source,
    versions,
    wall_times,
)
from mnist_basics.report.page import render as render_template

if TYPE_CHECKING:
    import numpy as np

SECTIONS = {  # id -> heading, in the chapter's order (in English: build() translates them)
    "summary": N_("Summary"),
    "accuracy": N_("Accuracy"),
    "data": N_("The data"),
    "pixel-similarity": N_("Pixel similarity"),
    "sgd": N_("Stochastic gradient descent"),
    "loss-function": N_("The loss function"),
    "linear": N_("Linear model"),
    "mlp": N_("A neural network: simple_net"),
    "resnet18": "resnet18",
    "mistakes": N_("Mistakes"),
    "try-it": N_("Try it"),
    "reproducibility": N_("Reproducibility"),
}
BOOK_PIXEL_MEAN = {"accuracy_3": 0.9168, "accuracy_7": 0.9854}
BOOK_NN_LINEAR = 0.9785  # nn.Linear(28*28, 1) for 20 epochs, with BasicOptim, then with SGD
# The book's distances from its sample 3 (`a_3 = stacked_threes[1]`) to the ideal digits.
BOOK_SAMPLE = {("l1", "3"): 0.1114, ("rmse", "3"): 0.2021,
               ("l1", "7"): 0.1586, ("rmse", "7"): 0.3021}
MISTAKES_SHOWN = 12
SAMPLES_SHOWN = 24  # digits of each class in the data section
# What the report reads from each safetensors input (other tensors there are ignored).
NEEDS = {
    "tensors": {"train_x", "train_y", "valid_x", "valid_y"},
    "checkpoint": {"pixel_mean": {"mean3", "mean7"}, "linear": {"weights"}, "mlp": {"0.weight"}},
    "predictions": {"pixel_mean": {"pred", "probs", "dist_l1", "dist_rmse"}},
}
SGD_NEEDS = {"time", "speed", "params", "preds", "loss", "curve_x", "curve_sigmoid",
             "curve_relu", "curve_square"}
RERUN = ("snakemake --cores 4 --resources gpu=1", "dvc repro", "dvc exp run -S mlp.lr=0.05")


# -- Inputs ----------------------------------------------------------------------------------
READS = {  # every output of every other stage, by stage and flag: the page hashes each
    "download": ("out",),
    "stack": ("tensors", "counts"),
    "sgd_example": ("tensors", "metrics", "steps"),
    **{m: flags(m) for m in METHODS},
    "nn_linear": ("metrics", "history"),
}


def parser(description: str | None) -> argparse.ArgumentParser:
    ap = stage_parser("stages/report.py", description, params=page_sections(),
                      outputs=["out", "accuracy_csv"])
    named_paths(ap)
    return ap


def inputs(args: argparse.Namespace) -> Inputs:
    """The page's inputs, from its stage's `--input stage.flag=PATH`s."""
    return Inputs.from_args(args, READS)


@dataclass
class Run:
    """What the stages have written so far; a file that is absent is simply not here."""

    inputs: Inputs
    params: dict[str, dict]
    counts: dict[str, dict[str, int]] | None = None
    tensors: dict[str, np.ndarray] | None = None
    checkpoint: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)
    history: dict[str, list[dict]] = field(default_factory=dict)
    timing: dict[str, dict] = field(default_factory=dict)
    steps: list[dict] | None = None
    sgd_example: dict | None = None  # the walk-through's tensors, steps and examples
    nn_linear: dict | None = None  # the two nn.Linear variants: metrics and history

    def missing(self, method: str) -> list[str]:
        return [str(p) for p in self.inputs.of(method) if not p.exists()]


def load_run(inputs: Inputs, params: Mapping[str, object]) -> Run:
    """Read every input that exists. `params` are the validated sections (params.load)."""
    run = Run(inputs, {name: section.model_dump() for name, section in params.items()})
    stack = inputs.files["stack"]
    if stack["counts"].exists():
        run.counts = read_counts(stack["counts"], MNIST_SAMPLE)
    if stack["tensors"].exists():
        run.tensors = read_arrays(stack["tensors"], NEEDS["tensors"], "stack")
    for kind, into in [("checkpoint", run.checkpoint), ("predictions", run.predictions)]:
        for method, path in inputs.kind(kind, METHODS).items():
            needs = NEEDS[kind].get(method, {"pred", "probs"} if kind == "predictions" else None)
            if needs is not None and path.exists():  # resnet18's weights draw nothing
                into[method] = read_arrays(path, needs, method)
    for kind, into, read in [("metrics", run.metrics, read_json),
                             ("history", run.history, read_rows),
                             ("timing", run.timing, read_json)]:
        for method, path in inputs.kind(kind, METHODS).items():
            if path.exists():
                into[method] = read(path)
    for method, path in inputs.kind("classes", METHODS).items():  # accuracy_3 beside accuracy
        if method in run.metrics and path.exists():
            run.metrics[method] |= read_json(path)
    steps = inputs.files["resnet18"]["steps"]
    if steps.exists():
        run.steps = read_rows(steps)
    sgd = inputs.files["sgd_example"]
    if all(p.exists() for p in sgd.values()):
        run.sgd_example = {"tensors": read_arrays(sgd["tensors"], SGD_NEEDS, "sgd_example"),
                           "metrics": read_json(sgd["metrics"]), "steps": read_rows(sgd["steps"])}
    nn = inputs.files["nn_linear"]
    if all(p.exists() for p in nn.values()):
        run.nn_linear = {"metrics": read_json(nn["metrics"]), "history": read_rows(nn["history"])}
    if run.tensors is not None:
        n = len(run.tensors["valid_y"])
        for method, p in run.predictions.items():
            check_predictions(p, n, len(CLASSES), inputs.files[method]["predictions"],
                              stack["tensors"], f"rerun the {method} stage")
    return run


# -- The accuracy table ----------------------------------------------------------------------


def accuracy_rows(run: Run) -> list[dict[str, object]]:
    """One row per method, results only (accuracy.csv); None where not known."""
    rows = []
    for key, title in TITLES.items():
        method, prefix = row_source(key)
        m = run.metrics.get(method)
        acc = m.get(f"{prefix}accuracy") if m else None
        book = BOOK[key]
        rows.append({
            "method": title,
            "accuracy": acc,
            "accuracy_3": m.get(f"{prefix}accuracy_3") if m else None,
            "accuracy_7": m.get(f"{prefix}accuracy_7") if m else None,
            "book_accuracy": book,
            "difference": round(acc - book, 6) if acc is not None and book else None,
            "params": key_params(key, run.params),
        })
    return rows


def accuracy_table(run: Run) -> list[dict[str, object]]:
    """The page's table: accuracy.csv's rows, and each method's training seconds beside."""
    out = []
    for key, row in zip(TITLES, accuracy_rows(run), strict=True):
        t = run.timing.get(row_source(key)[0], {})
        out.append({**row, "method": _(row["method"]), "train_seconds": t.get("train_seconds"),
                    "images_per_second": t.get("images_per_second")})
    return out


# -- Figures ---------------------------------------------------------------------------------


# -- Sections --------------------------------------------------------------------------------


def mistakes(pred: Mapping[str, np.ndarray], y: np.ndarray, x: np.ndarray, title: str) -> dict:
    """The most confident wrong answers first (fastai's "top losses"), at most 12; `pred` is a
    predictions file (`pred`, `probs`)."""
    import numpy as np

    answers = pred["pred"]
    confidence = pred["probs"][np.arange(len(answers)), answers]
    wrong = np.flatnonzero(answers != y)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:MISTAKES_SHOWN]
    shown = []
    for i in order:
        truth, called = MNIST_SAMPLE.names[y[i]], MNIST_SAMPLE.names[answers[i]]
        v = {"i": i, "truth": truth, "title": title, "called": called,
             "confidence": f"{confidence[i]:.2f}"}
        shown.append(picture(
            ink(x[i]), _("Validation digit %(i)s: a %(truth)s that %(title)s called a "
                         "%(called)s with confidence %(confidence)s.") % v, scale=3,
            caption=_("a %(truth)s, called %(called)s (%(confidence)s)") % v))
    return {"count": len(wrong), "total": len(y), "shown": shown}


def data_section(run: Run) -> dict:
    out: dict = {"counts": run.counts, "samples": [], "im3": None,
                 "missing": [str(p) for p in run.inputs.of("stack")
                             if not p.exists()]}
    if run.tensors is None:
        return out
    x, y = run.tensors["train_x"], run.tensors["train_y"]
    stacked_threes = x[y == LABEL["3"]]  # [6131, 28, 28]: the chapter's stack of every 3
    im3 = stacked_threes[1]  # the chapter's im3: the second 3, by file name
    out["im3"] = {"picture": picture(ink(im3), _("The chapter's im3: a training 3."), scale=4,
                                      caption="im3"),
                  "table": pixels_table(im3),
                  "shape": list(stacked_threes.shape), "rank": stacked_threes.ndim}
    for digit in CLASSES:
        first = x[y == LABEL[digit]][:SAMPLES_SHOWN]  # [24, 28, 28], in the files' order
        v = {"n": len(first), "digit": digit}
        out["samples"].append(picture(
            montage(ink(first), cols=12), _("The first %(n)s training %(digit)ss, handwritten "
                                            "in dark ink on white.") % v,
            scale=2, caption=_("training %(digit)ss") % v))
    return out


def pixel_section(run: Run) -> dict:
    out: dict = {"missing": run.missing("pixel_mean"), "ideal": [], "sample": None,
                 "distances": None, "broadcast": None, "book": BOOK_PIXEL_MEAN,
                 "metrics": run.metrics.get("pixel_mean")}
    state = run.checkpoint.get("pixel_mean")
    if state is not None:
        for digit in "37":
            out["ideal"].append(picture(
                ink(state[f"mean{digit}"]), _("The ideal %(digit)s: the mean of every training "
                                              "%(digit)s, a blurry %(digit)s.") % {"digit": digit},
                scale=4, caption=f"mean{digit}"))
    if state is not None and run.tensors is not None:
        x, y = run.tensors["train_x"], run.tensors["train_y"]
        a_3 = x[y == LABEL["3"]][1].astype("float32") / 255  # the book's stacked_threes[1]
        rows = []
        for dist in ("l1", "rmse"):
            for digit in "37":
                diff = a_3 - state[f"mean{digit}"]
                d = abs(diff).mean() if dist == "l1" else math.sqrt((diff ** 2).mean())
                rows.append({"distance": "L1" if dist == "l1" else "RMSE", "ideal": digit,
                             "value": float(d), "book": BOOK_SAMPLE[(dist, digit)]})
        nearer = {r["distance"]: "3" if r["value"] < o["value"] else "7"
                  for r, o in zip(rows[::2], rows[1::2], strict=True)}  # L1, RMSE
        out["sample"] = {
            "verdict": (_("By both distances a_3 is nearer the ideal %(l1)s.")
                        if nearer["L1"] == nearer["RMSE"] else
                        _("By L1 a_3 is nearer the ideal %(l1)s, by RMSE the ideal %(rmse)s.")
                        ) % {"l1": nearer["L1"], "rmse": nearer["RMSE"]},
            "picture": picture(ink(x[y == LABEL["3"]][1]), _("The sample 3: the second "
                                "training 3 (the book's a_3)."), scale=4, caption="a_3"),
            "rows": rows,
        }
    pred = run.predictions.get("pixel_mean")
    if pred is not None and run.tensors is not None:
        out["distances"] = distances_chart(pred, run.tensors["valid_y"])
        threes = run.tensors["valid_y"] == LABEL["3"]
        # The pixel_mean stage computed mnist_distance(valid_3_tens, mean3) by broadcasting.
        out["broadcast"] = {"valid": [int(threes.sum()), SIZE, SIZE],
                            "dist": list(pred["dist_l1"][threes, LABEL["3"]].shape)}
    return out


def sgd_section(run: Run) -> dict:
    out: dict = {"missing": [str(p) for p in run.inputs.of("sgd_example") if not p.exists()],
                 "params": run.params.get("sgd_example"), "panels": None}
    if run.sgd_example is None:
        return out
    t, m = run.sgd_example["tensors"], run.sgd_example["metrics"]
    out.update(panels=four_panels_chart(t), steps=run.sgd_example["steps"],
               gradients=m["gradients"],
               square=curve_chart(t["curve_x"], t["curve_square"], "f(x) = x**2", point=-1.5))
    return out


def loss_section(run: Run) -> dict:
    out: dict = {"missing": [str(p) for p in run.inputs.of("sgd_example") if not p.exists()],
                 "examples": None}
    if run.sgd_example is None:
        return out
    t = run.sgd_example["tensors"]
    out.update(examples=run.sgd_example["metrics"]["mnist_loss"],
               sigmoid=curve_chart(t["curve_x"], t["curve_sigmoid"], _("sigmoid")))
    return out


def model_section(run: Run, method: str) -> dict:
    out: dict = {"missing": run.missing(method), "charts": [], "metrics": run.metrics.get(method),
                 "relu": None, "variants": None}
    if method in run.history:
        out["charts"].append(history_chart(method, run.history[method], BOOK[method]))
    state = run.checkpoint.get(method)
    if method == "linear" and state is not None:
        out["charts"].append(linear_weights_chart(state["weights"]))
    if method == "mlp" and state is not None:
        out["charts"].append(hidden_units_chart(state["0.weight"]))
    if method == "mlp" and run.sgd_example is not None:
        t = run.sgd_example["tensors"]
        out["relu"] = curve_chart(t["curve_x"], t["curve_relu"], "ReLU: max(x, 0)")
    if method == "linear" and run.nn_linear is not None:
        out["variants"] = {"metrics": run.nn_linear["metrics"], "book": BOOK_NN_LINEAR}
    return out


def resnet18_section(run: Run) -> dict:
    out: dict = {"missing": run.missing("resnet18"), "charts": [], "confusion": None,
                 "metrics": run.metrics.get("resnet18")}
    if run.steps is not None or "resnet18" in run.history:
        out["charts"].append(steps_chart(run.steps, run.history.get("resnet18", []),
                                         BOOK["resnet18"]))
    pred = run.predictions.get("resnet18")
    if pred is not None and run.tensors is not None:
        labels = [LABEL[c] for c in CLASSES]  # rows and columns: 3, then 7, as the book
        out["confusion"] = confusion_table(
            confusion(pred["pred"], run.tensors["valid_y"], labels), CLASSES)
    return out


def mistakes_section(run: Run) -> list[dict]:
    out = []
    for method in METHODS:
        title = _(TITLES[method])
        item: dict = {"method": method, "title": title, "result": None, "missing": [],
                      "stage": method if method not in run.predictions else "stack"}
        pred = run.predictions.get(method)
        if pred is None or run.tensors is None:
            item["missing"] = [str(p) for p in (run.inputs.files[method]["predictions"],
                                                run.inputs.files["stack"]["tensors"])
                               if not p.exists()]
        else:
            v = run.tensors
            item["result"] = mistakes(pred, v["valid_y"], v["valid_x"], title)
        out.append(item)
    return out


def try_it_section(run: Run) -> dict:
    """The drawing panel, with this run's pixel_mean, linear and mlp (each None if missing)."""
    from mnist_basics.report.try_it import context

    number = list(SECTIONS).index("try-it") + 1
    return context(**{m: run.checkpoint.get(m) for m in ("pixel_mean", "linear", "mlp")},
                   heading=f"{number}. {_(SECTIONS['try-it'])}")


def build(run: Run, *, now: dt.datetime | None = None, cwd: Path | None = None) -> dict:
    """Everything the template shows, figures included, in the page's language."""
    with language(page_language(run.params)):
        return _build(run, now=now, cwd=cwd)


def _build(run: Run, *, now: dt.datetime | None, cwd: Path | None) -> dict:
    now = now or dt.datetime.now(dt.UTC)
    return {
        "lang": page_language(run.params),
        "sections": {k: _(heading) for k, heading in SECTIONS.items()},
        "generated": now.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git": git_state(cwd or Path.cwd(), run.inputs.wall_clock()),
        "versions": versions(),
        "params": run.params,
        "params_path": str(run.inputs.params),
        "wall": wall_times(run.timing, METHODS),
        "accuracy": accuracy_table(run),
        "n_valid": len(run.tensors["valid_y"]) if run.tensors is not None else None,
        "data": data_section(run),
        "pixel": pixel_section(run),
        "sgd": sgd_section(run),
        "loss": loss_section(run),
        "linear": model_section(run, "linear"),
        "mlp": model_section(run, "mlp"),
        "resnet18": resnet18_section(run),
        "mistakes": mistakes_section(run),
        "try_it": try_it_section(run),
        "hashes": file_hashes(run.inputs),
        "rerun": RERUN,
    }


def render(context: Mapping) -> str:
    return render_template("report.html.j2", context)
