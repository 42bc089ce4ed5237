"""The chapter's trained models and the loop that trains them: `linear1` and `simple_net`.

Everything follows fastbook chapter 4 line by line, so a learner can hold the book beside it:
- `init_params`, `linear1` (`xb@weights + bias`) and `simple_net` (784-30-ReLU-1);
- `mnist_loss`: sigmoid, then `torch.where(targets==1, 1-predictions, predictions).mean()`;
- `BasicOptim`: the hand-written SGD step (`p.data -= p.grad.data * lr`);
- `nn_linear` and `torch_sgd`: the chapter's next steps, PyTorch's own pieces in their place;
- `fit`: `BasicOptim` and `mnist_loss` plugged into the chapter's loop (`train_epoch`,
  `validate_epoch`, `train_model` in mnist_basics/chapter/train.py).

On the full MNIST's ten digits (the chapter's "further research") the same pieces get ten
outputs, and the loss is the one the book takes up in its next chapter, written by hand here:
- `Linear1(outputs=10)`: weights [784, 10] and bias [10]; `simple_net(hidden, 10)`;
- `log_softmax` (by the log-sum-exp trick), `nll_loss`, and
  `cross_entropy_loss = nll_loss(log_softmax(x), y)`, which is `F.cross_entropy`;
- `CosineSchedule`: BasicOptim's lr along a cosine down to 0 (params `mnist.mlp.schedule`).

The stages `stages/linear.py` and `stages/mlp.py` call these; `load_predictor` turns a saved
checkpoint back into a classifier for `python -m mnist_basics predict`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mnist_basics import PipelineError
from mnist_basics.chapter.train import (
    Clock,
    Fit,
    StageResult,
    Validation,
    batch_accuracy,
    binary_pred,
    binary_probs,
    card_labels,
    digit_accuracy,
    model_card,
    setup,
    shuffled_batches,
    train_epoch,
    train_model,
    trained_result,
)
from mnist_basics.data.stack import SIZE, MnistSample, load_sample
from mnist_basics.registry import DATASETS

log = logging.getLogger("mnist_basics")

PIXELS = SIZE * SIZE  # 784
# How every model here sees an image; written into each model card.
INPUT = {
    "shape": [SIZE, SIZE],
    "dtype": "uint8",
    "digit": "light on dark, as in MNIST",
    "prepare": "x.float()/255, viewed as [N, 784]",
}


# -- Data ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prepared:
    """The sample as the models read it, on the device, built once before training."""

    train_x: Tensor  # float [N, 784] in [0, 1]
    train_y: Tensor  # float [N, 1]: 1 for a 3, 0 for a 7; or int64 [N], the digit
    valid_x: Tensor
    valid_y: Tensor
    binary: bool = True  # the chapter's 3s and 7s (one output), not ten digits

    @property
    def labels(self) -> Tensor:
        """valid_y as [N], what the accuracies compare with."""
        return self.valid_y.squeeze(1) if self.binary else self.valid_y


def flatten(x: Tensor) -> Tensor:
    """uint8 [N, 28, 28] -> float [N, 784] in [0, 1], the chapter's `.float()/255` and `view`."""
    return x.float().div(255).view(-1, PIXELS)


def prepare(sample: MnistSample, device: torch.device, binary: bool = True) -> Prepared:
    def y(t: Tensor) -> Tensor:
        if not binary:
            return t.long().to(device)  # [N]: class indices, as nll_loss picks by them
        return t.float().unsqueeze(1).to(device)  # [N] -> [N, 1], like the book's targets

    return Prepared(
        flatten(sample.train_x).to(device), y(sample.train_y),
        flatten(sample.valid_x).to(device), y(sample.valid_y), binary,
    )


# -- Models ----------------------------------------------------------------------------------
def init_params(size, std: float = 1.0) -> Tensor:
    """The book's `init_params`: standard normal values that autograd tracks."""
    return (torch.randn(size) * std).requires_grad_()


class Linear1:
    """The chapter's `linear1(xb) = xb@weights + bias`: weights [784, 1] and bias [1] are
    plain tensors from `init_params`, as in the book; ten digits take [784, 10] and [10]."""

    def __init__(self, device: torch.device | str = "cpu", std: float = 1.0, outputs: int = 1):
        # Drawn on the CPU, then moved (still leaves), so a seed gives the same start anywhere.
        self.weights = init_params((PIXELS, outputs), std).detach().to(device).requires_grad_()
        self.bias = init_params(outputs, std).detach().to(device).requires_grad_()

    def __call__(self, xb: Tensor) -> Tensor:
        return xb @ self.weights + self.bias  # [N, 784] -> [N, outputs]

    def parameters(self) -> list[Tensor]:
        return [self.weights, self.bias]

    def state_dict(self) -> dict[str, Tensor]:
        return {"weights": self.weights.detach(), "bias": self.bias.detach()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        with torch.no_grad():
            self.weights.copy_(state["weights"])
            self.bias.copy_(state["bias"])


def nn_linear() -> nn.Linear:
    """The chapter's next step: `linear1` as PyTorch's `nn.Linear(28*28, 1)`."""
    return nn.Linear(PIXELS, 1)


def torch_sgd(params, lr: float) -> torch.optim.SGD:
    """PyTorch's SGD, in place of `BasicOptim`: with no momentum, the same step."""
    return torch.optim.SGD(params, lr=lr)


def simple_net(hidden: int = 30, outputs: int = 1) -> nn.Sequential:
    """The chapter's two-layer net: 784 -> hidden -> ReLU -> 1 (or 10, one per digit)."""
    return nn.Sequential(nn.Linear(PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


def mnist_loss(predictions: Tensor, targets: Tensor) -> Tensor:
    """How far each prediction is from its target, after squashing it into (0, 1)."""
    predictions = predictions.sigmoid()
    return torch.where(targets == 1, 1 - predictions, predictions).mean()


def log_softmax(x: Tensor) -> Tensor:
    """log(softmax(x)) over the last axis, [N, 10] -> [N, 10]: `x - log(sum(exp(x)))`.

    exp overflows for large activations, so the book's log-sum-exp trick takes the largest
    out first: log(sum(exp(x))) = m + log(sum(exp(x - m))), every exp then at most 1.
    """
    m = x.max(dim=-1, keepdim=True).values
    return x - (m + (x - m).exp().sum(dim=-1, keepdim=True).log())


def nll_loss(log_probs: Tensor, targets: Tensor) -> Tensor:
    """The mean over the batch of -log p of each image's own digit (targets: int64 [N])."""
    return -log_probs[torch.arange(len(targets), device=targets.device), targets].mean()


def cross_entropy_loss(predictions: Tensor, targets: Tensor) -> Tensor:
    """`mnist_loss` for ten digits: softmax then -log of the right one, as `F.cross_entropy`.

    The log matters: going from p 0.99 to 0.999 is ten times more confident, and mnist_loss
    (1 - p) would barely see it; nor does its gradient vanish on a confident wrong answer.
    """
    return nll_loss(log_softmax(predictions), targets)


class BasicOptim:
    """The book's hand-written optimizer: plain SGD with no momentum."""

    def __init__(self, params, lr: float):
        self.params, self.lr = list(params), lr

    def step(self, *args, **kwargs) -> None:
        for p in self.params:
            p.data -= p.grad.data * self.lr

    def zero_grad(self, *args, **kwargs) -> None:
        for p in self.params:
            p.grad = None


class CosineSchedule:
    """BasicOptim's learning rate from `lr` down to 0 along half a cosine over `total_steps`.

    Big steps early cross the loss surface quickly, small ones at the end settle into a
    minimum instead of bouncing around it. It has the two methods `train_epoch` calls on a
    torch scheduler: `get_last_lr()` (the lr of the step just taken) and `step()`.
    """

    def __init__(self, opt: BasicOptim, lr: float, total_steps: int):
        self.opt, self.lr, self.total_steps, self.steps = opt, lr, total_steps, 0
        opt.lr = self.lr_at(0)

    def lr_at(self, step: int) -> float:
        return self.lr * (1 + math.cos(math.pi * step / self.total_steps)) / 2

    def get_last_lr(self) -> list[float]:
        return [self.opt.lr]

    def step(self) -> None:
        self.steps += 1
        self.opt.lr = self.lr_at(self.steps)


# -- Training --------------------------------------------------------------------------------
def digit_probs(preds: Tensor) -> Tensor:
    """The softmax of ten outputs, [N, 10]: each digit's probability."""
    return log_softmax(preds).exp()


@torch.no_grad()
def validate_epoch(model: Callable[[Tensor], Tensor], data: Prepared) -> Validation:
    """The validation loss, and each validation digit's output and probability of a 3 (or of
    each digit, on ten)."""
    preds = model(data.valid_x)  # [N, 1], or [N, 10]
    if not data.binary:
        return Validation(loss=cross_entropy_loss(preds, data.valid_y).item(), preds=preds,
                          pred=preds.argmax(dim=1), probs=digit_probs(preds))
    logit = preds.squeeze(1)
    return Validation(loss=mnist_loss(preds, data.valid_y).item(), preds=logit,
                      pred=binary_pred(logit), probs=binary_probs(logit))


def fit(model, data: Prepared, *, lr: float, epochs: int, batch_size: int, seed: int,
        desc: str = "train", opt_func=BasicOptim, schedule: str = "constant") -> Fit:
    """Train with `mnist_loss` and `BasicOptim` (or `opt_func(params, lr)`) in the chapter's loop;
    on ten digits with `cross_entropy_loss`. `schedule="cosine"` anneals the lr to 0.

    Each epoch visits the training set in a fresh order drawn from a generator seeded with
    `seed`; the last batch may be short (the book's DataLoader keeps it too).
    """
    opt = opt_func(model.parameters(), lr)
    order = torch.Generator().manual_seed(seed)
    loss_func, accuracy = ((mnist_loss, batch_accuracy) if data.binary
                           else (cross_entropy_loss, digit_accuracy))
    sched = None
    if schedule == "cosine":
        sched = CosineSchedule(opt, lr, epochs * math.ceil(len(data.train_x) / batch_size))

    def one_epoch(epoch: int):
        batches = shuffled_batches(data.train_x, data.train_y, batch_size, order)
        return train_epoch(model, batches, opt, loss_func, sched=sched,
                           desc=f"{desc} {epoch}/{epochs}")

    return train_model(one_epoch, lambda: validate_epoch(model, data), epochs=epochs,
                       valid_y=data.labels, name=desc, accuracy=accuracy)


def outputs(dataset: str) -> tuple[int, list[str] | None]:
    """How many outputs a model of `dataset` has, and their labels (None for the chapter's one,
    the 3)."""
    layout = DATASETS[dataset]
    return (1, None) if layout.binary else (len(layout.classes), list(layout.classes))


def train_linear(params: Mapping, tensors: Path, dataset: str = "mnist_sample") -> StageResult:
    """Stage linear's whole run: `linear1` from `init_params`, trained by `fit`."""
    train, p = params["train"], params["linear"]
    n, labels = outputs(dataset)
    clock = Clock()
    device = setup(train.seed, train.device, "linear")
    data = prepare(load_sample(tensors), device, binary=labels is None)
    # The chapter's randn (std 1); ten digits start small (params), or the softmax saturates.
    model = Linear1(device, std=1.0 if labels is None else p.init_std, outputs=n)
    run = fit(model, data, lr=p.lr, epochs=p.epochs, batch_size=p.batch_size, seed=train.seed,
              desc="linear")
    card = model_card("linear", arch=linear_arch(n), input=INPUT, params=params, labels=labels)
    return trained_result(run, state=model.state_dict(), card=card, valid_y=data.labels,
                          names=DATASETS[dataset].names, clock=clock, device=device)


def train_mlp(params: Mapping, tensors: Path, dataset: str = "mnist_sample") -> StageResult:
    """Stage mlp's whole run: `simple_net`, trained by `fit` like linear1."""
    train, p = params["train"], params["mlp"]
    n, labels = outputs(dataset)
    clock = Clock()
    device = setup(train.seed, train.device, "mlp")
    data = prepare(load_sample(tensors), device, binary=labels is None)
    # Built on the CPU from the seeded generator, then moved: the same start on every device.
    model = simple_net(p.hidden, n).to(device)
    run = fit(model, data, lr=p.lr, epochs=p.epochs, batch_size=p.batch_size, seed=train.seed,
              desc="mlp", schedule="constant" if labels is None else p.schedule)
    card = model_card("mlp", arch=mlp_arch(p.hidden, n), input=INPUT, params=params,
                      labels=labels)
    return trained_result(run, state=model.state_dict(), card=card, valid_y=data.labels,
                          names=DATASETS[dataset].names, clock=clock, device=device)


def linear_arch(outputs: int = 1) -> dict:
    return {"forward": "xb@weights + bias", "weights": [PIXELS, outputs], "bias": [outputs]}


def mlp_arch(hidden: int, outputs: int = 1) -> dict:
    return {"forward": f"Linear({PIXELS},{hidden}) -> ReLU -> Linear({hidden},{outputs})",
            "hidden": hidden}


# -- Reloading -------------------------------------------------------------------------------
def _check_state(state: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]],
                 model: str) -> None:
    """Refuse a checkpoint whose tensors aren't exactly what `model` has."""
    got = {k: tuple(v.shape) for k, v in state.items()}
    if set(got) != set(expected):
        raise PipelineError(
            f"checkpoint does not fit a {model} model: it holds tensors {sorted(got)}, "
            f"a {model} model has {sorted(expected)}"
        )
    for k, shape in expected.items():
        if got[k] != shape:
            raise PipelineError(
                f"checkpoint does not fit a {model} model: {k} has shape {list(got[k])}, "
                f"expected {list(shape)}"
            )


def build(card: Mapping) -> tuple[Callable[[Tensor], Tensor], dict[str, tuple[int, ...]]]:
    """The untrained model a card describes, and the tensor shapes its checkpoint must hold."""
    name = card.get("model")
    labels = card_labels(card) if name in ("linear", "mlp") else None
    n = 1 if labels is None else len(labels)  # one output per label; the chapter's one: a 3
    if name == "linear":
        return Linear1(outputs=n), {"weights": (PIXELS, n), "bias": (n,)}
    if name == "mlp":
        hidden = card.get("arch", {}).get("hidden")
        if not isinstance(hidden, int) or hidden < 1:
            raise PipelineError("mlp model card: arch.hidden must be a positive integer")
        net = simple_net(hidden, n)
        return net, {k: tuple(v.shape) for k, v in net.state_dict().items()}
    raise PipelineError(f"models.py holds linear and mlp, not {name!r}")


def load_predictor(state: Mapping[str, Tensor], card: Mapping) -> Callable[[Tensor], Tensor]:
    """A classifier from a checkpoint: uint8 [N, 28, 28] -> float [N, C], each label's
    probability, as the stage's `probs` (the chapter's one output: 7, then 3)."""
    model, shapes = build(card)
    _check_state(state, shapes, card["model"])
    model.load_state_dict(dict(state))

    @torch.no_grad()
    def predict(x: Tensor) -> Tensor:
        preds = model(flatten(x))
        return binary_probs(preds.squeeze(1)) if preds.shape[1] == 1 else digit_probs(preds)

    return predict
