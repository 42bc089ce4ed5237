"""The pages' figures: matplotlib charts and digit pictures, each a PNG data: URI.

Every chart is drawn on matplotlib's Agg canvas (`canvas`, then `chart`), never through pyplot
(global state), and every digit is a `picture` of its pixels. Alt texts and titles are
gettext messages, so a figure speaks the page's language (mnist_basics/report/i18n.py). Nothing here
imports torch: the pages read numpy arrays.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mnist_basics.data.stack import LABEL, SIZE
from mnist_basics.report.i18n import N_, ngettext
from mnist_basics.report.i18n import gettext as _

if TYPE_CHECKING:
    import numpy as np

DPI = 100


@dataclass(frozen=True)
class Figure:
    """An embedded image: a PNG data: URI, its alt text and its size on the page."""

    src: str
    alt: str
    width: int
    height: int
    caption: str = ""
    pixelated: bool = False  # a digit shown as its pixels, scaled up without smoothing


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def canvas(width: float, height: float, **subplots):
    """A matplotlib figure on the Agg canvas, with no pyplot state to leak or close."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, fig.subplots(**subplots)


def chart(fig, alt: str, caption: str = "") -> Figure:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    w, h = fig.get_size_inches() * DPI
    return Figure(data_uri(buf.getvalue()), alt, round(w), round(h), caption)


def picture(img: np.ndarray, alt: str, scale: int, caption: str = "") -> Figure:
    """A grey image, uint8 [H, W] with 0 = black, shown `scale` times its size."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    h, w = img.shape
    return Figure(data_uri(buf.getvalue()), alt, w * scale, h * scale, caption, pixelated=True)


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
    fig, (loss, acc) = canvas(9, 3.2, ncols=2)
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
    whole_epochs(len(rows), loss, acc)
    last = rows[-1]
    alt = ngettext(
        "Two line charts for %(method)s over %(n)s epoch: training loss ends at %(train)s "
        "and validation loss at %(valid)s; validation accuracy ends at %(acc)s.",
        "Two line charts for %(method)s over %(n)s epochs: training loss ends at %(train)s "
        "and validation loss at %(valid)s; validation accuracy ends at %(acc)s.",
        len(rows)) % {"method": method, "n": len(rows), "train": fmt(last["train_loss"]),
                      "valid": fmt(last["valid_loss"]), "acc": fmt(last["valid_accuracy"])}
    return chart(fig, alt)


def whole_epochs(epochs: int, *axes) -> None:
    """Epochs as whole numbers on the x-axis. One tick per epoch up to 10: with fewer than two
    whole numbers in view (one epoch), MaxNLocator falls back to fractional ticks."""
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlim(0.5, epochs + 0.5)
        if epochs <= 10:
            ax.set_xticks(range(1, epochs + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def fmt(v: float | None, places: int = 4) -> str:
    return _("n/a") if v is None else f"{v:.{places}f}"


def symmetric(w: np.ndarray) -> float:
    """The colour scale's half-width, so that 0 sits in the middle of a diverging map."""
    return float(abs(w).max()) or 1.0


def curve_chart(x: np.ndarray, y: np.ndarray, title: str, *, point: float | None = None) -> Figure:
    """One of the chapter's function plots; `point` marks f at that x in red."""
    import numpy as np

    fig, ax = canvas(4.2, 3)
    ax.plot(x, y)
    if point is not None:
        ax.scatter([point], [np.interp(point, x, y)], color="red", zorder=3)
    ax.set(title=title, xlabel="x")
    ax.grid(alpha=0.3)
    return chart(fig, _("A plot of %(title)s for x from %(lo)s to %(hi)s.") % {
        "title": title, "lo": f"{x[0]:g}", "hi": f"{x[-1]:g}"})



def steps_chart(steps: Sequence[Mapping] | None, rows: Sequence[Mapping] | None = None,
                book: float | None = None) -> Figure:
    """resnet18's one-cycle run: the loss and the learning rate at every step; with `rows` (the
    history), a third panel of the validation accuracy per epoch beside the book's."""
    fig, axes = canvas(11 if rows is not None else 9, 3.2, ncols=3 if rows is not None else 2)
    loss, lr = axes[:2]
    if steps:
        x = [s["step"] for s in steps]
        loss.plot(x, [s["loss"] for s in steps], linewidth=1)
        lr.plot(x, [s["lr"] for s in steps], color="C1")
    loss.set(title=_("resnet18: training loss per step"), xlabel=_("step"), ylabel=_("loss"))
    lr.set(title=_("one-cycle learning rate"), xlabel=_("step"), ylabel=_("learning rate"))
    v = {"steps": len(steps or []),
         "peak": f"{max((s['lr'] for s in steps or []), default=0):g}"}
    if rows is None:
        return chart(fig, _("Two charts for resnet18: training loss over %(steps)s steps, and "
                            "the learning rate rising to %(peak)s and annealing back down (one "
                            "cycle).") % v)
    acc = axes[2]
    if rows:
        acc.plot([r["epoch"] for r in rows], [r["valid_accuracy"] for r in rows],
                 marker="o", color="C2", label=_("this run"))
    if book:
        acc.axhline(book, color="grey", linestyle="--", label=_("book (%(book)s)") % {"book": book})
    acc.set(title=_("resnet18: validation accuracy"), xlabel=_("epoch"), ylabel=_("accuracy"))
    acc.legend(loc="lower right")
    whole_epochs(len(rows or [None]), acc)
    return chart(fig, _("Three charts for resnet18: training loss over %(steps)s steps; the "
                        "learning rate rising to %(peak)s and annealing back down (one cycle); "
                        "and validation accuracy per epoch against the book's.") % v)


# -- The chapter's figures (3s and 7s) ------------------------------------------------------
def linear_weights_chart(weights: np.ndarray) -> Figure:
    """The 784 weights of `linear1` back in the image's shape: [784, 1] -> [28, 28]."""
    w = weights.reshape(SIZE, SIZE)
    v = symmetric(w)
    fig, ax = canvas(4.6, 3.9)
    im = ax.imshow(w, cmap="RdBu", vmin=-v, vmax=v)
    ax.set(title=_("linear1 weights as a 28×28 image"), xlabel=_("pixel column"),
           ylabel=_("pixel row"))
    fig.colorbar(im, ax=ax, label=_("weight (blue: evidence for a 3)"))
    alt = _("Heat map of the linear model's 784 weights in the shape of a digit; the colour "
            "scale is centred on 0 and runs from %(lo)s (red, a 7) to %(hi)s (blue, a 3).") % {
        "lo": f"{-v:.2f}", "hi": f"{v:.2f}"}
    return chart(fig, alt)


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
    fig, ax = canvas(1.05 * cols + 1.4, 1.05 * rows + 0.7)
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
    return chart(fig, alt)


def distances_chart(pred: Mapping[str, np.ndarray], y: np.ndarray) -> Figure:
    """Each validation digit's L1 and RMSE distance to mean3 and mean7, by true class; `pred`
    is pixel_mean's predictions, with `dist_l1` and `dist_rmse` [N, 2] by label."""
    fig, axes = canvas(9, 5.6, nrows=2, ncols=2)
    threes = y == LABEL["3"]
    for row, (dist, name) in enumerate([("l1", "L1 (mnist_distance)"), ("rmse", "RMSE")]):
        for col, ideal in enumerate(("3", "7")):
            ax = axes[row, col]
            d = pred[f"dist_{dist}"][:, LABEL[ideal]]
            ax.hist([d[threes], d[~threes]], bins=40, histtype="stepfilled", alpha=0.55,
                    label=[_("3s"), _("7s")], color=["C0", "C3"])
            ax.set(title=_("%(distance)s to mean%(ideal)s") % {"distance": name, "ideal": ideal},
                   xlabel=_("distance"), ylabel=_("digits"))
            ax.legend()
    alt = _("Four histograms of the validation digits' distances: L1 and RMSE to the ideal 3 "
            "and to the ideal 7, with the true 3s and true 7s drawn separately.")
    return chart(fig, alt)


def four_panels_chart(t: Mapping[str, np.ndarray]) -> Figure:
    """The chapter's figure: the speeds (blue) and the predictions (red) of the first 4 steps."""
    fig, axes = canvas(12, 3, ncols=4)
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
    return chart(fig, alt)


def pixels_table(im3: np.ndarray) -> str:
    """The chapter's `df.style.background_gradient('Greys')` of im3's pixels [4:15, 4:22]."""
    import pandas as pd
    from markupsafe import Markup

    df = pd.DataFrame(im3[4:15, 4:22], index=range(4, 15), columns=range(4, 22))
    styled = (df.style.set_uuid("im3").background_gradient("Greys")
              .set_properties(**{"font-size": "7pt", "padding": "1px 3px"}))
    return Markup(styled.to_html())  # pandas' own HTML: numbers and inline colours only



# -- Figures of any number of classes ------------------------------------------------------
def pair_examples(x: np.ndarray, idx: np.ndarray, truth: str, called: str, title: str,
                  cols: int) -> Figure:
    """Validation digits of one confused pair, side by side, `cols` to a row."""
    v = {"n": len(idx), "truth": truth, "called": called, "title": title}
    alt = ngettext("%(n)s testing %(truth)s that %(title)s called a %(called)s.",
                   "%(n)s testing %(truth)ss that %(title)s called a %(called)s, the most "
                   "confident first.", len(idx)) % v
    return picture(montage(ink(x[idx]), cols=cols), alt, scale=2)


def accuracy_chart(rows: Sequence[Mapping]) -> Figure:
    """Each method's accuracy on ten digits beside MNIST_SAMPLE's, and its target."""
    fig, ax = canvas(8, 3.4)
    ys = list(range(len(rows)))[::-1]  # the table's order, top to bottom
    h = 0.38
    ax.barh([y + h / 2 for y in ys], [r["accuracy"] for r in rows], height=h, color="#1f5f99",
            label=_("ten digits (this page)"))
    ax.barh([y - h / 2 for y in ys], [r["mnist_sample_accuracy"] for r in rows], height=h,
            color="#9bb7d4", label=_("MNIST_SAMPLE, 3s and 7s"))
    ax.scatter([r["target"] for r in rows], [y + h / 2 for y in ys], marker="|", s=260,
               color="#a1261b", zorder=3, label=_("target"))
    ax.set_yticks(ys, [r["title"] for r in rows])
    lo = min(min(r["accuracy"], r["mnist_sample_accuracy"], r["target"]) for r in rows)
    ax.set_xlim(max(0.0, math.floor(lo * 20) / 20 - 0.05), 1.0)
    ax.set_xlabel(_("validation accuracy"))
    fig.legend(loc="outside upper center", ncols=3, fontsize=8)
    alt = "; ".join(_("%(method)s: %(acc)s on ten digits, %(sample)s on MNIST_SAMPLE, target "
                      "%(target)s") % {"method": r["title"], "acc": f"{r['accuracy']:.4f}",
                                       "sample": f"{r['mnist_sample_accuracy']:.4f}",
                                       "target": f"{r['target']:.4f}"} for r in rows)
    return chart(fig, alt)


def means_figures(means: np.ndarray, classes: Sequence[str]) -> list[Figure]:
    """Each class's mean image, the pixel mean's ideal digit: [C, 28, 28]."""
    return [picture(ink(means[i]), _("The ideal %(digit)s: the mean of every training "
                                      "%(digit)s, a blurry %(digit)s.") % {"digit": digit},
                     scale=3, caption=f"means[{digit}]")
            for i, digit in enumerate(classes)]


def samples_figure(x: np.ndarray, y: np.ndarray, n_classes: int, shown: int) -> Figure:
    """The first `shown` training images of each label, one row per label."""
    import numpy as np

    # One row per digit, blank where a digit has fewer images (a small test set)
    tiles = np.zeros((n_classes, shown, SIZE, SIZE), np.uint8)
    for i in range(n_classes):
        first = x[y == i][:shown]
        tiles[i, :len(first)] = first
    tiles = tiles.reshape(-1, SIZE, SIZE)
    alt = _("The first %(n)s training images of each digit, in file order: one row per digit, "
            "0 at the top.") % {"n": shown}
    return picture(montage(ink(tiles), cols=shown), alt, scale=2)


def nearest_chart(rows: Sequence[Mapping], why: Mapping, classes: Sequence[str]) -> Figure:
    """How many testing digits each mean is nearest to, by L1 and by RMSE, against how many of
    each there are; and each mean's ink."""
    import numpy as np

    p = why["called"]
    fig, (near, ink_ax) = canvas(10, 3.2, ncols=2)
    x = np.arange(len(classes))
    near.bar(x - 0.2, p["l1"], width=0.4, color="#a1261b", label="L1")
    near.bar(x + 0.2, p["rmse"], width=0.4, color="#1f5f99", label="RMSE")
    near.scatter(x, [r["n"] for r in rows], marker="_", s=200, color="#1d2125", zorder=3,
                 label=_("true digits"))
    near.set(title=_("Testing digits nearest to each mean"), xlabel=_("mean digit"),
             ylabel=_("digits"))
    near.set_xticks(x, classes)
    near.legend(fontsize=8)
    ink_ax.bar(x, [r["ink"] for r in rows], color="#5c6670")
    ink_ax.set(title=_("Ink in each mean (the sum of its pixels)"), xlabel=_("mean digit"),
               ylabel=_("ink"))
    ink_ax.set_xticks(x, classes)
    alt = _("Two bar charts. By L1, %(l1)s of the %(n)s testing digits are nearest the mean "
            "%(light)s, by RMSE %(rmse)s; the mean %(light)s holds the least ink, %(ink)s.") % {
        "l1": why["l1_called"], "n": f"{why['n']:,}", "light": why["light"],
        "rmse": why["rmse_called"], "ink": f"{why['light_ink']:.1f}"}
    return chart(fig, alt)


def class_weights_chart(weights: np.ndarray, classes: Sequence[str]) -> Figure:
    """The linear model's ten columns of weights, each back in the image's shape: the pixels
    that speak for (blue) and against (red) each digit."""
    w = weights.T.reshape(len(classes), SIZE, SIZE)  # [784, C] -> [C, 28, 28]
    v = symmetric(w)
    fig, axes = canvas(10, 4.4, nrows=2, ncols=math.ceil(len(classes) / 2))
    for i, ax in enumerate(axes.flat):
        im = ax.imshow(w[i], cmap="RdBu", vmin=-v, vmax=v)
        ax.set_title(classes[i])
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, label=_("weight (blue: evidence for the digit)"), shrink=0.8)
    alt = _("Ten heat maps, one per digit: the linear model's 784 weights for that digit in the "
            "shape of the image, on one colour scale centred on 0 from %(lo)s (red) to %(hi)s "
            "(blue).") % {"lo": f"{-v:.2f}", "hi": f"{v:.2f}"}
    return chart(fig, alt)

