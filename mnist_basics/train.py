"""What every training stage shares: seeding, the device, the CPU budget, and the results.

A training stage writes, each with one writer and one format:
- the checkpoint (safetensors) and its model card (JSON: architecture and params);
- the validation predictions (safetensors: `prob3`, the probability that each digit is a 3);
- `metrics/<stage>.json`: accuracies and losses only, so that reruns are byte-identical;
- `metrics/<stage>_timing.json`: wall-clock figures, apart for the same reason;
- `metrics/<stage>_history.csv`: one row per epoch.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mnist_basics import PipelineError
from mnist_basics.artifacts import save_tensors, write_csv, write_json
from mnist_basics.cli import cpu_threads

log = logging.getLogger("mnist_basics")


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


def setup(seed: int, device: str, stage: str) -> torch.device:
    """Seed every generator, pin the thread count, and pick the device."""
    dev = pick_device(device)
    torch.set_num_threads(cpu_threads(stage))
    random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too
    # Same params, same bytes on the CPU; on CUDA this also picks deterministic kernels.
    # What torch.use_deterministic_algorithms(True, warn_only=True) does, without its import
    # of torch._inductor (1.5 s, to set a torch.compile flag; nothing here compiles).
    torch._C._set_deterministic_algorithms(True, warn_only=True)
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    return dev


def accuracy_by_class(prob3: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy overall and on each class; y is 1 for a 3 and 0 for a 7 (the chapter's labels)."""
    correct = (prob3 > 0.5) == y.bool()
    threes = y.bool()
    return {
        "accuracy": round(correct.float().mean().item(), 6),
        "accuracy_3": round(correct[threes].float().mean().item(), 6),
        "accuracy_7": round(correct[~threes].float().mean().item(), 6),
    }


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


@dataclass
class Fit:
    """What a training loop measured: one history row per epoch, the last predictions."""

    history: list[dict[str, object]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    images: int = 0  # training images seen, over all epochs
    prob3: torch.Tensor | None = None  # float [N_valid], from the last epoch


def results(run: Fit, *, state: Mapping[str, torch.Tensor], card: Mapping,
            valid_y: torch.Tensor, clock: Clock, device: torch.device) -> dict:
    """The keyword arguments of `save_results` for a trained model; valid_y is [N] (1 = a 3)."""
    last = run.history[-1]
    metrics = {
        **accuracy_by_class(run.prob3, valid_y.cpu()),
        "train_loss": last["train_loss"],
        "valid_loss": last["valid_loss"],
        "epochs": len(run.history),
    }
    return {
        "state": state,
        "card": card,
        "prob3": run.prob3,
        "metrics": dict(sorted(metrics.items())),
        "history": run.history,
        "timing": {
            "seconds": clock.elapsed,
            "train_seconds": run.train_seconds,
            "images_per_second": round(run.images / max(run.train_seconds, 1e-9), 1),
            "epoch_seconds": run.epoch_seconds,
            "device": str(device),
            "threads": torch.get_num_threads(),
        },
    }


@dataclass
class Paths:
    """A training stage's outputs, as its flags name them."""

    checkpoint: Path
    model_card: Path
    predictions: Path
    metrics: Path
    timing: Path
    history: Path

    @classmethod
    def from_args(cls, args) -> Paths:
        return cls(**{f: getattr(args, f) for f in cls.__dataclass_fields__})


def save_results(
    paths: Paths,
    *,
    state: Mapping[str, torch.Tensor],
    card: Mapping,
    prob3: torch.Tensor,
    metrics: Mapping[str, float],
    history: Sequence[Mapping[str, object]],
    timing: Mapping[str, float],
    extra_predictions: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Write every output of a training stage, each one atomically; timing goes last."""
    save_tensors(paths.checkpoint, state)
    write_json(paths.model_card, card)
    save_tensors(paths.predictions, {"prob3": prob3.float(), **(extra_predictions or {})})
    write_json(paths.metrics, dict(metrics))
    write_csv(paths.history, history)
    write_json(paths.timing, {k: round(v, 3) if isinstance(v, float) else v
                              for k, v in timing.items()})
    log.info("metrics: %s", ", ".join(f"{k}={v}" for k, v in metrics.items()))
