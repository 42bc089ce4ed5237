"""The chapter's baseline: compare each digit with the "ideal" 3 and 7, pixel by pixel.

`mean3` and `mean7` are the mean images of the training 3s and 7s (floats in [0, 1], exactly
`stacked.float()/255` then `.mean(0)` as in the book). A validation digit is a 3 when it is
closer to `mean3` than to `mean7` by the chapter's L1 distance `mnist_distance`; the RMSE
distance is scored too, as the book discusses both. Run it as `python stages/pixel_mean.py`.

On the full MNIST the same idea takes ten means, one per digit (`digit_means`), and a digit
is the one whose mean is nearest (`nearest_mean`), by L1 and by RMSE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from mnist_basics import PipelineError
from mnist_basics.data import LAYOUTS, SIZE, MnistSample
from mnist_basics.train import (
    Clock,
    StageResult,
    batch_accuracy,
    card_labels,
    digit_accuracies,
    timing_record,
)

INPUT = {
    "shape": [SIZE, SIZE],
    "dtype": "uint8",
    "digit": "light on dark, as in MNIST",
    "prepare": "x.float()/255",
}
ARCH = {
    "mean3": [SIZE, SIZE],
    "mean7": [SIZE, SIZE],
    "distance": "mnist_distance(a,b) = (a-b).abs().mean((-1,-2))",
    "rule": "a 3 when mnist_distance(x, mean3) < mnist_distance(x, mean7)",
    "prob3": "d7/(d3+d7) with the L1 distances",
}


def mean_images(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The ideal 3 and 7: uint8 [N, 28, 28] and labels [N] -> two float [28, 28]."""
    stacked = x.float() / 255
    return stacked[y == 1].mean(0), stacked[y == 0].mean(0)


def mnist_distance(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute difference over the last two axes: [..., 28, 28] -> [...]."""
    return (a - b).abs().mean((-1, -2))


def rmse_distance(a: Tensor, b: Tensor) -> Tensor:
    """Root mean squared difference over the last two axes: [..., 28, 28] -> [...]."""
    return ((a - b) ** 2).mean((-1, -2)).sqrt()


def class_accuracies(is_3_margin: Tensor, y: Tensor) -> tuple[float, float, float]:
    """Accuracy on the 3s, on the 7s, and their average (the book's summary figure).

    `is_3_margin` is d7 - d3, positive where the digit is nearer the ideal 3: the book's
    `is_3` is `batch_accuracy`'s sigmoid(margin) > 0.5.
    """
    threes = y == 1
    acc3 = batch_accuracy(is_3_margin[threes], y[threes]).item()
    acc7 = batch_accuracy(is_3_margin[~threes], y[~threes]).item()
    return acc3, acc7, (acc3 + acc7) / 2


def prob3_from(d3: Tensor, d7: Tensor) -> Tensor:
    # Not a calibrated probability: the share of the total distance lying on the 7 side.
    # It is > 0.5 exactly when the digit is nearer the ideal 3, like the other models' prob3.
    return d7 / (d3 + d7).clamp_min(torch.finfo(d3.dtype).tiny)


def classify(sample: MnistSample) -> dict:
    """Fit the two means on the training set and score the validation set with both distances.

    Returns the mean images, the validation distances (float [N_valid] each), prob3 and the
    metrics (6 places, as every stage writes them).
    """
    mean3, mean7 = mean_images(sample.train_x, sample.train_y)
    valid = sample.valid_x.float() / 255  # [N, 28, 28]
    y = sample.valid_y
    dist = {
        "l1_3": mnist_distance(valid, mean3), "l1_7": mnist_distance(valid, mean7),  # [N]
        "rmse_3": rmse_distance(valid, mean3), "rmse_7": rmse_distance(valid, mean7),
    }
    l1 = class_accuracies(dist["l1_7"] - dist["l1_3"], y)
    rmse = class_accuracies(dist["rmse_7"] - dist["rmse_3"], y)
    metrics = {
        "accuracy": l1[2], "accuracy_3": l1[0], "accuracy_7": l1[1],
        "rmse_accuracy": rmse[2], "rmse_accuracy_3": rmse[0], "rmse_accuracy_7": rmse[1],
    }
    return {
        "state": {"mean3": mean3, "mean7": mean7},
        "distances": dist,
        "prob3": prob3_from(dist["l1_3"], dist["l1_7"]),
        "metrics": {k: round(v, 6) for k, v in sorted(metrics.items())},
    }


# -- Ten digits ------------------------------------------------------------------------------
def digit_arch(classes: int) -> dict:
    return {
        "means": [classes, SIZE, SIZE],
        "distance": "mnist_distance(a,b) = (a-b).abs().mean((-1,-2))",
        "rule": "the digit whose mean is nearest by mnist_distance",
        "probs": "(1/d)/sum(1/d) over the L1 distances d to the ten means",
    }


def digit_means(x: Tensor, y: Tensor, classes: int = 10) -> Tensor:
    """The ideal 0 ... 9: uint8 [N, 28, 28] and digits [N] -> float [10, 28, 28]."""
    stacked = x.float() / 255
    return torch.stack([stacked[y == d].mean(0) for d in range(classes)])


def distances_to(x: Tensor, means: Tensor, distance=mnist_distance) -> Tensor:
    """Each image's distance to each mean: float [N, 28, 28], [10, 28, 28] -> [N, 10].

    One mean at a time, as the chapter broadcasts one ideal digit against the whole stack:
    all ten at once would hold a [N, 10, 28, 28] difference (300 MB for 10,000 digits).
    """
    return torch.stack([distance(x, m) for m in means], dim=1)


def nearest_mean(dist: Tensor) -> Tensor:
    """The digit whose mean is nearest: [N, 10] -> int64 [N]."""
    return dist.argmin(dim=1)


def digit_probs(dist_l1: Tensor) -> Tensor:
    """Each digit's share of the inverse distances, [N, 10]: not a calibrated probability, but
    largest for the nearest mean; with two means it is the chapter's prob3, d7/(d3+d7)."""
    inverse = 1 / dist_l1.clamp_min(1e-12)  # a digit equal to a mean: no division by zero
    return inverse / inverse.sum(dim=1, keepdim=True)


def classify_digits(sample: MnistSample, classes: int = 10) -> dict:
    """`classify` for ten digits: the ten means, each validation digit's distances [N, 10] and
    nearest mean by L1 (`pred`) and by RMSE (`pred_rmse`), and the metrics."""
    means = digit_means(sample.train_x, sample.train_y, classes)
    valid = sample.valid_x.float() / 255  # [N, 28, 28]
    y = sample.valid_y.long()
    dist_l1 = distances_to(valid, means, mnist_distance)
    dist_rmse = distances_to(valid, means, rmse_distance)
    pred, pred_rmse = nearest_mean(dist_l1), nearest_mean(dist_rmse)
    metrics = {**digit_accuracies(pred, y, classes),
               **{f"rmse_{k}": v for k, v in digit_accuracies(pred_rmse, y, classes).items()}}
    return {
        "state": {"means": means},
        "predictions": {"pred": pred, "pred_rmse": pred_rmse,
                        "dist_l1": dist_l1, "dist_rmse": dist_rmse},
        "metrics": dict(sorted(metrics.items())),
    }


def pixel_mean_result(sample: MnistSample, clock: Clock,
                      dataset: str = "mnist_sample") -> StageResult:
    """Everything the stage writes: the means, the distances, the metrics, one row."""
    layout = LAYOUTS[dataset]
    fit = Clock()
    if layout.binary:
        out = classify(sample)
        card = {"model": "pixel_mean", "arch": ARCH, "params": {}, "input": INPUT}
        predictions = {"prob3": out["prob3"], **out["distances"]}
    else:
        out = classify_digits(sample, len(layout.classes))
        card = {"model": "pixel_mean", "arch": digit_arch(len(layout.classes)), "params": {},
                "input": INPUT, "labels": list(layout.classes)}
        predictions = out["predictions"]
    seconds = fit.elapsed
    m = out["metrics"]
    return StageResult(
        state=out["state"],
        card=card,
        predictions=predictions,
        metrics=m,
        # No training loop: one row, with no losses to report.
        history=[{"epoch": 1, "train_loss": "", "valid_loss": "",
                  "valid_accuracy": m["accuracy"]}],
        timing=timing_record(clock, train_seconds=seconds, images=len(sample.train_x),
                             epoch_seconds=[round(seconds, 3)], device="cpu"),
    )


def load_predictor(state: Mapping[str, Tensor], card: Mapping) -> Callable[[Tensor], Tensor]:
    """A classifier from a checkpoint: uint8 [N, 28, 28] -> float [N], prob3 as above; with a
    ten-digit card (it has `labels`) -> float [N, 10], `digit_probs` of the L1 distances."""
    if card.get("model") != "pixel_mean":
        raise PipelineError(f"pixel_mean.py holds the pixel_mean model, not {card.get('model')!r}")
    labels = card_labels(card)
    if labels is not None:
        return _digit_predictor(state, len(labels))
    got = {k: list(v.shape) for k, v in state.items()}
    if got != {"mean3": [SIZE, SIZE], "mean7": [SIZE, SIZE]}:
        raise PipelineError(
            f"checkpoint does not fit a pixel_mean model: it holds {got}, "
            f"a pixel_mean model has mean3 and mean7 of shape [{SIZE}, {SIZE}]"
        )
    mean3, mean7 = state["mean3"].float(), state["mean7"].float()

    def predict(x: Tensor) -> Tensor:
        x = x.float() / 255
        return prob3_from(mnist_distance(x, mean3), mnist_distance(x, mean7))

    return predict


def _digit_predictor(state: Mapping[str, Tensor], classes: int) -> Callable[[Tensor], Tensor]:
    got = {k: list(v.shape) for k, v in state.items()}
    if got != {"means": [classes, SIZE, SIZE]}:
        raise PipelineError(
            f"checkpoint does not fit a pixel_mean model: it holds {got}, "
            f"a {classes}-digit pixel_mean model has means of shape [{classes}, {SIZE}, {SIZE}]"
        )
    means = state["means"].float()

    def predict(x: Tensor) -> Tensor:
        return digit_probs(distances_to(x.float() / 255, means))

    return predict
