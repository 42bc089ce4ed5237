"""The four methods on ten digits (the full MNIST): the hand-written softmax loss, and each
method's stage run on a small synthetic ten-digit set, its outputs and its reloaded model.

The chapter's 3-vs-7 path is covered by test_models.py, test_pixel_mean.py and
test_resnet18.py, whose byte-identity tests pin it down.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mnist_basics import PipelineError
from mnist_basics.artifacts import load_tensors, read_json
from mnist_basics.chapter import models
from mnist_basics.chapter.train import Clock, Paths, card_labels, digit_accuracy, save_results
from mnist_basics.data.stack import load_sample
from mnist_basics.methods import pixel_mean, resnet
from mnist_basics.params import DigitsLinear, DigitsMlp, Resnet18, Train

DIGITS = [str(d) for d in range(10)]
N_TRAIN, N_VALID = 200, 100


def make_tiny_digits(path: Path, seed: int = 0) -> Path:
    """A stand-in for data/mnist.safetensors: digit d is a bright 7x7 block at its own place
    on a 4x3 grid, plus noise; 20 training and 10 validation images of each, in label order
    (as the stack stage writes them)."""
    from mnist_basics.artifacts import save_tensors

    g = torch.Generator().manual_seed(seed)
    blocks = torch.zeros(10, 28, 28)
    for d in range(10):
        r, c = divmod(d, 4)
        blocks[d, 2 + 9 * r: 9 + 9 * r, 1 + 7 * c: 8 + 7 * c] = 1.0

    def split(n: int):
        y = torch.arange(10).repeat_interleave(n // 10)
        x = (blocks[y] * 180 + torch.rand(n, 28, 28, generator=g) * 75).clamp(0, 255)
        return x.to(torch.uint8), y.to(torch.uint8)

    tx, ty = split(N_TRAIN)
    vx, vy = split(N_VALID)
    save_tensors(path, {"train_x": tx, "train_y": ty, "valid_x": vx, "valid_y": vy})
    return path


@pytest.fixture
def digits(tmp_path) -> Path:
    return make_tiny_digits(tmp_path / "digits.safetensors")


def paths(out: Path, name: str) -> Paths:
    """The pipeline's layout of one method's outputs, under `out`."""
    models_dir, metrics = out / "models", out / "metrics"
    return Paths(checkpoint=models_dir / f"{name}.safetensors",
                 model_card=models_dir / f"{name}.json",
                 predictions=models_dir / f"{name}_valid.safetensors",
                 metrics=metrics / f"{name}.json", timing=metrics / f"{name}_timing.json",
                 history=metrics / f"{name}_history.csv",
                 classes=metrics / f"{name}_classes.json")


TRAIN = Train(seed=0, device="cpu")
PARAMS = {
    "linear": {"train": TRAIN,
               "linear": DigitsLinear(lr=0.5, batch_size=20, epochs=4, init_std=0.01)},
    "mlp": {"train": TRAIN,
            "mlp": DigitsMlp(lr=0.5, batch_size=20, epochs=4, hidden=16, schedule="cosine")},
    "resnet18": {"train": TRAIN,
                 "resnet18": Resnet18(lr=0.02, epochs=1, batch_size=20, pct_start=0.25,
                                      weight_decay=0.01, max_momentum=0.95, base_momentum=0.85,
                                      channels_last=True, bf16=False)},
}
TRAINERS = {"linear": models.train_linear, "mlp": models.train_mlp,
            "resnet18": resnet.train_resnet18}
PREDICTORS = {"linear": models.load_predictor, "mlp": models.load_predictor,
              "resnet18": resnet.load_predictor, "pixel_mean": pixel_mean.load_predictor}


# -- The loss --------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])  # 1000: exp(x) alone would overflow
def test_cross_entropy_loss_is_torchs(scale):
    g = torch.Generator().manual_seed(int(scale))
    x = (torch.randn(64, 10, generator=g, dtype=torch.float64) * scale).requires_grad_()
    y = torch.randint(0, 10, (64,), generator=g)
    ours = models.cross_entropy_loss(x, y)
    (grad_ours,) = torch.autograd.grad(ours, x)
    theirs = F.cross_entropy(x, y)
    (grad_theirs,) = torch.autograd.grad(theirs, x)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(grad_ours, grad_theirs)
    with torch.no_grad():  # and its two halves, each against torch's own
        torch.testing.assert_close(models.log_softmax(x), F.log_softmax(x, dim=1))
        torch.testing.assert_close(models.nll_loss(F.log_softmax(x, dim=1), y),
                                   F.nll_loss(F.log_softmax(x, dim=1), y))


def test_cross_entropy_loss_in_float32_matches_too():
    torch.manual_seed(1)
    x, y = torch.randn(256, 10, requires_grad=True), torch.randint(0, 10, (256,))
    models.cross_entropy_loss(x, y).backward()
    ours, x.grad = x.grad, None
    F.cross_entropy(x, y).backward()
    torch.testing.assert_close(ours, x.grad)


def test_nll_loss_picks_the_right_digit():
    log_probs = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    loss = models.nll_loss(log_probs, torch.tensor([0, 2]))
    assert loss.item() == pytest.approx(-(math.log(0.7) + math.log(0.8)) / 2)


def test_digit_accuracy():
    xb = torch.tensor([[0.1, 2.0, 0.3], [5.0, 1.0, 0.0], [0.0, 0.0, 1.0], [3.0, 4.0, 0.0]])
    assert digit_accuracy(xb, torch.tensor([1, 0, 2, 0])).item() == 0.75


# -- The models ------------------------------------------------------------------------------
def test_ten_output_models_and_the_chapter_ones_draw_alike():
    torch.manual_seed(5)
    ten = models.Linear1(std=0.01, outputs=10)
    assert ten.weights.shape == (784, 10) and ten.bias.shape == (10,)
    assert 0.008 < ten.weights.std().item() < 0.012
    torch.manual_seed(5)
    one = models.Linear1(outputs=1)
    torch.manual_seed(5)
    chapter = models.Linear1()
    assert torch.equal(one.weights, chapter.weights) and torch.equal(one.bias, chapter.bias)
    net = models.simple_net(30, 10)
    assert net(torch.rand(3, 784)).shape == (3, 10)
    assert resnet.resnet18(classes=10).fc.weight.shape == (10, 512)


def test_cosine_schedule_sets_basic_optims_lr():
    opt = models.BasicOptim([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched = models.CosineSchedule(opt, 0.5, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        assert opt.lr == lrs[-1]
        sched.step()
    assert lrs[0] == 0.5 and lrs[5] == pytest.approx(0.25)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False)) and lrs[-1] > 0
    assert opt.lr == pytest.approx(0.0, abs=1e-12)  # after the last step: 0


def test_cosine_mlp_steps_follow_the_schedule(digits):
    data = models.prepare(load_sample(digits), torch.device("cpu"), binary=False)
    torch.manual_seed(0)
    run = models.fit(models.simple_net(8, 10), data, lr=0.4, epochs=2, batch_size=30, seed=0,
                     schedule="cosine")
    steps = 2 * math.ceil(N_TRAIN / 30)  # the last batch of each epoch is short, not dropped
    assert [s["step"] for s in run.steps] == list(range(1, steps + 1))
    assert run.steps[0]["lr"] == 0.4
    assert run.steps[-1]["lr"] == round(0.4 * (1 + math.cos(math.pi * (steps - 1) / steps)) / 2,
                                        8)


# -- Each method's stage on ten digits --------------------------------------------------------
@pytest.mark.parametrize("name", ["linear", "mlp", "resnet18"])
def test_trained_method_on_ten_digits(name, digits, tmp_path):
    result = TRAINERS[name](PARAMS[name], digits, dataset="mnist")
    sample = load_sample(digits)
    y = sample.valid_y.long()

    # The same few metrics as on 3s and 7s; each digit's accuracy apart.
    assert list(result.metrics) == ["accuracy", "epochs", "train_loss", "valid_loss"]
    assert list(result.classes) == [f"accuracy_{d}" for d in range(10)]
    m = {**result.metrics, **result.classes}
    pred, probs = result.predictions["pred"], result.predictions["probs"]
    assert set(result.predictions) == {"pred", "probs"}
    assert pred.shape == (N_VALID,) and pred.dtype == torch.int64
    assert probs.shape == (N_VALID, 10) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(1), torch.ones(N_VALID))
    assert torch.equal(probs.argmax(1), pred)
    assert m["accuracy"] == round((pred == y).float().mean().item(), 6)
    assert m["accuracy_4"] == round((pred[y == 4] == 4).float().mean().item(), 6)
    assert result.history[-1]["valid_accuracy"] == m["accuracy"]
    assert list(result.history[0]) == ["epoch", "train_loss", "valid_loss", "valid_accuracy"]
    if name != "resnet18":  # one short epoch is too little for a resnet from scratch
        assert m["accuracy"] == 1.0

    card = result.card
    assert card["model"] == name and card["labels"] == DIGITS
    assert set(card["params"]) == {"train", name}
    if name == "linear":
        assert {k: v.shape for k, v in result.state.items()} == {"weights": (784, 10),
                                                                 "bias": (10,)}
    elif name == "mlp":
        assert result.state["2.weight"].shape == (10, 16)
    else:
        assert result.state["fc.weight"].shape == (10, 512)
        assert card["arch"]["num_classes"] == 10

    # Written, read back with no pickle, and reloaded: the stage's very predictions.
    out = paths(tmp_path, name)
    save_results(out, result)
    assert {**read_json(out.metrics), **read_json(out.classes)} == m
    saved = load_tensors(out.predictions)
    assert torch.equal(saved["pred"], pred) and torch.equal(saved["probs"], probs)
    predict = PREDICTORS[name](load_tensors(out.checkpoint), read_json(out.model_card))
    torch.testing.assert_close(predict(sample.valid_x), probs)


def test_pixel_mean_on_ten_digits(digits, tmp_path):
    sample = load_sample(digits)
    result = pixel_mean.pixel_mean_result(sample, Clock(), dataset="mnist")
    x, y = sample.train_x.float() / 255, sample.train_y
    means = result.state["means"]
    assert set(result.state) == {"means"} and means.shape == (10, 28, 28)
    for d in (0, 7):
        torch.testing.assert_close(means[d], x[y == d].mean(0))

    p = result.predictions
    assert set(p) == {"pred", "probs", "pred_rmse", "dist_l1", "dist_rmse"}
    valid = sample.valid_x.float() / 255
    l1 = (valid[:, None] - means[None]).abs().mean((-1, -2))  # all ten at once, [N, 10]
    rmse = ((valid[:, None] - means[None]) ** 2).mean((-1, -2)).sqrt()
    torch.testing.assert_close(p["dist_l1"], l1)
    torch.testing.assert_close(p["dist_rmse"], rmse)
    assert torch.equal(p["pred"], l1.argmin(1)) and torch.equal(p["pred_rmse"], rmse.argmin(1))
    assert p["pred"].dtype == torch.int64

    assert list(result.metrics) == ["accuracy", "rmse_accuracy"]
    assert list(result.classes) == sorted(f"{k}_{d}" for k in ("accuracy", "rmse_accuracy")
                                          for d in range(10))
    m = {**result.metrics, **result.classes}
    assert m["accuracy"] == m["rmse_accuracy"] == 1.0  # the blocks are far apart
    assert result.history == [{"epoch": 1, "train_loss": "", "valid_loss": "",
                               "valid_accuracy": 1.0}]
    assert result.card["labels"] == DIGITS and result.card["arch"]["means"] == [10, 28, 28]

    out = paths(tmp_path, "pixel_mean")
    save_results(out, result)
    assert {**read_json(out.metrics), **read_json(out.classes)} == m
    predict = pixel_mean.load_predictor(load_tensors(out.checkpoint), read_json(out.model_card))
    probs = predict(sample.valid_x)
    assert probs.shape == (N_VALID, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(N_VALID))
    assert torch.equal(probs.argmax(1), p["pred"])  # the nearest mean is the most likely
    inverse = 1 / p["dist_l1"]
    torch.testing.assert_close(probs, inverse / inverse.sum(1, keepdim=True))


def test_pixel_mean_probs_with_two_means_is_the_chapters_prob3():
    d3, d7 = torch.tensor([0.1, 0.3, 0.2]), torch.tensor([0.2, 0.1, 0.2])
    two = pixel_mean.inverse_distance_probs(torch.stack([d7, d3], dim=1))  # by label: 7, 3
    torch.testing.assert_close(two[:, 1], d7 / (d3 + d7))


# -- Reloading refuses what does not fit -------------------------------------------------------
def test_a_ten_digit_card_refuses_a_chapter_checkpoint():
    card = {"model": "linear", "labels": DIGITS}
    chapter = models.Linear1().state_dict()
    with pytest.raises(PipelineError, match=r"weights has shape \[784, 1\], expected \[784, 10\]"):
        models.load_predictor(chapter, card)
    with pytest.raises(PipelineError, match="a pixel_mean model of 10 classes has means"):
        pixel_mean.load_predictor({"mean3": torch.zeros(28, 28), "mean7": torch.zeros(28, 28)},
                                  {"model": "pixel_mean", "labels": DIGITS})
    with pytest.raises(PipelineError, match="checkpoint does not fit a resnet18 model"):
        resnet.load_predictor(resnet.resnet18().state_dict(),
                              {"model": "resnet18", "labels": DIGITS,
                               "input": {"mean": 0.1, "std": 0.3}})


@pytest.mark.parametrize("labels", ["0123456789", ["0"], [0, 1], []])
def test_bad_labels_in_a_card_are_one_clear_error(labels):
    with pytest.raises(PipelineError, match="mlp model card: labels must be a list"):
        card_labels({"model": "mlp", "labels": labels})
    assert card_labels({"model": "mlp"}) is None  # a chapter card
