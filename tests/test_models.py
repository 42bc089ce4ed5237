"""The chapter's trained models: mnist_loss, BasicOptim, and stages `linear` and `mlp`."""

from __future__ import annotations

import csv
import json
import os
import subprocess

import pytest
import torch
import yaml

from mnist_basics.artifacts import load_tensors
from mnist_basics.chapter.models import (
    BasicOptim,
    Linear1,
    fit,
    load_predictor,
    mnist_loss,
    prepare,
    simple_net,
)
from mnist_basics.chapter.train import batch_accuracy, setup
from mnist_basics.data.stack import load_sample
from mnist_basics.pipeline.definition import BY_NAME
from tests.harness import ROOT, run_stage, write_params

COMMITTED = yaml.safe_load((ROOT / "params.yaml").read_text())
TRAINED = ("linear", "mlp")


TINY = {"train": {"device": "cpu", "seed": 7},
        "linear": {"epochs": 3, "batch_size": 32},
        "mlp": {"epochs": 3, "batch_size": 32, "hidden": 8}}


# -- The pieces ------------------------------------------------------------------------------
def test_basic_optim_matches_torch_sgd():
    torch.manual_seed(0)
    x, y = torch.rand(64, 784), (torch.rand(64, 1) > 0.5).float()
    ours, theirs = simple_net(5), simple_net(5)
    theirs.load_state_dict(ours.state_dict())
    opt_ours = BasicOptim(ours.parameters(), lr=0.5)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=0.5, momentum=0)
    for step in range(5):
        xb, yb = x[step * 12:(step + 1) * 12], y[step * 12:(step + 1) * 12]
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            mnist_loss(model(xb), yb).backward()
            opt.step()
            opt.zero_grad()
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert not torch.equal(ours[0].weight, simple_net(5)[0].weight)  # it did move
    assert all(p.grad is None for p in ours.parameters())  # zero_grad sets None, as in the book


def test_mnist_loss_gradient_is_the_analytic_one():
    z = torch.tensor([[-2.0], [-0.3], [0.0], [0.7], [3.0], [1.5]], requires_grad=True)
    t = torch.tensor([[1.0], [0.0], [1.0], [1.0], [0.0], [0.0]])
    mnist_loss(z, t).backward()
    s = torch.sigmoid(z.detach())
    # d/dz of mean(1 - sigma(z)) for a 3 and of mean(sigma(z)) for a 7.
    expected = s * (1 - s) * torch.where(t == 1, -1.0, 1.0) / len(z)
    torch.testing.assert_close(z.grad, expected)
    with torch.no_grad():  # and its value: the mean distance of sigma(z) from the target
        torch.testing.assert_close(mnist_loss(z, t), (s - t).abs().mean())


def test_linear1_is_the_chapter_model():
    torch.manual_seed(3)
    a = Linear1()
    torch.manual_seed(3)
    b = Linear1()
    assert a.weights.shape == (784, 1) and a.bias.shape == (1,)
    assert a.weights.requires_grad and a.weights.is_leaf
    assert torch.equal(a.weights, b.weights) and torch.equal(a.bias, b.bias)  # seeded randn
    assert 0.8 < a.weights.std().item() < 1.2  # torch.randn, std 1
    xb = torch.rand(5, 784)
    torch.testing.assert_close(a(xb), xb @ a.weights + a.bias)
    assert a(xb).shape == (5, 1)


@pytest.mark.parametrize("name", TRAINED)
def test_fit_learns_tiny_data(name, tiny_tensors):
    device = setup(0, "cpu", "mlp")
    data = prepare(load_sample(tiny_tensors), device)
    # A small start: with std 1, 96 images are too few to leave sigmoid's flat tails.
    model = Linear1(std=0.01) if name == "linear" else simple_net(8)
    run = fit(model, data, lr=1.0 if name == "linear" else 0.5, epochs=4, batch_size=16, seed=0)
    assert [r["epoch"] for r in run.history] == [1, 2, 3, 4]
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]
    assert run.history[-1]["valid_accuracy"] == 1.0
    last = run.last  # the last epoch's validation, on the CPU
    assert last.preds.shape == last.pred.shape == (48,) and last.probs.shape == (48, 2)
    assert last.probs.dtype == torch.float32 and last.probs.device.type == "cpu"
    # probs by label (7, 3): the 3's is the sigmoid of the output, the 7's the rest
    torch.testing.assert_close(last.probs[:, 1], last.preds.sigmoid())
    torch.testing.assert_close(last.probs.sum(1), torch.ones(48))
    assert torch.equal(last.pred, (last.preds.sigmoid() > 0.5).long())
    valid_y = data.valid_y.squeeze(1)
    assert batch_accuracy(last.preds, valid_y).item() == run.history[-1]["valid_accuracy"]


def test_shuffling_follows_the_seed(tiny_tensors):
    data = prepare(load_sample(tiny_tensors), setup(0, "cpu", "mlp"))

    def weights_after(seed: int) -> torch.Tensor:
        torch.manual_seed(0)  # the same start, so only the batch order differs
        model = simple_net(8)
        fit(model, data, lr=0.5, epochs=1, batch_size=16, seed=seed)
        return model[0].weight.detach()

    assert torch.equal(weights_after(1), weights_after(1))
    assert not torch.equal(weights_after(1), weights_after(2))


# -- The stages ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TRAINED)
def test_stage_end_to_end_and_byte_identical(name, tiny_tensors, tmp_path):
    params = write_params(tmp_path / "params.yaml", **TINY)
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        r = run_stage(name, under=out, params=params, tensors=tiny_tensors)
        assert r.returncode == 0, r.stderr
    a = runs[0]
    assert "epoch 3/3: train_loss" in r.stderr  # one log line per epoch

    metrics = json.loads((a / f"metrics/{name}.json").read_text())
    assert list(metrics) == ["accuracy", "epochs", "train_loss", "valid_loss"]
    per_class = json.loads((a / f"metrics/{name}_classes.json").read_text())
    assert list(per_class) == ["accuracy_3", "accuracy_7"]
    assert metrics["epochs"] == 3

    rows = list(csv.DictReader((a / f"metrics/{name}_history.csv").open()))
    assert list(rows[0]) == ["epoch", "train_loss", "valid_loss", "valid_accuracy"]
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert float(rows[-1]["valid_loss"]) == metrics["valid_loss"]

    timing = json.loads((a / f"metrics/{name}_timing.json").read_text())
    assert len(timing["epoch_seconds"]) == 3 and timing["device"] == "cpu"
    assert timing["threads"] == 1
    # 3 epochs of the 96 tiny training images, to the 3 decimals train_seconds is kept to:
    ips = timing["images_per_second"]
    assert ips * timing["train_seconds"] == pytest.approx(3 * 96, abs=ips * 5e-4 + 0.5)
    assert timing["seconds"] >= timing["train_seconds"] > 0

    card = json.loads((a / f"models/{name}.json").read_text())
    assert card["model"] == name
    assert card["params"] == {"train": {**COMMITTED["train"], **TINY["train"]},
                              name: {**COMMITTED[name], **TINY[name]}}
    state = load_tensors(a / f"models/{name}.safetensors")
    preds = load_tensors(a / f"models/{name}_valid.safetensors")
    assert {k: (list(v.shape), v.dtype) for k, v in preds.items()} == {
        "pred": ([48], torch.int64), "probs": ([48, 2], torch.float32)}
    valid_y = load_sample(tiny_tensors).valid_y
    assert metrics["accuracy"] == round((preds["pred"] == valid_y).float().mean().item(), 6)
    assert torch.equal(preds["pred"], (preds["probs"][:, 1] > 0.5).long())
    if name == "mlp":
        assert metrics["accuracy"] == 1.0  # (std-1 linear1 needs more than 96 images)
    # Reloaded with no pickle, the checkpoint gives back the saved predictions.
    valid_x = load_sample(tiny_tensors).valid_x
    torch.testing.assert_close(load_predictor(state, card)(valid_x), preds["probs"])

    for rel in (f"models/{name}.safetensors", f"models/{name}_valid.safetensors",
                f"models/{name}.json", f"metrics/{name}.json", f"metrics/{name}_history.csv"):
        assert (a / rel).read_bytes() == (runs[1] / rel).read_bytes(), rel


def test_cuda_without_a_gpu_is_a_clear_error(tiny_tensors, tmp_path):
    params = write_params(tmp_path / "params.yaml", **{**TINY, "train": {"device": "cuda"}})
    r = run_stage("mlp", under=tmp_path / "out", params=params, tensors=tiny_tensors,
                  env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: train.device: 'cuda' was asked for but no CUDA device is available; "
        "set train.device to 'auto' or 'cpu' in params.yaml"
    ]
    assert not (tmp_path / "out").exists()


def test_bad_params_fail_before_any_output(tiny_tensors, tmp_path):
    params = write_params(tmp_path / "params.yaml", linear={"lr": -1.0})
    r = run_stage("linear", under=tmp_path / "out", params=params, tensors=tiny_tensors)
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: {params}: linear.lr: must be greater than 0 (got -1.0)"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", TRAINED)
def test_stage_help(name):
    r = subprocess.run([*BY_NAME[name].argv(), "--help"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0
    assert f"sections train, {name}" in r.stdout
    assert "--checkpoint PATH" in r.stdout and "dvc.yaml" in r.stdout  # where its command is
