"""The chapter's baseline: compare each digit with the "ideal" 3 and 7, pixel by pixel.

`mean3` and `mean7` are the mean images of the training 3s and 7s (floats in [0, 1], exactly
`stacked.float()/255` then `.mean(0)` as in the book). A validation digit is a 3 when it is
closer to `mean3` than to `mean7` by the chapter's L1 distance `mnist_distance`; the RMSE
distance is scored too, as the book discusses both. Run it as `python stages/pixel_mean.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from mnist_basics import PipelineError
from mnist_basics.data import SIZE, MnistSample
from mnist_basics.train import Clock, StageResult, batch_accuracy, timing_record

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


def pixel_mean_result(sample: MnistSample, clock: Clock) -> StageResult:
    """Everything the stage writes: the two means, the distances, the metrics, one row."""
    fit = Clock()
    out = classify(sample)
    seconds = fit.elapsed
    m = out["metrics"]
    return StageResult(
        state=out["state"],
        card={"model": "pixel_mean", "arch": ARCH, "params": {}, "input": INPUT},
        predictions={"prob3": out["prob3"], **out["distances"]},
        metrics=m,
        # No training loop: one row, with no losses to report.
        history=[{"epoch": 1, "train_loss": "", "valid_loss": "",
                  "valid_accuracy": m["accuracy"]}],
        timing=timing_record(clock, train_seconds=seconds, images=len(sample.train_x),
                             epoch_seconds=[round(seconds, 3)], device="cpu"),
    )


def load_predictor(state: Mapping[str, Tensor], card: Mapping) -> Callable[[Tensor], Tensor]:
    """A classifier from a checkpoint: uint8 [N, 28, 28] -> float [N], prob3 as above."""
    if card.get("model") != "pixel_mean":
        raise PipelineError(f"pixel_mean.py holds the pixel_mean model, not {card.get('model')!r}")
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
