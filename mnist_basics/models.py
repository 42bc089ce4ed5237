"""The chapter's trained models and the loop that trains them: `linear1` and `simple_net`.

Everything follows fastbook chapter 4 line by line, so a learner can hold the book beside it:
- `init_params`, `linear1` (`xb@weights + bias`) and `simple_net` (784-30-ReLU-1);
- `mnist_loss`: sigmoid, then `torch.where(targets==1, 1-predictions, predictions).mean()`;
- `BasicOptim`: the hand-written SGD step (`p.data -= p.grad.data * lr`);
- `nn_linear` and `torch_sgd`: the chapter's next steps, PyTorch's own pieces in their place;
- `fit`: `BasicOptim` and `mnist_loss` plugged into the chapter's loop (`train_epoch`,
  `validate_epoch`, `train_model` in mnist_basics/train.py).

The stages `stages/linear.py` and `stages/mlp.py` call these; `load_predictor` turns a saved
checkpoint back into a classifier for `python -m mnist_basics predict`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mnist_basics import PipelineError
from mnist_basics.data import SIZE, MnistSample, load_sample
from mnist_basics.train import (
    Clock,
    Fit,
    StageResult,
    Validation,
    model_card,
    setup,
    shuffled_batches,
    train_epoch,
    train_model,
    trained_result,
)

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
    train_y: Tensor  # float [N, 1]: 1 for a 3, 0 for a 7
    valid_x: Tensor
    valid_y: Tensor


def flatten(x: Tensor) -> Tensor:
    """uint8 [N, 28, 28] -> float [N, 784] in [0, 1], the chapter's `.float()/255` and `view`."""
    return x.float().div(255).view(-1, PIXELS)


def prepare(sample: MnistSample, device: torch.device) -> Prepared:
    def y(t: Tensor) -> Tensor:
        return t.float().unsqueeze(1).to(device)  # [N] -> [N, 1], like the book's targets

    return Prepared(
        flatten(sample.train_x).to(device), y(sample.train_y),
        flatten(sample.valid_x).to(device), y(sample.valid_y),
    )


# -- Models ----------------------------------------------------------------------------------
def init_params(size, std: float = 1.0) -> Tensor:
    """The book's `init_params`: standard normal values that autograd tracks."""
    return (torch.randn(size) * std).requires_grad_()


class Linear1:
    """The chapter's `linear1(xb) = xb@weights + bias`: weights [784, 1] and bias [1] are
    plain tensors from `init_params`, as in the book."""

    def __init__(self, device: torch.device | str = "cpu", std: float = 1.0):
        # Drawn on the CPU, then moved (still leaves), so a seed gives the same start anywhere.
        self.weights = init_params((PIXELS, 1), std).detach().to(device).requires_grad_()
        self.bias = init_params(1, std).detach().to(device).requires_grad_()

    def __call__(self, xb: Tensor) -> Tensor:
        return xb @ self.weights + self.bias  # [N, 784] -> [N, 1]

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


def simple_net(hidden: int = 30) -> nn.Sequential:
    """The chapter's two-layer net: 784 -> hidden -> ReLU -> 1."""
    return nn.Sequential(nn.Linear(PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def mnist_loss(predictions: Tensor, targets: Tensor) -> Tensor:
    """How far each prediction is from its target, after squashing it into (0, 1)."""
    predictions = predictions.sigmoid()
    return torch.where(targets == 1, 1 - predictions, predictions).mean()


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


# -- Training --------------------------------------------------------------------------------
@torch.no_grad()
def validate_epoch(model: Callable[[Tensor], Tensor], data: Prepared) -> Validation:
    """The validation loss, and each validation digit's output and probability of a 3."""
    preds = model(data.valid_x)  # [N, 1]
    return Validation(loss=mnist_loss(preds, data.valid_y).item(), preds=preds.squeeze(1),
                      prob3=preds.sigmoid().squeeze(1))


def fit(model, data: Prepared, *, lr: float, epochs: int, batch_size: int, seed: int,
        desc: str = "train", opt_func=BasicOptim) -> Fit:
    """Train with `mnist_loss` and `BasicOptim` (or `opt_func(params, lr)`) in the chapter's loop.

    Each epoch visits the training set in a fresh order drawn from a generator seeded with
    `seed`; the last batch may be short (the book's DataLoader keeps it too).
    """
    opt = opt_func(model.parameters(), lr)
    order = torch.Generator().manual_seed(seed)

    def one_epoch(epoch: int):
        batches = shuffled_batches(data.train_x, data.train_y, batch_size, order)
        return train_epoch(model, batches, opt, mnist_loss, desc=f"{desc} {epoch}/{epochs}")

    return train_model(one_epoch, lambda: validate_epoch(model, data), epochs=epochs,
                       valid_y=data.valid_y.squeeze(1), name=desc)


def train_linear(params: Mapping, tensors: Path) -> StageResult:
    """Stage linear's whole run: `linear1` from `init_params`, trained by `fit`."""
    train, p = params["train"], params["linear"]
    clock = Clock()
    device = setup(train.seed, train.device, "linear")
    data = prepare(load_sample(tensors), device)
    model = Linear1(device)
    run = fit(model, data, lr=p.lr, epochs=p.epochs, batch_size=p.batch_size, seed=train.seed,
              desc="linear")
    card = model_card("linear", arch=linear_arch(), input=INPUT, params=params)
    return trained_result(run, state=model.state_dict(), card=card,
                          valid_y=data.valid_y.squeeze(1), clock=clock, device=device)


def train_mlp(params: Mapping, tensors: Path) -> StageResult:
    """Stage mlp's whole run: `simple_net`, trained by `fit` like linear1."""
    train, p = params["train"], params["mlp"]
    clock = Clock()
    device = setup(train.seed, train.device, "mlp")
    data = prepare(load_sample(tensors), device)
    # Built on the CPU from the seeded generator, then moved: the same start on every device.
    model = simple_net(p.hidden).to(device)
    run = fit(model, data, lr=p.lr, epochs=p.epochs, batch_size=p.batch_size, seed=train.seed,
              desc="mlp")
    card = model_card("mlp", arch=mlp_arch(p.hidden), input=INPUT, params=params)
    return trained_result(run, state=model.state_dict(), card=card,
                          valid_y=data.valid_y.squeeze(1), clock=clock, device=device)


def linear_arch() -> dict:
    return {"forward": "xb@weights + bias", "weights": [PIXELS, 1], "bias": [1]}


def mlp_arch(hidden: int) -> dict:
    return {"forward": f"Linear({PIXELS},{hidden}) -> ReLU -> Linear({hidden},1)",
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
    if name == "linear":
        return Linear1(), {"weights": (PIXELS, 1), "bias": (1,)}
    if name == "mlp":
        hidden = card.get("arch", {}).get("hidden")
        if not isinstance(hidden, int) or hidden < 1:
            raise PipelineError("mlp model card: arch.hidden must be a positive integer")
        net = simple_net(hidden)
        return net, {k: tuple(v.shape) for k, v in net.state_dict().items()}
    raise PipelineError(f"models.py holds linear and mlp, not {name!r}")


def load_predictor(state: Mapping[str, Tensor], card: Mapping) -> Callable[[Tensor], Tensor]:
    """A classifier from a checkpoint: uint8 [N, 28, 28] -> float [N], the probability of a 3."""
    model, shapes = build(card)
    _check_state(state, shapes, card["model"])
    model.load_state_dict(dict(state))

    @torch.no_grad()
    def predict(x: Tensor) -> Tensor:
        return model(flatten(x)).sigmoid().squeeze(1)  # [N, 1] -> [N]

    return predict
