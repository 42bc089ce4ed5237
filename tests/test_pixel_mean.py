"""The pixel-mean baseline: its distances, its accuracy, and stage `pixel_mean` end to end."""

from __future__ import annotations

import csv
import json
import os
import subprocess

import torch

from mnist_basics.artifacts import load_tensors
from mnist_basics.data.stack import MNIST_SAMPLE, MnistSample, load_sample
from mnist_basics.methods.pixel_mean import (
    class_means,
    classify,
    load_predictor,
    mnist_distance,
    rmse_distance,
    scores,
)
from mnist_basics.pipeline.definition import BY_NAME
from mnist_basics.registry import DATASETS
from tests.harness import ROOT, run_stage

MNIST = DATASETS["mnist"]

NAMES = MNIST_SAMPLE.names  # 7, 3: the classes by label


def test_mean_images_are_the_ideal_digits():
    x = torch.tensor([[[0, 255], [0, 255]], [[255, 255], [255, 255]], [[0, 0], [0, 0]]],
                     dtype=torch.uint8)  # [3, 2, 2]
    y = torch.tensor([1, 1, 0], dtype=torch.uint8)
    mean7, mean3 = class_means(x, y, 2)  # by label: a 7 is 0, a 3 is 1
    assert mean3.dtype == torch.float32 and mean3.shape == (2, 2)
    torch.testing.assert_close(mean3, torch.tensor([[0.5, 1.0], [0.5, 1.0]]))
    torch.testing.assert_close(mean7, torch.zeros(2, 2))


def test_distances_match_the_book_and_broadcast():
    a = torch.zeros(3, 28, 28)
    a[1] = 0.5
    a[2, :14] = 1.0  # half the pixels differ by 1
    ideal = torch.zeros(28, 28)
    torch.testing.assert_close(mnist_distance(a, ideal), torch.tensor([0.0, 0.5, 0.5]))
    torch.testing.assert_close(rmse_distance(a, ideal), torch.tensor([0.0, 0.5, 0.5**0.5]))
    assert mnist_distance(a[0], ideal).shape == ()  # one image -> one number


def test_accuracy_is_the_average_of_the_two_classes():
    # 3 threes (2 right) and 1 seven (right): the book averages 2/3 and 1, not 3/4 overall.
    pred = torch.tensor([1, 1, 0, 0])
    y = torch.tensor([1, 1, 1, 0], dtype=torch.uint8)
    m = scores(pred, y, NAMES)
    assert (m["accuracy_3"], m["accuracy_7"]) == (round(2 / 3, 6), 1.0)
    assert m["accuracy"] == round((2 / 3 + 1) / 2, 6)
    # With ten classes the headline is the share of all digits right, as for every method.
    y10 = torch.tensor([0, 1, 1, 2])
    assert scores(torch.tensor([0, 1, 2, 2]), y10, MNIST.names)["accuracy"] == 0.75


def test_a_tie_is_no_3_as_the_book_has_it():
    """The book's `is_3 = d3 < d7`: a digit as far from both means is a 7 (label 0)."""
    x = torch.zeros(1, 28, 28, dtype=torch.uint8)
    x[0, :, :14] = 255
    three, seven = torch.zeros(28, 28, dtype=torch.uint8), torch.zeros(28, 28, dtype=torch.uint8)
    three[:, :7], seven[:, 7:14] = 255, 255  # each differs from x in 7 columns: a tie
    out = classify(MnistSample(torch.stack([seven, three]), torch.tensor([0, 1]).byte(),
                               x, torch.tensor([1]).byte()), NAMES)
    d = out["predictions"]["dist_l1"][0]
    assert d[0] == d[1] and out["predictions"]["pred"].tolist() == [0]


def test_classify_tiny(tiny_tensors):
    sample = load_sample(tiny_tensors)
    out = classify(sample, NAMES)
    m = out["metrics"]
    assert set(m) == {"accuracy", "accuracy_3", "accuracy_7",
                      "rmse_accuracy", "rmse_accuracy_3", "rmse_accuracy_7"}
    assert m["accuracy"] == 1.0 and m["rmse_accuracy"] == 1.0  # the tiny digits are easy
    p = out["predictions"]
    n = len(sample.valid_y)
    assert p["dist_l1"].shape == p["dist_rmse"].shape == p["probs"].shape == (n, 2)
    assert p["pred"].dtype == p["pred_rmse"].dtype == torch.int64
    # The 3's probability is the chapter's d7/(d3+d7): over 0.5 exactly when nearer the 3.
    d7, d3 = p["dist_l1"].unbind(1)
    torch.testing.assert_close(p["probs"][:, 1], d7 / (d3 + d7))
    assert torch.equal(p["pred"] == 1, d3 < d7)
    torch.testing.assert_close(p["probs"].sum(1), torch.ones(n))


def test_classify_counts_mistakes_per_class():
    # Valid 3s that look like 7s: the baseline gets every 3 wrong and every 7 right.
    three, seven = torch.zeros(28, 28, dtype=torch.uint8), torch.zeros(28, 28, dtype=torch.uint8)
    three[:, :14], seven[:, 14:] = 255, 255
    train_x, train_y = torch.stack([three, seven]), torch.tensor([1, 0], dtype=torch.uint8)
    valid_x, valid_y = torch.stack([seven, seven, seven]), torch.tensor([1, 1, 0]).byte()
    m = classify(MnistSample(train_x, train_y, valid_x, valid_y), NAMES)["metrics"]
    assert (m["accuracy_3"], m["accuracy_7"], m["accuracy"]) == (0.0, 1.0, 0.5)


def test_stage_end_to_end(tiny_tensors, tmp_path):
    outs = []
    for run in ("a", "b"):
        r = run_stage("pixel_mean", under=tmp_path / run, tensors=tiny_tensors)
        assert r.returncode == 0, r.stderr
        outs.append(tmp_path / run)
    a = outs[0]

    state = load_tensors(a / "models/pixel_mean.safetensors")
    assert set(state) == {"mean3", "mean7"}
    assert all(v.dtype == torch.float32 and v.shape == (28, 28) for v in state.values())
    sample = load_sample(tiny_tensors)
    mean7, mean3 = class_means(sample.train_x, sample.train_y, 2)
    assert torch.equal(state["mean3"], mean3) and torch.equal(state["mean7"], mean7)

    # The predictions every method writes (pred, probs), and the distances beside.
    preds = load_tensors(a / "models/pixel_mean_valid.safetensors")
    assert {k: (list(v.shape), v.dtype) for k, v in preds.items()} == {
        "pred": ([48], torch.int64), "pred_rmse": ([48], torch.int64),
        "probs": ([48, 2], torch.float32), "dist_l1": ([48, 2], torch.float32),
        "dist_rmse": ([48, 2], torch.float32)}

    metrics = json.loads((a / "metrics/pixel_mean.json").read_text())
    assert metrics["accuracy"] == 1.0 and "epochs" not in metrics

    card = json.loads((a / "models/pixel_mean.json").read_text())
    assert card["model"] == "pixel_mean" and card["params"] == {}
    assert set(card) == {"model", "arch", "params", "input"}
    # The checkpoint and card alone reproduce the saved predictions.
    torch.testing.assert_close(load_predictor(state, card)(sample.valid_x), preds["probs"])

    rows = list(csv.DictReader((a / "metrics/pixel_mean_history.csv").open()))
    assert len(rows) == 1
    assert list(rows[0]) == ["epoch", "train_loss", "valid_loss", "valid_accuracy"]
    assert rows[0]["epoch"] == "1" and rows[0]["train_loss"] == rows[0]["valid_loss"] == ""
    assert float(rows[0]["valid_accuracy"]) == metrics["accuracy"]

    timing = json.loads((a / "metrics/pixel_mean_timing.json").read_text())
    assert {"seconds", "train_seconds", "images_per_second", "epoch_seconds", "device",
            "threads"} <= set(timing)
    assert timing["device"] == "cpu" and timing["threads"] == 1

    # Reruns write the same bytes (timings live apart).
    for rel in ("models/pixel_mean.safetensors", "models/pixel_mean_valid.safetensors",
                "models/pixel_mean.json", "metrics/pixel_mean.json",
                "metrics/pixel_mean_history.csv"):
        assert (a / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel


def test_stage_help_and_missing_input(tmp_path):
    r = run_stage("pixel_mean", under=tmp_path / "out", tensors=tmp_path / "nope.safetensors")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "nope.safetensors: not found" in r.stderr
    assert not (tmp_path / "out").exists()  # nothing written before the input is read

    h = subprocess.run([*BY_NAME["pixel_mean"].argv(), "--help"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert h.returncode == 0
    assert "--tensors" in h.stdout and "--params" not in h.stdout  # it reads no params
