"""The chapter's worked examples before any digit: the SGD "roller coaster", gradients, curves.

The roller coaster (`python stages/sgd_example.py`): a quadratic `f(t, params) = a*t**2 + b*t + c`
fitted to a speed measured over 20 seconds, by the chapter's seven steps, under its names:
1. initialize: `params = torch.randn(3).requires_grad_()`;
2. predict: `preds = f(time, params)`;
3. loss: `mse(preds, speed)`, the root of the mean squared error, as the chapter writes it;
4. gradient: `loss.backward()` leaves d(loss)/d(params) in `params.grad`;
5. step: `params.data -= lr * params.grad.data`;
6. repeat: `apply_step` does 2-5, `steps` times;
7. stop: after `steps` steps, as the chapter does after ten.

Besides, the small computations the chapter shows on the way to `mnist_loss`, done with the
same functions the pipeline trains with: autograd's gradients of `x**2`, `mnist_loss` on the
chapter's toy targets, and the sigmoid and ReLU curves.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mnist_basics.chapter.models import mnist_loss

SECONDS = 20  # time = arange(0, 20): one measurement a second


def f(t: Tensor, params: Tensor) -> Tensor:
    """The chapter's model of the speed: a quadratic in time."""
    a, b, c = params
    return a * (t**2) + (b * t) + c


def mse(preds: Tensor, targets: Tensor) -> Tensor:
    """The chapter's `mse`: it takes the square root, so it is the RMSE."""
    return ((preds - targets) ** 2).mean().sqrt()


def roller_coaster(generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """time [20] and speed [20]: `torch.randn(20)*3 + 0.75*(time-9.5)**2 + 1`."""
    time = torch.arange(0, SECONDS).float()
    speed = torch.randn(SECONDS, generator=generator) * 3 + 0.75 * (time - 9.5) ** 2 + 1
    return time, speed


def apply_step(params: Tensor, time: Tensor, speed: Tensor, lr: float) -> tuple[Tensor, float]:
    """Steps 2-5 once: predict, loss, gradient, step. Returns the predictions and the loss."""
    preds = f(time, params)  # 2. predict
    loss = mse(preds, speed)  # 3. loss
    loss.backward()  # 4. gradient
    params.data -= lr * params.grad.data  # 5. step
    params.grad = None
    return preds.detach(), loss.item()


def sgd_example(seed: int, lr: float, steps: int) -> dict[str, Tensor]:
    """The whole walk-through: its data, and the params, predictions and loss at every step.

    Row i of `params` and `loss` is before step i+1 (row 0: the random start; the last row
    holds the params after the last step, and the loss they give).
    """
    g = torch.Generator().manual_seed(seed)
    time, speed = roller_coaster(g)
    params = torch.randn(3, generator=g).requires_grad_()  # 1. initialize
    history, losses, preds = [params.detach().clone()], [], []
    for _ in range(steps):  # 6. repeat
        p, loss = apply_step(params, time, speed, lr)
        history.append(params.detach().clone())
        losses.append(loss)
        preds.append(p)
    with torch.no_grad():  # 7. stop: where the last step left the params
        preds.append(f(time, params))
        losses.append(mse(preds[-1], speed).item())
    return {"time": time, "speed": speed, "params": torch.stack(history),  # [steps+1, 3]
            "preds": torch.stack(preds), "loss": torch.tensor(losses)}  # [steps+1, 20], [steps+1]


def gradients() -> dict[str, list[float]]:
    """The chapter's gradient examples, by autograd: d(x**2)/dx at 3, and for a vector."""
    xt = torch.tensor(3.0).requires_grad_()
    (xt**2).backward()
    xs = torch.tensor([3.0, 4.0, 10.0]).requires_grad_()
    (xs**2).sum().backward()
    return {"x": [3.0], "grad": [xt.grad.item()], "xs": xs.detach().tolist(),
            "grads": xs.grad.tolist()}


def mnist_loss_examples() -> list[dict[str, object]]:
    """`mnist_loss` on the chapter's toy targets, given probabilities (so, before the sigmoid,
    their logits), for its two sets of predictions."""
    trgts = torch.tensor([1.0, 0.0, 1.0])
    out = []
    for prds in ([0.9, 0.4, 0.2], [0.9, 0.4, 0.8]):
        p = torch.tensor(prds)
        loss = mnist_loss(torch.logit(p), trgts)  # mnist_loss applies the sigmoid itself
        out.append({"targets": trgts.tolist(), "predictions": prds,
                    "loss": round(loss.item(), 4)})
    return out


def curves(lo: float = -4.0, hi: float = 4.0, n: int = 161) -> dict[str, Tensor]:
    """x, torch.sigmoid(x) and F.relu(x) on [lo, hi], for the report's plots."""
    x = torch.linspace(lo, hi, n)
    return {"x": x, "sigmoid": torch.sigmoid(x), "relu": torch.relu(x),
            "square": x**2}
