"""The report: one self-contained HTML page to read beside the chapter, and the accuracy table.

`python stages/report.py` reads every file the other stages write (metrics, histories,
timings, checkpoints, validation predictions, the walk-through), draws the chapter's figures
and writes
- `reports/index.html`: every figure embedded as a PNG data: URI, inline CSS, and only the
  Try it section's inline script (mnist_basics/try_it.py), so it opens from disk with no
  network;
- `reports/accuracy.csv`: the accuracy table of the page, one row per method.

A stage that has not run yet leaves a note in place of its section; the report still renders.
The page is in the language of params.yaml `report.lang` (mnist_basics/i18n.py): every string
shown on it, in the template or drawn into a figure here, is a gettext message, and numbers are
formatted the same way in every language. accuracy.csv is data, in English whatever the page's
language.
Arrays are read with safetensors' numpy loader and figures are drawn with matplotlib's Agg
canvas: the report never imports torch (seconds of start-up) or pyplot (global state).
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import hashlib
import importlib.metadata
import io
import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from mnist_basics import PipelineError
from mnist_basics.artifacts import read_json
from mnist_basics.cli import by_stage, named_paths, require
from mnist_basics.cli import parser as stage_parser
from mnist_basics.data import CLASSES, LABEL, SIZE, SPLITS
from mnist_basics.i18n import N_, SOURCE, install, language, ngettext
from mnist_basics.i18n import gettext as _
from mnist_basics.methods import METHODS, WALL_CLOCK_FLAG, flags
from mnist_basics.params import load_yaml, page_sections

if TYPE_CHECKING:
    import numpy as np

TEMPLATES = Path(__file__).resolve().parent / "templates"
DPI = 100
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
TITLES = {  # each row of the accuracy table: accuracy.csv keeps these, the page translates them
    "pixel_mean": N_("pixel mean (L1)"),
    "pixel_mean_rmse": N_("pixel mean (RMSE)"),
    "linear": "linear",
    "mlp": "mlp",
    "resnet18": "resnet18",
}
# fastbook 04_mnist_basics, its stored outputs; the book reports no RMSE accuracy.
BOOK = {"pixel_mean": 0.9511, "pixel_mean_rmse": None, "linear": 0.9696, "mlp": 0.982826,
        "resnet18": 0.997056}
BOOK_PIXEL_MEAN = {"accuracy_3": 0.9168, "accuracy_7": 0.9854}
BOOK_NN_LINEAR = 0.9785  # nn.Linear(28*28, 1) for 20 epochs, with BasicOptim, then with SGD
# The book's distances from its sample 3 (`a_3 = stacked_threes[1]`) to the ideal digits.
BOOK_SAMPLE = {("l1", "3"): 0.1114, ("rmse", "3"): 0.2021,
               ("l1", "7"): 0.1586, ("rmse", "7"): 0.3021}
MISTAKES_SHOWN = 12
SAMPLES_SHOWN = 24  # digits of each class in the data section
VERSIONS_OF = ("torch", "torchvision", "dvc", "snakemake")
# What the report reads from each safetensors input (other tensors there are ignored).
NEEDS = {
    "tensors": {"train_x", "train_y", "valid_x", "valid_y"},
    "checkpoint": {"pixel_mean": {"mean3", "mean7"}, "linear": {"weights"}, "mlp": {"0.weight"}},
    "predictions": {"pixel_mean": {"prob3", "l1_3", "l1_7", "rmse_3", "rmse_7"}},
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


@dataclass(frozen=True)
class Inputs:
    """Every path the report reads: each output of every other stage, by stage and flag."""

    params: Path
    files: dict[str, dict[str, Path]]  # stage -> flag -> path
    out: Path | None = None  # the page itself, which holds this run's wall-clock figures

    @classmethod
    def from_args(cls, args) -> Inputs:
        files = by_stage(args.input)
        require(files, READS)
        return cls(params=args.params, files=files, out=args.out)

    def wall_clock(self) -> set[str]:
        """The files that hold this run's seconds: the two runs' only differing bytes."""
        return {str(p) for files in self.files.values() for flag, p in files.items()
                if flag == WALL_CLOCK_FLAG} | ({str(self.out)} if self.out else set())

    @property
    def counts(self) -> Path:
        return self.files["stack"]["counts"]

    @property
    def tensors(self) -> Path:
        return self.files["stack"]["tensors"]

    def kind(self, flag: str) -> dict[str, Path]:
        """One kind of output (`metrics`, `history`, ...) of every method that writes it."""
        return {m: self.files[m][flag] for m in METHODS if flag in self.files[m]}

    def of(self, method: str) -> list[Path]:
        """The files a method's stage writes."""
        return list(self.files[method].values())


def read_arrays(path: Path, needs: set[str], stage: str) -> dict[str, np.ndarray]:
    """A safetensors file as numpy arrays (the report only reads, so it needs no torch)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        arrays = load(Path(path).read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise PipelineError(f"{path}: not a valid safetensors file ({e})") from None
    missing = sorted(needs - set(arrays))
    if missing:
        raise PipelineError(f"{path}: no tensor {missing[0]!r}; rerun the {stage} stage")
    return arrays


def read_rows(path: Path) -> list[dict[str, float | None]]:
    """A history or steps CSV as rows of floats; an empty cell (no loss to report) is None."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        return [{k: float(v) if v not in ("", None) else None for k, v in r.items()}
                for r in rows]
    except ValueError as e:
        raise PipelineError(f"{path}: not a CSV of numbers ({e})") from None


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
    if inputs.counts.exists():
        run.counts = read_counts(inputs.counts)
    if inputs.tensors.exists():
        run.tensors = read_arrays(inputs.tensors, NEEDS["tensors"], "stack")
    for kind, into in [("checkpoint", run.checkpoint), ("predictions", run.predictions)]:
        for method, path in inputs.kind(kind).items():
            needs = NEEDS[kind].get(method, {"prob3"} if kind == "predictions" else None)
            if needs is not None and path.exists():  # resnet18's weights draw nothing
                into[method] = read_arrays(path, needs, method)
    for kind, into, read in [("metrics", run.metrics, read_json),
                             ("history", run.history, read_rows),
                             ("timing", run.timing, read_json)]:
        for method, path in inputs.kind(kind).items():
            if path.exists():
                into[method] = read(path)
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
            if len(p["prob3"]) != n:
                raise PipelineError(
                    f"{inputs.kind('predictions')[method]}: prob3 holds {len(p['prob3'])} "
                    f"digits but {inputs.tensors} has {n} validation digits; "
                    f"rerun the {method} stage")
    return run


# -- The accuracy table ----------------------------------------------------------------------
def key_params(method: str, params: Mapping[str, dict]) -> str:
    """The few params that make a method's result, in words."""
    if method.startswith("pixel_mean"):
        return _("no training: the mean of each class's training images")
    p = params[method]
    v = {"lr": p["lr"], "batch": p["batch_size"],
         "epochs": ngettext("%(n)s epoch", "%(n)s epochs", p["epochs"]) % {"n": p["epochs"]}}
    if method == "linear":
        return _("lr %(lr)s, batch %(batch)s, %(epochs)s") % v
    if method == "mlp":
        return _("lr %(lr)s, batch %(batch)s, %(epochs)s, %(hidden)s hidden") % {
            **v, "hidden": p["hidden"]}
    return (_("one-cycle to lr %(lr)s, batch %(batch)s, %(epochs)s, weight decay %(wd)s") % {
        **v, "wd": p["weight_decay"]} + (", bf16" if p["bf16"] else ""))


def row_source(key: str) -> tuple[str, str]:
    """A row of the accuracy table -> (the method that wrote it, its keys' prefix in metrics)."""
    return ("pixel_mean", "rmse_") if key == "pixel_mean_rmse" else (key, "")


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
@dataclass(frozen=True)
class Figure:
    """An embedded image: a PNG data: URI, its alt text and its size on the page."""

    src: str
    alt: str
    width: int
    height: int
    caption: str = ""
    pixelated: bool = False  # a digit shown as its pixels, scaled up without smoothing


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _canvas(width: float, height: float, **subplots):
    """A matplotlib figure on the Agg canvas, with no pyplot state to leak or close."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, fig.subplots(**subplots)


def _chart(fig, alt: str, caption: str = "") -> Figure:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    w, h = fig.get_size_inches() * DPI
    return Figure(_data_uri(buf.getvalue()), alt, round(w), round(h), caption)


def _picture(img: np.ndarray, alt: str, scale: int, caption: str = "") -> Figure:
    """A grey image, uint8 [H, W] with 0 = black, shown `scale` times its size."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    h, w = img.shape
    return Figure(_data_uri(buf.getvalue()), alt, w * scale, h * scale, caption, pixelated=True)


def ink(x: np.ndarray) -> np.ndarray:
    """MNIST's light-on-dark digit (uint8 or float in [0, 1]) as dark ink on white paper,
    the way the book's `show_image` draws it: [..., 28, 28] -> uint8 [..., 28, 28]."""
    import numpy as np

    x = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x
    return np.round(255 * (1 - np.clip(x, 0, 1))).astype(np.uint8)


def montage(tiles: np.ndarray, cols: int, gap: int = 2, fill: float = 255) -> np.ndarray:
    """Tiles [K, h, w] laid out in rows of `cols`: -> [rows*(h+gap)-gap, cols*(w+gap)-gap]."""
    import numpy as np

    k, h, w = tiles.shape
    rows = math.ceil(k / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), fill, dtype=tiles.dtype)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tile
    return out


LOSS_TITLES = {"mnist_loss": N_("%(method)s: mnist_loss per epoch"),  # the chapter's
               "cross-entropy": N_("%(method)s: cross-entropy loss per epoch")}  # ten digits'


def history_chart(method: str, rows: Sequence[Mapping], book: float | None, *,
                  loss_name: str = "mnist_loss", target: float | None = None) -> Figure:
    """Loss (train and validation) and validation accuracy per epoch, beside the book's
    figure or a target."""
    epochs = [r["epoch"] for r in rows]
    fig, (loss, acc) = _canvas(9, 3.2, ncols=2)
    loss.plot(epochs, [r["train_loss"] for r in rows], marker=".", label=_("train"))
    loss.plot(epochs, [r["valid_loss"] for r in rows], marker=".", label=_("validation"))
    loss.set(title=_(LOSS_TITLES[loss_name]) % {"method": method},
             xlabel=_("epoch"), ylabel=_("loss"))
    loss.legend()
    acc.plot(epochs, [r["valid_accuracy"] for r in rows], marker=".", color="C2",
             label=_("this run"))
    if book:
        acc.axhline(book, color="grey", linestyle="--",
                    label=_("book (%(book)s)") % {"book": book})
    if target is not None:
        acc.axhline(target, color="#a1261b", linestyle="--",
                    label=_("target (%(target)s)") % {"target": target})
    acc.set(title=_("%(method)s: validation accuracy per epoch") % {"method": method},
            xlabel=_("epoch"), ylabel=_("accuracy"))
    acc.legend(loc="lower right")
    _whole_epochs(len(rows), loss, acc)
    last = rows[-1]
    alt = ngettext(
        "Two line charts for %(method)s over %(n)s epoch: training loss ends at %(train)s "
        "and validation loss at %(valid)s; validation accuracy ends at %(acc)s.",
        "Two line charts for %(method)s over %(n)s epochs: training loss ends at %(train)s "
        "and validation loss at %(valid)s; validation accuracy ends at %(acc)s.",
        len(rows)) % {"method": method, "n": len(rows), "train": _fmt(last["train_loss"]),
                      "valid": _fmt(last["valid_loss"]), "acc": _fmt(last["valid_accuracy"])}
    return _chart(fig, alt)


def _whole_epochs(epochs: int, *axes) -> None:
    """Epochs as whole numbers on the x-axis. One tick per epoch up to 10: with fewer than two
    whole numbers in view (one epoch), MaxNLocator falls back to fractional ticks."""
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlim(0.5, epochs + 0.5)
        if epochs <= 10:
            ax.set_xticks(range(1, epochs + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _fmt(v: float | None, places: int = 4) -> str:
    return _("n/a") if v is None else f"{v:.{places}f}"


def _symmetric(w: np.ndarray) -> float:
    """The colour scale's half-width, so that 0 sits in the middle of a diverging map."""
    return float(abs(w).max()) or 1.0


def linear_weights_chart(weights: np.ndarray) -> Figure:
    """The 784 weights of `linear1` back in the image's shape: [784, 1] -> [28, 28]."""
    w = weights.reshape(SIZE, SIZE)
    v = _symmetric(w)
    fig, ax = _canvas(4.6, 3.9)
    im = ax.imshow(w, cmap="RdBu", vmin=-v, vmax=v)
    ax.set(title=_("linear1 weights as a 28×28 image"), xlabel=_("pixel column"),
           ylabel=_("pixel row"))
    fig.colorbar(im, ax=ax, label=_("weight (blue: evidence for a 3)"))
    alt = _("Heat map of the linear model's 784 weights in the shape of a digit; the colour "
            "scale is centred on 0 and runs from %(lo)s (red, a 7) to %(hi)s (blue, a 3).") % {
        "lo": f"{-v:.2f}", "hi": f"{v:.2f}"}
    return _chart(fig, alt)


def hidden_units_chart(w: np.ndarray) -> Figure:
    """Each hidden unit's 784 input weights as a tile: [hidden, 784] -> tiles [hidden, 28, 28]."""
    import numpy as np

    tiles = w.reshape(-1, SIZE, SIZE)
    # Each unit on its own symmetric scale: their magnitudes differ, their patterns matter.
    tiles = tiles / np.maximum(abs(tiles).max(axis=(1, 2), keepdims=True), 1e-12)
    cols = min(6, len(tiles))
    grid = montage(tiles.astype(np.float32), cols, gap=3, fill=np.nan)
    import matplotlib

    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="white")
    rows = math.ceil(len(tiles) / cols)
    fig, ax = _canvas(1.05 * cols + 1.4, 1.05 * rows + 0.7)
    im = ax.imshow(grid, cmap=cmap, vmin=-1, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set(title=_("The %(n)s hidden units' weights (28×28 each)") % {"n": len(tiles)},
           xlabel=_("units 1–%(cols)s in the first row, %(next)s–%(cols2)s in the next, …") % {
               "cols": cols, "next": cols + 1, "cols2": 2 * cols},
           ylabel=_("rows of %(cols)s units") % {"cols": cols})
    fig.colorbar(im, ax=ax, label=_("weight / the unit's largest |weight|"), shrink=0.8)
    alt = _("A grid of %(n)s small heat maps, one per hidden unit of simple_net, each showing "
            "which pixels push that unit up (blue) or down (red).") % {"n": len(tiles)}
    return _chart(fig, alt)


def distances_chart(pred: Mapping[str, np.ndarray], y: np.ndarray) -> Figure:
    """Each validation digit's L1 and RMSE distance to mean3 and mean7, by true class."""
    fig, axes = _canvas(9, 5.6, nrows=2, ncols=2)
    threes = y == LABEL["3"]
    for row, (dist, name) in enumerate([("l1", "L1 (mnist_distance)"), ("rmse", "RMSE")]):
        for col, ideal in enumerate(("3", "7")):
            ax = axes[row, col]
            d = pred[f"{dist}_{ideal}"]
            ax.hist([d[threes], d[~threes]], bins=40, histtype="stepfilled", alpha=0.55,
                    label=[_("3s"), _("7s")], color=["C0", "C3"])
            ax.set(title=_("%(distance)s to mean%(ideal)s") % {"distance": name, "ideal": ideal},
                   xlabel=_("distance"), ylabel=_("digits"))
            ax.legend()
    alt = _("Four histograms of the validation digits' distances: L1 and RMSE to the ideal 3 "
            "and to the ideal 7, with the true 3s and true 7s drawn separately.")
    return _chart(fig, alt)


def resnet18_chart(steps: Sequence[Mapping] | None, rows: Sequence[Mapping] | None) -> Figure:
    """Loss per step, the one-cycle learning rate per step, and accuracy per epoch."""
    fig, (loss, lr, acc) = _canvas(11, 3.2, ncols=3)
    if steps:
        x = [s["step"] for s in steps]
        loss.plot(x, [s["loss"] for s in steps], linewidth=1)
        lr.plot(x, [s["lr"] for s in steps], color="C1")
    loss.set(title=_("resnet18: training loss per step"), xlabel=_("step"), ylabel=_("loss"))
    lr.set(title=_("one-cycle learning rate"), xlabel=_("step"), ylabel=_("learning rate"))
    if rows:
        acc.plot([r["epoch"] for r in rows], [r["valid_accuracy"] for r in rows],
                 marker="o", color="C2", label=_("this run"))
    acc.axhline(BOOK["resnet18"], color="grey", linestyle="--",
                label=_("book (%(book)s)") % {"book": BOOK["resnet18"]})
    acc.set(title=_("resnet18: validation accuracy"), xlabel=_("epoch"), ylabel=_("accuracy"))
    acc.legend(loc="lower right")
    _whole_epochs(len(rows or [None]), acc)
    peak = max((s["lr"] for s in steps), default=0) if steps else 0
    alt = _("Three charts for resnet18: training loss over %(steps)s steps; the learning rate "
            "rising to %(peak)s and annealing back down (one cycle); and validation accuracy "
            "per epoch against the book's.") % {"steps": len(steps or []), "peak": f"{peak:g}"}
    return _chart(fig, alt)


def four_panels_chart(t: Mapping[str, np.ndarray]) -> Figure:
    """The chapter's figure: the speeds (blue) and the predictions (red) of the first 4 steps."""
    fig, axes = _canvas(12, 3, ncols=4)
    for i, ax in enumerate(axes):
        ax.scatter(t["time"], t["speed"], s=16)
        ax.scatter(t["time"], t["preds"][i], s=16, color="red")
        ax.set_ylim(-300, 100)
        ax.set(title=_("step %(step)s: loss %(loss)s") % {"step": i + 1,
                                                          "loss": f"{t['loss'][i]:.1f}"},
               xlabel=_("time"))
    axes[0].set_ylabel(_("speed"))
    alt = _("Four scatter plots of the 20 measured speeds against time, a U shape, with the "
            "quadratic's predictions in red at each of the first four steps of SGD.")
    return _chart(fig, alt)


def curve_chart(x: np.ndarray, y: np.ndarray, title: str, *, point: float | None = None) -> Figure:
    """One of the chapter's function plots; `point` marks f at that x in red."""
    import numpy as np

    fig, ax = _canvas(4.2, 3)
    ax.plot(x, y)
    if point is not None:
        ax.scatter([point], [np.interp(point, x, y)], color="red", zorder=3)
    ax.set(title=title, xlabel="x")
    ax.grid(alpha=0.3)
    return _chart(fig, _("A plot of %(title)s for x from %(lo)s to %(hi)s.") % {
        "title": title, "lo": f"{x[0]:g}", "hi": f"{x[-1]:g}"})


def pixels_table(im3: np.ndarray) -> str:
    """The chapter's `df.style.background_gradient('Greys')` of im3's pixels [4:15, 4:22]."""
    import pandas as pd
    from markupsafe import Markup

    df = pd.DataFrame(im3[4:15, 4:22], index=range(4, 15), columns=range(4, 22))
    styled = (df.style.set_uuid("im3").background_gradient("Greys")
              .set_properties(**{"font-size": "7pt", "padding": "1px 3px"}))
    return Markup(styled.to_html())  # pandas' own HTML: numbers and inline colours only


# -- Sections --------------------------------------------------------------------------------
def confusion(prob3: np.ndarray, y: np.ndarray) -> dict[str, dict[str, int]]:
    """Counts by true class (rows) and predicted class (columns); a 3 when prob3 > 0.5."""
    pred3, threes = prob3 > 0.5, y == LABEL["3"]
    return {
        "3": {"3": int((threes & pred3).sum()), "7": int((threes & ~pred3).sum())},
        "7": {"3": int((~threes & pred3).sum()), "7": int((~threes & ~pred3).sum())},
    }


def mistakes(prob3: np.ndarray, y: np.ndarray, x: np.ndarray, title: str) -> dict:
    """The most confident wrong answers first (fastai's "top losses"), at most 12."""
    import numpy as np

    pred3 = prob3 > 0.5
    confidence = np.where(pred3, prob3, 1 - prob3)
    wrong = np.flatnonzero(pred3 != (y == LABEL["3"]))
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:MISTAKES_SHOWN]
    shown = []
    for i in order:
        truth, called = ("3", "7") if y[i] == LABEL["3"] else ("7", "3")
        v = {"i": i, "truth": truth, "title": title, "called": called,
             "confidence": f"{confidence[i]:.2f}"}
        shown.append(_picture(
            ink(x[i]), _("Validation digit %(i)s: a %(truth)s that %(title)s called a "
                         "%(called)s with confidence %(confidence)s.") % v, scale=3,
            caption=_("a %(truth)s, called %(called)s (%(confidence)s)") % v))
    return {"count": len(wrong), "total": len(y), "shown": shown}


def read_counts(path: Path) -> dict[str, dict[str, int]]:
    """The stack stage's counts.json: {"train": {"3": n, "7": n}, "valid": {...}}."""
    c = read_json(path)
    try:
        return {s: {k: int(c[s][k]) for k in CLASSES} for s in SPLITS}
    except (KeyError, TypeError, ValueError):
        raise PipelineError(f"{path}: expected images per split and class, such as "
                            '{"train": {"3": 6131, "7": 6265}, ...}; rerun the stack stage'
                            ) from None


def data_section(run: Run) -> dict:
    out: dict = {"counts": run.counts, "samples": [], "im3": None,
                 "missing": [str(p) for p in (run.inputs.counts, run.inputs.tensors)
                             if not p.exists()]}
    if run.tensors is None:
        return out
    x, y = run.tensors["train_x"], run.tensors["train_y"]
    stacked_threes = x[y == LABEL["3"]]  # [6131, 28, 28]: the chapter's stack of every 3
    im3 = stacked_threes[1]  # the chapter's im3: the second 3, by file name
    out["im3"] = {"picture": _picture(ink(im3), _("The chapter's im3: a training 3."), scale=4,
                                      caption="im3"),
                  "table": pixels_table(im3),
                  "shape": list(stacked_threes.shape), "rank": stacked_threes.ndim}
    for digit in CLASSES:
        first = x[y == LABEL[digit]][:SAMPLES_SHOWN]  # [24, 28, 28], in the files' order
        v = {"n": len(first), "digit": digit}
        out["samples"].append(_picture(
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
            out["ideal"].append(_picture(
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
            "picture": _picture(ink(x[y == LABEL["3"]][1]), _("The sample 3: the second "
                                "training 3 (the book's a_3)."), scale=4, caption="a_3"),
            "rows": rows,
        }
    pred = run.predictions.get("pixel_mean")
    if pred is not None and run.tensors is not None:
        out["distances"] = distances_chart(pred, run.tensors["valid_y"])
        threes = run.tensors["valid_y"] == LABEL["3"]
        # The pixel_mean stage computed mnist_distance(valid_3_tens, mean3) by broadcasting.
        out["broadcast"] = {"valid": [int(threes.sum()), SIZE, SIZE],
                            "dist": list(pred["l1_3"][threes].shape)}
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
        out["charts"].append(resnet18_chart(run.steps, run.history.get("resnet18")))
    pred = run.predictions.get("resnet18")
    if pred is not None and run.tensors is not None:
        out["confusion"] = confusion(pred["prob3"], run.tensors["valid_y"])
    return out


def mistakes_section(run: Run) -> list[dict]:
    out = []
    for method in METHODS:
        title = _(TITLES[method])
        item: dict = {"method": method, "title": title, "result": None, "missing": [],
                      "stage": method if method not in run.predictions else "stack"}
        pred = run.predictions.get(method)
        if pred is None or run.tensors is None:
            item["missing"] = [str(p) for p in (run.inputs.kind("predictions")[method],
                                                run.inputs.tensors) if not p.exists()]
        else:
            v = run.tensors
            item["result"] = mistakes(pred["prob3"], v["valid_y"], v["valid_x"], title)
        out.append(item)
    return out


def try_it_section(run: Run) -> dict:
    """The drawing panel, with this run's pixel_mean, linear and mlp (each None if missing)."""
    from mnist_basics.try_it import context

    number = list(SECTIONS).index("try-it") + 1
    return context(**{m: run.checkpoint.get(m) for m in ("pixel_mean", "linear", "mlp")},
                   heading=f"{number}. {_(SECTIONS['try-it'])}")


def git_state(cwd: Path, wall_clock: set[str] = frozenset()) -> dict[str, object]:
    """The commit, and the tracked files that differ from it: those the user edited, apart
    from those that only hold this run's wall-clock figures. "unknown" without git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                  timeout=20, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout

    commit = (git("rev-parse", "HEAD") or "").strip()
    changed = git("status", "--porcelain", "-z", "--untracked-files=no") if commit else None
    if changed is None:
        return {"commit": commit or "unknown", "dirty": "unknown", "edited": [],
                "wall_clock": []}
    # -z: each entry `XY path`, NUL-terminated and never quoted; a rename adds the old path.
    entries = changed.split("\0")
    paths, i = [], 0
    while i < len(entries) and entries[i]:
        paths.append(entries[i][3:])
        i += 2 if entries[i][0] in "RC" else 1
    wall = [p for p in paths if p in wall_clock
            or (p == "dvc.lock" and _lock_differs_only_in_wall_clock(git, cwd, wall_clock))]
    edited = [p for p in paths if p not in wall]
    return {"commit": commit, "dirty": "yes" if edited else "no", "edited": edited,
            "wall_clock": wall}


def _without_wall_clock(lock: object, wall_clock: set[str]) -> object:
    """dvc.lock with the hashes of wall-clock files blanked, wherever they appear."""
    if isinstance(lock, dict):
        if lock.get("path") in wall_clock:
            return {"path": lock["path"]}
        return {k: _without_wall_clock(v, wall_clock) for k, v in lock.items()}
    if isinstance(lock, list):
        return [_without_wall_clock(v, wall_clock) for v in lock]
    return lock


def _lock_differs_only_in_wall_clock(git, cwd: Path, wall_clock: set[str]) -> bool:
    committed = git("show", "HEAD:dvc.lock")
    try:
        now = (cwd / "dvc.lock").read_text()
        return committed is not None and (_without_wall_clock(load_yaml(committed), wall_clock)
                                          == _without_wall_clock(load_yaml(now), wall_clock))
    except (OSError, yaml.YAMLError):
        return False


def versions() -> dict[str, str]:
    out = {}
    for name in VERSIONS_OF:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = _("not installed")
    return out


def wall_times(run: Run) -> dict:
    rows = [{"stage": m, "seconds": run.timing[m].get("seconds"),
             "train_seconds": run.timing[m].get("train_seconds"),
             "device": run.timing[m].get("device", _("unknown")),
             "threads": run.timing[m].get("threads")}
            if m in run.timing else {"stage": m, "seconds": None}
            for m in METHODS]
    timed = [r["seconds"] for r in rows if r["seconds"] is not None]
    return {"rows": rows, "total": sum(timed) if timed else None}


def md5_of(path: Path) -> str:
    """The file's md5, as DVC records it in dvc.lock (`hash: md5`)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(inputs: Inputs) -> list[dict]:
    """Every file this page was made from, stage by stage: path, md5, bytes (None if absent)."""
    rows = []
    for stage, files in inputs.files.items():
        for flag, path in files.items():
            there = path.exists()
            rows.append({"stage": stage, "path": str(path),
                         "md5": md5_of(path) if there else None,
                         "size": path.stat().st_size if there else None,
                         # by what the file is, wherever a flag put it
                         "wall_clock": flag == WALL_CLOCK_FLAG})
    return rows


def page_language(params: Mapping[str, Mapping]) -> str:
    """params.yaml's `report.lang`; English where the section is not there."""
    return params.get("report", {}).get("lang", SOURCE)


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
        "wall": wall_times(run),
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


def environment(lang: str = SOURCE):
    """The templates' Jinja environment, in a language: autoescape, i18n, the `num` filter."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # a param such as "<script>" is shown as text, never run
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,  # as babel.cfg extracts the templates' messages
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    install(env, lang)  # {% trans %} and _() in every template
    env.filters["num"] = _num
    return env


def render(context: Mapping) -> str:
    return environment(context.get("lang", SOURCE)).get_template("report.html.j2").render(
        **context)


def _num(v: object, spec: str = ".6f") -> str:
    """A number for the page; a dash where there is none."""
    return "—" if v is None or v == "" else format(v, spec)
