"""The chapter's training loop, shared by every trained model, and what a training stage writes.

The book builds its loop from small functions, and so does this module, under their names:
- `batch_accuracy(xb, yb)`: the share of predictions on the right side of 0.5 after a sigmoid;
  `digit_accuracy(xb, yb)` is its ten-digit form, the share whose largest output is the label;
- `calc_grad(xb, yb, model, loss_func)`: predict, compute the loss, `backward()`;
- `train_epoch(...)`: `calc_grad`, then `opt.step()` and `opt.zero_grad()`, for every batch;
- `validate_epoch`: each model's own, returning a `Validation`;
- `train_model(...)`: `train_epoch` then `validate_epoch`, once per epoch, with a history row.
Each takes the loss and the accuracy it uses, so the same loop trains the chapter's 3-vs-7
models (one output, `mnist_loss`) and the full MNIST's ten-digit ones (softmax and
cross-entropy).
`linear` and `mlp` (chapter/models.py) and `resnet18` (methods/resnet.py) plug their model, loss
and optimizer into these.

Every stage that fits a model returns one `StageResult`, and `save_results` writes it, each
file with one writer and one format:
- the checkpoint (safetensors) and its model card (JSON: architecture and params);
- the validation predictions (safetensors), one schema for any number of classes C: `pred`
  int64 [N], the label each digit is taken for, and `probs` float [N, C], each label's
  probability (column j is the class labelled j: `Layout.names`);
- `metrics/<stage>.json` and `metrics/<stage>_history.csv`: results only, so that two runs
  with the same params write the same bytes;
- `metrics/<stage>_timing.json`: the wall-clock figures, apart for that reason.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor

from mnist_basics import PipelineError, compat
from mnist_basics.artifacts import save_tensors, write_csv, write_json
from mnist_basics.data.stack import MNIST_SAMPLE
from mnist_basics.registry import METHODS

log = logging.getLogger("mnist_basics")
T = TypeVar("T")


# -- Device and seeds ------------------------------------------------------------------------
def pick_device(wanted: str) -> torch.device:
    """`auto` means cuda when there is one; asking for cuda without one is an error."""
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise PipelineError(
            "train.device: 'cuda' was asked for but no CUDA device is available; "
            "set train.device to 'auto' or 'cpu' in params.yaml"
        )
    return torch.device(wanted)


def cpu_threads(stage: str | None = None) -> int:
    """The threads a stage may use: what its engine granted, else every core.

    Snakemake exports OMP_NUM_THREADS = the rule's `threads`; DVC runs one stage at a time.
    Only a `multicore` method (mnist_basics/registry.py) uses more than one thread.
    """
    if stage is not None and not (stage in METHODS and METHODS[stage].multicore):
        return 1
    granted = os.environ.get("OMP_NUM_THREADS", "")
    cores = os.cpu_count() or 1
    return max(1, min(int(granted), cores)) if granted.isdigit() else cores


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    """A progress bar on a terminal; nothing in a log (stages log one line per epoch)."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, leave=False, disable=not sys.stderr.isatty())


def setup(seed: int, device: str, stage: str) -> torch.device:
    """Seed every generator, pin the thread count, and pick the device."""
    dev = pick_device(device)
    torch.set_num_threads(cpu_threads(stage))
    random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too
    # Same params, same bytes on the CPU; on CUDA this also picks deterministic kernels.
    compat.use_deterministic_algorithms()
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    return dev


# -- The chapter's loop ----------------------------------------------------------------------
def batch_accuracy(xb: Tensor, yb: Tensor) -> Tensor:
    """The book's `batch_accuracy`: xb are a model's outputs before the sigmoid ([N]), yb the
    labels ([N], 1 for a 3, 0 for a 7). A 3 is predicted where sigmoid(xb) > 0.5."""
    preds = xb.sigmoid()
    correct = (preds > 0.5) == yb
    return correct.float().mean()


def digit_accuracy(xb: Tensor, yb: Tensor) -> Tensor:
    """`batch_accuracy` on ten digits: xb are the outputs [N, 10], yb the digits [N]. The
    prediction is the digit with the largest output (softmax keeps the order, so no need
    to take it)."""
    return (xb.argmax(dim=1) == yb).float().mean()


def calc_grad(xb: Tensor, yb: Tensor, model: Callable[[Tensor], Tensor],
              loss_func: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """The book's `calc_grad`: predict, measure the loss, and leave its gradients in `.grad`."""
    preds = model(xb)
    loss = loss_func(preds, yb)
    loss.backward()
    return loss


def shuffled_batches(x: Tensor, y: Tensor, batch_size: int, order: torch.Generator, *,
                     drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
    """The book's `DataLoader(dset, batch_size, shuffle=True)` over tensors already in memory.

    The order is drawn on the CPU from `order` (so a seed gives the same batches on every
    device); `drop_last` leaves out the last partial batch, as fastai's training loader does.
    """
    n = len(x)
    perm = torch.randperm(n, generator=order)
    if drop_last:
        perm = perm[: n // batch_size * batch_size]
    for idx in perm.to(x.device).split(batch_size):
        yield x[idx], y[idx]


@dataclass
class Epoch:
    """What `train_epoch` measured: each batch's mean loss and size, and its learning rate."""

    losses: list[Tensor] = field(default_factory=list)  # each a 0-d tensor, left on the device
    sizes: list[int] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)  # only when a schedule sets them

    @property
    def images(self) -> int:
        return sum(self.sizes)

    def loss(self) -> float:
        """The mean loss over the epoch's images."""
        total = torch.zeros((), device=self.losses[0].device)
        for loss, size in zip(self.losses, self.sizes, strict=True):
            total += loss * size  # summed on the device: one sync per epoch, not per batch
        return total.item() / self.images


def train_epoch(model: Callable[[Tensor], Tensor], batches: Iterable[tuple[Tensor, Tensor]],
                opt, loss_func: Callable[[Tensor, Tensor], Tensor], *, sched=None,
                desc: str = "train") -> Epoch:
    """The book's `train_epoch`: for each batch, `calc_grad`, `opt.step()`, `opt.zero_grad()`.

    `opt` is `BasicOptim` or any torch optimizer; `sched`, when given, sets its learning rate
    per step (the one-cycle schedule).
    """
    out = Epoch()
    for xb, yb in progress(batches, desc):
        loss = calc_grad(xb, yb, model, loss_func)
        opt.step()
        opt.zero_grad()
        if sched is not None:
            out.lrs.append(sched.get_last_lr()[0])
            sched.step()
        out.losses.append(loss.detach())
        out.sizes.append(len(xb))
    return out


@dataclass(frozen=True)
class Validation:
    """What a model's `validate_epoch` returns for the whole validation set, whatever the
    number of classes C: the raw outputs its accuracy reads, and the predictions file."""

    loss: float
    preds: Tensor  # the outputs: float [N] before the sigmoid (a logit for the 3), or [N, C]
    pred: Tensor  # int64 [N]: the label each digit is taken for
    probs: Tensor  # float [N, C]: each label's probability

    def cpu(self) -> Validation:
        return Validation(self.loss, self.preds.cpu(), self.pred.cpu(), self.probs.cpu())


def binary_probs(logit: Tensor) -> Tensor:
    """The chapter's one output (a logit for the 3, label 1) as both labels' probabilities:
    [N] -> [N, 2], columns 7 then 3, so the 3's column is exactly the sigmoid."""
    p3 = logit.sigmoid()
    return torch.stack([1 - p3, p3], dim=1)


def binary_pred(logit: Tensor) -> Tensor:
    """`batch_accuracy`'s rule as a label: a 3 (1) where sigmoid(logit) > 0.5, else a 7 (0)."""
    return (logit.sigmoid() > 0.5).long()


@dataclass
class Fit:
    """What `train_model` measured: one history row per epoch, the last predictions."""

    history: list[dict[str, object]] = field(default_factory=list)
    steps: list[dict[str, object]] = field(default_factory=list)  # when a schedule ran
    epoch_seconds: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    images: int = 0  # training images seen, over all epochs
    last: Validation | None = None  # the last epoch's, on the CPU


def train_model(train_epoch: Callable[[int], Epoch], validate_epoch: Callable[[], Validation],
                *, epochs: int, valid_y: Tensor, name: str,
                accuracy: Callable[[Tensor, Tensor], Tensor] = batch_accuracy) -> Fit:
    """The book's `train_model`: `epochs` times, train one epoch, then validate it.

    Each epoch adds a history row (losses and `accuracy`, no seconds: those go to the timing
    file) and, when the optimizer's schedule sets the learning rate, a row per step. A loss
    that is no longer finite stops the stage with a hint.
    """
    out, clock = Fit(), Clock()
    for epoch in range(1, epochs + 1):
        ep = train_epoch(epoch)
        valid = validate_epoch()
        seconds = clock.lap()
        row = {"epoch": epoch, "train_loss": round(ep.loss(), 6),
               "valid_loss": round(valid.loss, 6),
               "valid_accuracy": round(accuracy(valid.preds, valid_y).item(), 6)}
        if not math.isfinite(row["train_loss"]):
            raise PipelineError(f"{name} diverged in epoch {epoch} (loss {row['train_loss']}); "
                                f"lower {name}.lr in params.yaml")
        if ep.lrs:
            losses = torch.stack(ep.losses).float().cpu().tolist()
            first = len(out.steps) + 1
            out.steps += [{"step": first + i, "lr": round(lr, 8), "loss": round(loss, 6)}
                          for i, (lr, loss) in enumerate(zip(ep.lrs, losses, strict=True))]
        log.info("epoch %d/%d: train_loss %.4f, valid_loss %.4f, valid_accuracy %.4f, %.2fs",
                 epoch, epochs, row["train_loss"], row["valid_loss"], row["valid_accuracy"],
                 seconds)
        out.history.append(row)
        out.images += ep.images
        out.last = valid.cpu()
    out.epoch_seconds = [round(s, 3) for s in clock.marks]
    out.train_seconds = clock.elapsed
    return out


# -- Results ---------------------------------------------------------------------------------
def per_class(pred: Tensor, y: Tensor, classes: int) -> list[float]:
    """The share of each label's images taken for it, label by label; pred and y are labels
    [N]. Every class has images: the stack stage refuses an empty class folder."""
    right = (pred == y).float()
    return [right[y == j].mean().item() for j in range(classes)]


def class_accuracies(pred: Tensor, y: Tensor, names: Sequence[str]) -> dict[str, float]:
    """The share of right answers overall and on each class, named by `names` (by label):
    `accuracy_3` is the share of the 3s taken for a 3. Six places, as every stage writes."""
    return {"accuracy": round((pred == y).float().mean().item(), 6),
            **{f"accuracy_{name}": round(v, 6)
               for name, v in zip(names, per_class(pred, y, len(names)), strict=True)}}


def split_classes(scores: Mapping[str, float]) -> tuple[dict, dict]:
    """class_accuracies' keys -> (the overall ones, for the metrics; the per-class ones)."""
    per = {k: v for k, v in scores.items() if not k.endswith("accuracy")}
    return {k: v for k, v in scores.items() if k not in per}, per


@dataclass
class Clock:
    """Wall-clock seconds since construction, plus per-epoch marks."""

    start: float = field(default_factory=time.perf_counter)
    marks: list[float] = field(default_factory=list)

    def lap(self) -> float:
        """Seconds since the previous lap (or the start); recorded as one epoch."""
        now = time.perf_counter()
        last = self.start + sum(self.marks)
        self.marks.append(now - last)
        return self.marks[-1]

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


@dataclass(frozen=True)
class StageResult:
    """Everything a model stage writes, before it is written: one record for every method."""

    state: Mapping[str, Tensor]  # the checkpoint
    card: Mapping  # the model card: architecture, how inputs are prepared, the params
    predictions: Mapping[str, Tensor]  # pred [N_valid], probs [N_valid, C], and the rest
    metrics: Mapping[str, float | int]  # results only: the accuracy and losses
    classes: Mapping[str, float]  # results only: each class's accuracy
    history: list[dict[str, object]]  # one row per epoch, results only
    timing: Mapping[str, object]  # wall-clock figures
    steps: list[dict[str, object]] = field(default_factory=list)  # one row per step, if any


def model_card(name: str, *, arch: Mapping, input: Mapping, params: Mapping,
               labels: Sequence[str] | None = None) -> dict:
    """The JSON beside a checkpoint; `params` are the validated sections the stage read.

    A ten-digit model's card adds `labels`, what each output stands for ("0" ... "9"); the
    chapter's cards have none (their one output is the 3), so they stay as they were.
    """
    card = {"model": name, "arch": arch, "input": input,
            "params": {k: v.model_dump() for k, v in params.items()}}
    if labels is not None:
        card["labels"] = list(labels)
    return card


def card_labels(card: Mapping) -> list[str] | None:
    """A card's `labels` (a ten-digit model), None for a chapter card; anything else fails."""
    if "labels" not in card:
        return None
    labels = card["labels"]
    if not (isinstance(labels, list) and len(labels) >= 2
            and all(isinstance(x, str) for x in labels)):
        raise PipelineError(f"{card.get('model')} model card: labels must be a list of at "
                            f"least two names, one per output (got {labels!r})")
    return labels


def card_names(card: Mapping) -> list[str]:
    """The classes a card's outputs stand for, by label: its `labels`, or, on a chapter card
    (which has none), MNIST_SAMPLE's 7 and 3."""
    return card_labels(card) or list(MNIST_SAMPLE.names)


def process_seconds() -> float:
    """Seconds since this process started, its imports included: the stage's whole wall time,
    as an engine times it (Snakemake's report, `dvc repro`)."""
    import psutil

    return time.time() - psutil.Process().create_time()


def timing_record(clock: Clock, *, train_seconds: float, images: int, epoch_seconds: list,
                  device: torch.device | str) -> dict[str, object]:
    return {
        "process_seconds": process_seconds(),
        "seconds": clock.elapsed,
        "train_seconds": train_seconds,
        "images_per_second": round(images / max(train_seconds, 1e-9), 1),
        "epoch_seconds": epoch_seconds,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def trained_result(run: Fit, *, state: Mapping[str, Tensor], card: Mapping, valid_y: Tensor,
                   names: Sequence[str], clock: Clock, device: torch.device) -> StageResult:
    """The StageResult of a model that `train_model` trained; valid_y are the labels [N] and
    `names` the classes by label (`Layout.names`)."""
    last, valid_y = run.history[-1], valid_y.cpu()
    scores, per = split_classes(class_accuracies(run.last.pred, valid_y, names))
    predictions = {"pred": run.last.pred, "probs": run.last.probs}
    metrics = {
        **scores,
        "train_loss": last["train_loss"],
        "valid_loss": last["valid_loss"],
        "epochs": len(run.history),
    }
    return StageResult(
        state=state, card=card, predictions=predictions,
        metrics=dict(sorted(metrics.items())), classes=per, history=run.history,
        steps=run.steps,
        timing=timing_record(clock, train_seconds=run.train_seconds, images=run.images,
                             epoch_seconds=run.epoch_seconds, device=device),
    )


@dataclass
class Paths:
    """A model stage's outputs, as its flags name them."""

    checkpoint: Path
    model_card: Path
    predictions: Path
    metrics: Path
    timing: Path
    history: Path
    classes: Path
    steps: Path | None = None  # resnet18 only

    @classmethod
    def from_args(cls, args) -> Paths:
        return cls(**{f: getattr(args, f, None) for f in cls.__dataclass_fields__})


def save_results(paths: Paths, result: StageResult) -> None:
    """Write every output of a model stage, each one atomically; timing goes last."""
    save_tensors(paths.checkpoint, result.state)
    write_json(paths.model_card, result.card)
    save_tensors(paths.predictions, {k: v.float() if v.is_floating_point() else v
                                     for k, v in result.predictions.items()})
    write_json(paths.metrics, dict(result.metrics))
    write_json(paths.classes, dict(result.classes))
    write_csv(paths.history, result.history)
    if paths.steps is not None:
        write_csv(paths.steps, result.steps)
    write_json(paths.timing, {k: round(v, 3) if isinstance(v, float) else v
                              for k, v in result.timing.items()})
    log.info("metrics: %s", ", ".join(f"{k}={v}" for k, v in result.metrics.items()))

