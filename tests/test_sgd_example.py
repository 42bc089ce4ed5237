"""The chapter's worked examples: the SGD roller coaster, gradients, mnist_loss, nn.Linear."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from mnist_basics.chapter.models import BasicOptim, fit, mnist_loss, nn_linear, prepare, torch_sgd
from mnist_basics.chapter.sgd_example import (
    apply_step,
    f,
    gradients,
    mnist_loss_examples,
    mse,
    roller_coaster,
    sgd_example,
)
from mnist_basics.chapter.train import setup
from mnist_basics.data.stack import load_sample
from tests.harness import run_stage, write_params


def test_f_is_the_quadratic_and_mse_takes_the_root():
    t = torch.tensor([0.0, 1.0, 2.0])
    torch.testing.assert_close(f(t, torch.tensor([2.0, -1.0, 3.0])), torch.tensor([3.0, 4.0, 9.0]))
    assert mse(torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0])).item() == pytest.approx(
        (12.5) ** 0.5)


def test_apply_step_is_one_step_of_gradient_descent():
    time, speed = roller_coaster(torch.Generator().manual_seed(0))
    params = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    by_hand = params.detach().clone().requires_grad_()
    mse(f(time, by_hand), speed).backward()
    expected = by_hand.detach() - 1e-5 * by_hand.grad
    _, loss = apply_step(params, time, speed, 1e-5)
    torch.testing.assert_close(params.detach(), expected)
    assert params.grad is None  # cleared for the next step, as the chapter does
    assert loss == pytest.approx(mse(f(time, by_hand.detach()), speed).item())


def test_the_walk_through_lowers_the_loss_at_every_step():
    run = sgd_example(seed=42, lr=1e-5, steps=10)
    assert run["params"].shape == (11, 3) and run["preds"].shape == (11, 20)
    loss = run["loss"].tolist()
    assert len(loss) == 11 and all(b < a for a, b in zip(loss, loss[1:], strict=False))
    # The data is the chapter's: a U around t = 9.5 plus noise of sd 3.
    assert run["speed"].argmin().item() in range(7, 13)
    again = sgd_example(seed=42, lr=1e-5, steps=10)
    assert all(torch.equal(run[k], again[k]) for k in run)  # a seed gives the same walk


def test_gradient_and_loss_examples_are_the_chapters():
    g = gradients()
    assert g["grad"] == [6.0] and g["grads"] == [6.0, 8.0, 20.0]
    losses = [e["loss"] for e in mnist_loss_examples()]
    assert losses == [0.4333, 0.2333]
    # mnist_loss squashes its input: given logits of the toy predictions, it scores them.
    trgts = torch.tensor([1.0, 0.0, 1.0])
    assert mnist_loss(torch.logit(torch.tensor([0.9, 0.4, 0.2])), trgts).item() == pytest.approx(
        torch.where(trgts == 1, 1 - torch.tensor([0.9, 0.4, 0.2]),
                    torch.tensor([0.9, 0.4, 0.2])).mean().item(), abs=1e-6)


def test_stage_writes_the_walk_through(tmp_path):
    params = write_params(tmp_path / "params.yaml", sgd_example={"steps": 4})
    r = run_stage("sgd_example", under=tmp_path / "out", params=params)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    rows = list(csv.DictReader(open(out / "metrics/sgd_example.csv")))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4]
    m = json.loads((out / "metrics/sgd_example.json").read_text())
    assert m["loss_end"] < m["loss_start"] and m["loss_end"] == float(rows[-1]["loss"])


def test_nn_linear_with_basic_optim_or_torch_sgd_ends_with_the_same_parameters(tiny_tensors):
    device = setup(0, "cpu", "nn_linear")
    data = prepare(load_sample(tiny_tensors), device)
    models = []
    for opt_func in (BasicOptim, torch_sgd):
        torch.manual_seed(0)
        model = nn_linear()
        fit(model, data, lr=0.5, epochs=3, batch_size=16, seed=0, opt_func=opt_func)
        models.append(model)
    a, b = (m.state_dict() for m in models)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    torch.manual_seed(0)
    assert not torch.equal(nn_linear().weight, a["weight"])  # they did train


def test_nn_linear_stage(tiny_tensors, tmp_path):
    params = write_params(tmp_path / "params.yaml", linear={"epochs": 2, "batch_size": 16})
    r = run_stage("nn_linear", under=tmp_path / "out", params=params, tensors=tiny_tensors)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "out/metrics/nn_linear.json").read_text())
    assert set(m) == {"basic_optim", "torch_sgd", "largest_parameter_difference"}
    assert m["largest_parameter_difference"] <= 1e-6
    assert m["basic_optim"]["accuracy"] == m["torch_sgd"]["accuracy"] > 0.5
