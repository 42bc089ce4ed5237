"""The chapter's baseline: compare each digit with the "ideal" digit of each class, pixel by
pixel.

The ideal digits are the mean images of each class's training images (floats in [0, 1],
exactly `stacked.float()/255` then `.mean(0)` as in the book): `mean3` and `mean7` on
MNIST_SAMPLE, ten of them on the full MNIST. A validation digit belongs to the class whose
mean is nearest by the chapter's L1 distance `mnist_distance`; the RMSE distance is scored
too, as the book discusses both. One classifier for any number of classes; run it as
`python stages/pixel_mean.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from mnist_basics import PipelineError
from mnist_basics.chapter.train import (
    Clock,
    StageResult,
    card_names,
    class_accuracies,
    per_class,
    split_classes,
    timing_record,
)
from mnist_basics.data.stack import SIZE, MnistSample
from mnist_basics.registry import DATASETS, Layout

INPUT = {
    "shape": [SIZE, SIZE],
    "dtype": "uint8",
    "digit": "light on dark, as in MNIST",
    "prepare": "x.float()/255",
}
# The chapter's checkpoint keeps the book's names, mean3 and mean7 (the model card says so);
# any other dataset's holds `means` [C, 28, 28], by label.
ARCH = {
    "mean3": [SIZE, SIZE],
    "mean7": [SIZE, SIZE],
    "distance": "mnist_distance(a,b) = (a-b).abs().mean((-1,-2))",
    "rule": "a 3 when mnist_distance(x, mean3) < mnist_distance(x, mean7)",
    "prob3": "d7/(d3+d7) with the L1 distances",
}


def digit_arch(classes: int) -> dict:
    return {
        "means": [classes, SIZE, SIZE],
        "distance": "mnist_distance(a,b) = (a-b).abs().mean((-1,-2))",
        "rule": "the digit whose mean is nearest by mnist_distance",
        "probs": "(1/d)/sum(1/d) over the L1 distances d to the ten means",
    }


def mnist_distance(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute difference over the last two axes: [..., 28, 28] -> [...]."""
    return (a - b).abs().mean((-1, -2))


def rmse_distance(a: Tensor, b: Tensor) -> Tensor:
    """Root mean squared difference over the last two axes: [..., 28, 28] -> [...]."""
    return ((a - b) ** 2).mean((-1, -2)).sqrt()


def class_means(x: Tensor, y: Tensor, classes: int) -> Tensor:
    """The ideal digit of each label: uint8 [N, 28, 28] and labels [N] -> float [C, 28, 28]
    (MNIST_SAMPLE: means[1] is the book's mean3, means[0] its mean7)."""
    stacked = x.float() / 255
    return torch.stack([stacked[y == j].mean(0) for j in range(classes)])


def distances_to(x: Tensor, means: Tensor, distance=mnist_distance) -> Tensor:
    """Each image's distance to each mean: float [N, 28, 28], [C, 28, 28] -> [N, C].

    One mean at a time, as the chapter broadcasts one ideal digit against the whole stack:
    all ten at once would hold a [N, 10, 28, 28] difference (300 MB for 10,000 digits).
    """
    return torch.stack([distance(x, m) for m in means], dim=1)


def nearest_mean(dist: Tensor) -> Tensor:
    """The label whose mean is nearest: [N, C] -> int64 [N]. On MNIST_SAMPLE, the book's
    `mnist_distance(x, mean3) < mnist_distance(x, mean7)`: a tie goes to label 0, the 7."""
    return dist.argmin(dim=1)


def inverse_distance_probs(dist_l1: Tensor) -> Tensor:
    """Each class's share of the inverse distances, [N, C]: not a calibrated probability, but
    largest for the nearest mean; with two means the 3's is d7/(d3+d7)."""
    inverse = 1 / dist_l1.clamp_min(1e-12)  # a digit equal to a mean: no division by zero
    return inverse / inverse.sum(dim=1, keepdim=True)


def scores(pred: Tensor, y: Tensor, names: Sequence[str], prefix: str = "") -> dict:
    """The accuracies of one distance's answers. The chapter's headline `accuracy` is the
    book's summary figure, the mean of the two classes' accuracies; with more classes it is
    the share of all digits right, as for every other method."""
    out = class_accuracies(pred, y, names)
    if len(names) == 2:
        acc = per_class(pred, y, 2)
        out["accuracy"] = round((acc[1] + acc[0]) / 2, 6)  # (acc3 + acc7) / 2, as the book
    return {f"{prefix}{k}": v for k, v in out.items()}


def classify(sample: MnistSample, names: Sequence[str]) -> dict:
    """Fit the class means on the training set and score the validation set with both
    distances: the means [C, 28, 28], the predictions (`pred`, `probs` as every method's,
    and `pred_rmse`, `dist_l1`, `dist_rmse` [N, C]) and the metrics (6 places)."""
    means = class_means(sample.train_x, sample.train_y, len(names))
    valid = sample.valid_x.float() / 255  # [N, 28, 28]
    y = sample.valid_y.long()
    dist_l1 = distances_to(valid, means, mnist_distance)
    dist_rmse = distances_to(valid, means, rmse_distance)
    pred, pred_rmse = nearest_mean(dist_l1), nearest_mean(dist_rmse)
    metrics = {**scores(pred, y, names), **scores(pred_rmse, y, names, "rmse_")}
    return {
        "means": means,
        "predictions": {"pred": pred, "probs": inverse_distance_probs(dist_l1),
                        "pred_rmse": pred_rmse, "dist_l1": dist_l1, "dist_rmse": dist_rmse},
        "metrics": dict(sorted(metrics.items())),
    }


def checkpoint_state(means: Tensor, layout: Layout) -> dict[str, Tensor]:
    """The chapter's `mean3` and `mean7`, by the book's names; `means` for any other dataset."""
    if layout.binary:
        return {f"mean{c}": means[layout.label[c]] for c in layout.classes}
    return {"means": means}


def stored_means(state: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """A checkpoint's means by label, [C, 28, 28], from either form `checkpoint_state` writes;
    PipelineError if it holds anything else."""
    got = {k: list(v.shape) for k, v in state.items()}
    if got == {"means": [len(names), SIZE, SIZE]}:
        return state["means"].float()
    book = {f"mean{n}": [SIZE, SIZE] for n in names}
    if got == book:
        return torch.stack([state[f"mean{n}"].float() for n in names])
    raise PipelineError(
        f"checkpoint does not fit a pixel_mean model: it holds {got}, a pixel_mean model of "
        f"{len(names)} classes has means of shape [{len(names)}, {SIZE}, {SIZE}]"
        + (f" (or {', '.join(book)} of shape [{SIZE}, {SIZE}])" if len(names) == 2 else ""))


def pixel_mean_result(sample: MnistSample, clock: Clock,
                      dataset: str = "mnist_sample") -> StageResult:
    """Everything the stage writes: the means, the distances, the metrics, one row."""
    layout = DATASETS[dataset]
    fit = Clock()
    out = classify(sample, layout.names)
    card = ({"model": "pixel_mean", "arch": ARCH, "params": {}, "input": INPUT}
            if layout.binary else  # the chapter's card, as it always was: no labels
            {"model": "pixel_mean", "arch": digit_arch(len(layout.classes)), "params": {},
             "input": INPUT, "labels": list(layout.names)})
    seconds = fit.elapsed
    m, per = split_classes(out["metrics"])
    return StageResult(
        state=checkpoint_state(out["means"], layout),
        card=card,
        predictions=out["predictions"],
        metrics=m,
        classes=per,
        # No training loop: one row, with no losses to report.
        history=[{"epoch": 1, "train_loss": "", "valid_loss": "",
                  "valid_accuracy": m["accuracy"]}],
        timing=timing_record(clock, train_seconds=seconds, images=len(sample.train_x),
                             epoch_seconds=[round(seconds, 3)], device="cpu"),
    )


def load_predictor(state: Mapping[str, Tensor], card: Mapping) -> Callable[[Tensor], Tensor]:
    """A classifier from a checkpoint: uint8 [N, 28, 28] -> float [N, C], each class's
    `inverse_distance_probs`, as the stage's `probs`."""
    if card.get("model") != "pixel_mean":
        raise PipelineError(f"pixel_mean.py holds the pixel_mean model, not {card.get('model')!r}")
    means = stored_means(state, card_names(card))

    def predict(x: Tensor) -> Tensor:
        return inverse_distance_probs(distances_to(x.float() / 255, means))

    return predict
