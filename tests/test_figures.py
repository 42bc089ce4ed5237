"""Every figure of the report is readable: no tick labels on top of each other, and epochs
counted in whole numbers, at the default params and with a single epoch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg

from mnist_basics.report import figures as figs
from mnist_basics.report.page import BOOK
from tests.harness import ROOT

EPOCHS = yaml.safe_load((ROOT / "params.yaml").read_text())


def history(epochs: int) -> list[dict]:
    return [{"epoch": e, "train_loss": 0.5 / e, "valid_loss": 0.6 / e,
             "valid_accuracy": 0.95 + 0.04 * e / epochs} for e in range(1, epochs + 1)]


def steps(n: int) -> list[dict]:
    return [{"step": i, "lr": 0.05 * np.sin(np.pi * i / n), "loss": 1 / i}
            for i in range(1, n + 1)]


def figures(monkeypatch, epochs: dict[str, int]) -> list:
    """Draw every chart the report draws; keep the matplotlib figures instead of their PNGs."""
    drawn = []
    render = figs.chart

    def keep(fig, alt, caption=""):
        drawn.append(fig)
        return render(fig, alt, caption)

    monkeypatch.setattr(figs, "chart", keep)
    rng = np.random.default_rng(0)
    for method in ("linear", "mlp"):
        figs.history_chart(method, history(epochs[method]), BOOK[method])
    figs.steps_chart(steps(48 * epochs["resnet18"]), history(epochs["resnet18"]),
                        BOOK["resnet18"])
    figs.linear_weights_chart(rng.normal(size=(784, 1)))
    figs.hidden_units_chart(rng.normal(size=(30, 784)))
    y = np.array([1, 0] * 50)
    figs.distances_chart({k: rng.random((100, 2)) for k in ("dist_l1", "dist_rmse")}, y)
    return drawn


def overlapping(labels, renderer) -> list[tuple[str, str]]:
    """Pairs of tick labels drawn on top of each other (those outside the view are not drawn)."""
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels
             if t.get_visible() and t.get_text()]
    return [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]


@pytest.mark.parametrize("case", ["defaults", "one epoch"])
def test_tick_labels_never_overlap_and_epochs_are_whole(case, monkeypatch):
    epochs = ({m: EPOCHS[m]["epochs"] for m in ("linear", "mlp", "resnet18")}
              if case == "defaults" else dict.fromkeys(("linear", "mlp", "resnet18"), 1))
    drawn = figures(monkeypatch, epochs)
    assert len(drawn) == 6
    for fig in drawn:
        canvas = FigureCanvasAgg(fig)  # the report's figures have no canvas of their own
        canvas.draw()  # lays the figure out as saved: constrained layout, tick labels
        renderer = canvas.get_renderer()
        for ax in fig.axes:
            for axis in (ax.get_xticklabels(), ax.get_yticklabels()):
                assert overlapping(axis, renderer) == [], ax.get_title()
            if ax.get_xlabel() == "epoch":
                lo, hi = ax.get_xlim()
                ticks = [t.get_text() for t in ax.get_xticklabels()
                         if t.get_text() and lo <= t.get_position()[0] <= hi]
                assert ticks and all(t.isdigit() for t in ticks), (ax.get_title(), ticks)
                assert lo < 1 <= int(ticks[0]) and int(ticks[-1]) < hi, ax.get_title()
