"""The stacked tensors: the chapter's `stacked_threes`/`stacked_sevens`, train and valid.

`data/mnist_sample.safetensors` holds four tensors:
    train_x  uint8 [12396, 28, 28]   train_y  uint8 [12396]   (1 for a 3, 0 for a 7)
    valid_x  uint8 [2038, 28, 28]    valid_y  uint8 [2038]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_basics import PipelineError
from mnist_basics.artifacts import load_tensors

if TYPE_CHECKING:
    import torch

CLASSES = ("3", "7")  # folder names; the chapter labels a 3 as 1 and a 7 as 0
LABEL = {"3": 1, "7": 0}
SPLITS = ("train", "valid")
SIZE = 28


@dataclass(frozen=True)
class MnistSample:
    train_x: torch.Tensor  # uint8 [N, 28, 28]
    train_y: torch.Tensor  # uint8 [N]
    valid_x: torch.Tensor
    valid_y: torch.Tensor


def load_sample(path: str | Path) -> MnistSample:
    """Load the stage `stack` output, checking that it has what the models expect."""
    t = load_tensors(path)
    missing = sorted({"train_x", "train_y", "valid_x", "valid_y"} - set(t))
    if missing:
        raise PipelineError(f"{path}: missing tensor {missing[0]!r}; rerun the stack stage")
    return MnistSample(t["train_x"], t["train_y"], t["valid_x"], t["valid_y"])
