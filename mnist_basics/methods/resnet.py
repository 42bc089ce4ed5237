"""The chapter's closing model: torchvision's resnet18, trained from scratch with one cycle.

The book ends chapter 4 with `cnn_learner(dls, resnet18, pretrained=False,
loss_func=F.cross_entropy)` and `learn.fit_one_cycle(1, 0.1)`: 0.997 accuracy in one epoch
on a GPU. Here the same network, `torchvision.models.resnet18(weights=None, num_classes=2)`
(`ResNet18` below writes it out), is trained by `fit_one_cycle` below (run it as
`python stages/resnet18.py`):

- Grayscale input: conv1 is replaced by a 1-in-channel conv (7x7, stride 2, 64 filters).
  Repeating the digit into 3 identical channels only makes sense to reuse pretrained RGB
  filters; trained from scratch it would triple conv1's work and memory for nothing.
- Images: `(x/255 - mean)/std` with the training set's own mean and std (saved in the
  model card), at 28x28. The stem (stride-2 conv, max-pool) brings a digit to 7x7, so the
  four stages see 7x7, 4x4, 2x2 and 1x1 maps: 33 M multiply-adds per image, 26 M once
  layer4 skips the taps that only ever see padding (`OnePixelConv2d`).
- Loss and schedule: cross-entropy over two classes (index 1 is a 3, as the chapter's
  labels), `OneCycleLR` (cosine warm-up to `lr` over `pct_start` of the steps, then cosine
  annealing, with momentum cycled 0.95 -> 0.85 -> 0.95 as in fastai).
- Optimizer: SGD with Nesterov momentum and weight decay on conv/linear weights only
  (fastai skips batchnorm and bias parameters too). fastai's default is Adam at lr 0.1;
  that lr is too high for SGD here, and the README's results section gives the spread.
- Speed on a CPU: the tensors sit in memory already normalised (no DataLoader, no decoding),
  batches are the same size (the last partial batch is dropped, as fastai's training
  DataLoader does) so oneDNN reuses its kernels, convolutions run channels_last (under
  bfloat16 autocast where the hardware has it: `resnet18.bf16: auto`), layer4 skips its
  padding taps, the model is written out rather than imported from torchvision (1.5 s
  less per process), the optimizer step is fused, and the validation set is scored once
  per epoch in large batches under `torch.inference_mode`. What each of these is
  worth is measured by `python bench/resnet18_bench.py speed` (bench/README.md).

On the full MNIST the same network has ten outputs, one per digit (`resnet18(classes=10)`),
and everything else is the same: its cross-entropy already covers any number of classes.

`load_predictor` turns a checkpoint and its model card back into a classifier that
`python -m mnist_basics predict` uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnist_basics import PipelineError, compat
from mnist_basics.chapter.train import (
    Clock,
    Fit,
    StageResult,
    Validation,
    batch_accuracy,
    binary_pred,
    card_names,
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

CHANNELS = 1  # grayscale: conv1 takes one channel (see the module docstring)
CLASSES = 2  # output index 1 is a 3, index 0 a 7: the chapter's labels
VALID_BATCH = 1024  # scoring needs no gradients: large batches keep the kernels busy


def arch(classes: int = CLASSES) -> dict:
    """The model card's `arch`."""
    return {
        "torchvision": f"resnet18(weights=None, num_classes={classes})",
        "conv1": "Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)",
        "in_channels": CHANNELS,
        "num_classes": classes,
    }


ARCH = arch()


# -- The model -------------------------------------------------------------------------------
class LiveTaps(torch.autograd.Function):
    """`weight[:, :, top:top + rows, left:left + cols].flatten(1)`, with a cheaper backward.

    Autograd's own backward of the two slices allocates and zero-fills the full kernel twice
    and copies it twice more; this one writes the taps' gradient into a single zero tensor
    laid out like the weight: the same numbers, and ~5% of a resnet18 training step less.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, top: int, left: int, rows: int, cols: int) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.box = (top, left, rows, cols)
        return weight[:, :, top:top + rows, left:left + cols].flatten(1)  # [O, C*rows*cols]

    @staticmethod
    def backward(ctx, grad: Tensor):
        (weight,), (top, left, rows, cols) = ctx.saved_tensors, ctx.box
        full = torch.zeros_like(weight)  # the dead taps' gradient is zero
        full[:, :, top:top + rows, left:left + cols] = grad.view(*weight.shape[:2], rows, cols)
        return full, None, None, None, None


class OnePixelConv2d(nn.Conv2d):
    """An `nn.Conv2d` that computes a one-pixel output as a single matrix product.

    A 28x28 digit reaches layer4 as a 2x2 map and leaves it as 1x1, so each of layer4's
    convolutions has one output pixel whose window lies mostly over zero padding: a 3x3
    conv on a 1x1 map uses only its centre tap, on a 2x2 map with stride 2 only 4 taps.
    oneDNN still computes all 9 (and its weight-gradient kernel is slow on such shapes);
    multiplying the pixels in the window by just the taps that land on them gives the same
    numbers for ~5x less time forward and backward. Any other output size is nn.Conv2d's.
    """

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        one_pixel = (h + 2 * ph - kh) // sh == 0 and (w + 2 * pw - kw) // sw == 0
        if not one_pixel or self.groups != 1 or self.dilation != (1, 1) \
                or self.padding_mode != "zeros":
            return super().forward(x)
        rows, cols = min(h, kh - ph), min(w, kw - pw)  # the input pixels inside the window
        pixels = x[:, :, :rows, :cols].flatten(1)  # [N, C*rows*cols]
        taps = LiveTaps.apply(self.weight, ph, pw, rows, cols)  # [O, C*rows*cols]
        return F.linear(pixels, taps, self.bias).view(n, -1, 1, 1)  # [N, O, 1, 1]

    def _apply(self, fn, recurse=True):
        # Kept in the plain layout whatever `.to(memory_format=...)` asks: the taps are sliced
        # out, so the layout never reaches oneDNN on one-pixel outputs, and the fused SGD step
        # would otherwise copy a channels_last kernel to a plain one and back on every step.
        super()._apply(fn, recurse)
        self.weight.data = self.weight.data.contiguous()
        return self


def _conv(cin: int, cout: int, kernel: int, stride: int, one_pixel: bool) -> nn.Conv2d:
    conv = OnePixelConv2d if one_pixel else nn.Conv2d
    return conv(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


class BasicBlock(nn.Module):
    """torchvision's resnet18 block: two 3x3 convs with batchnorm, plus the shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, one_pixel: bool):
        super().__init__()
        # Created first and registered last, as torchvision does.
        downsample = None if stride == 1 and cin == cout else nn.Sequential(
            _conv(cin, cout, 1, stride, one_pixel), nn.BatchNorm2d(cout))
        self.conv1 = _conv(cin, cout, 3, stride, one_pixel)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(cout, cout, 3, 1, one_pixel)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """`torchvision.models.resnet18(weights=None, num_classes=classes)`, written out.

    The same modules, created in the same order and initialised the same way, so the same
    seed gives the same starting weights and the checkpoint has torchvision's tensor names
    (tests/test_resnet18.py checks both). Written here because importing torchvision costs
    each process that builds the model ~1.5 s, more than a tenth of the stage.
    """

    def __init__(self, classes: int, one_pixel: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = ((64, 1), (128, 2), (256, 2), (512, 2))
        cin = 64
        for i, (cout, stride) in enumerate(widths, start=1):
            # Only layer4's outputs are one pixel (on 28x28 digits); the other stages keep
            # nn.Conv2d, whose kernels oneDNN wants channels_last.
            small = one_pixel and i == len(widths)
            setattr(self, f"layer{i}", nn.Sequential(
                BasicBlock(cin, cout, stride, small), BasicBlock(cout, cout, 1, small)))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(one_pixel: bool = True, classes: int = CLASSES) -> nn.Module:
    """torchvision's resnet18 for 1-channel 28x28 digits: [N, 1, 28, 28] -> logits [N, 2]
    (or [N, classes]: 10 for the full MNIST).

    `one_pixel=False` keeps torchvision's plain convolutions (same function, slower on a CPU).
    """
    model = ResNet18(classes, one_pixel)
    # The RGB stem is built first and then replaced, as torchvision's would be: the seed's
    # random numbers fall on the same weights.
    model.conv1 = nn.Conv2d(CHANNELS, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast on the device when asked for; a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    """`resnet18.bf16`: true or false as set; "auto" where bfloat16 is native, so faster
    than float32 (a CUDA GPU that supports it, a CPU with avx512_bf16 or AMX)."""
    if setting != "auto":
        return bool(setting)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and compat.cpu_has_bf16()


def warn_if_slow_bf16(device: torch.device, bf16: bool) -> None:
    """Without bfloat16 instructions a CPU emulates them: slower than float32, not faster."""
    if bf16 and device.type == "cpu" and not compat.cpu_has_bf16():
        log.warning("this CPU has no bfloat16 instructions: set resnet18.bf16 to auto "
                    "in params.yaml for a faster run")


# -- Data ------------------------------------------------------------------------------------
def normalisation(train_x: Tensor) -> dict[str, float]:
    """The training pixels' mean and std (in [0, 1] units), rounded so the card is exact."""
    x = train_x.float().div(255)
    return {"mean": round(x.mean().item(), 6), "std": round(x.std().item(), 6)}


def prepare_images(x: Tensor, mean: float, std: float, device: torch.device | str = "cpu",
                   channels_last: bool = True) -> Tensor:
    """uint8 [N, 28, 28] -> float [N, 1, 28, 28], `(x/255 - mean)/std`, on the device."""
    x = x.to(device).float().div(255).sub(mean).div(std).unsqueeze(1)  # [N, 1, 28, 28]
    return x.contiguous(memory_format=memory_format(channels_last))


@dataclass(frozen=True)
class Prepared:
    """The sample as resnet18 reads it, on the device, built once before training."""

    train_x: Tensor  # float [N, 1, 28, 28], normalised
    train_y: Tensor  # int64 [N]: 1 for a 3, 0 for a 7, or the digit (class indices)
    valid_x: Tensor
    valid_y: Tensor
    input: dict  # how the images were prepared, for the model card


def prepare(sample: MnistSample, device: torch.device, channels_last: bool) -> Prepared:
    stats = normalisation(sample.train_x)

    def images(x: Tensor) -> Tensor:
        return prepare_images(x, stats["mean"], stats["std"], device, channels_last)

    return Prepared(
        images(sample.train_x), sample.train_y.long().to(device),
        images(sample.valid_x), sample.valid_y.long().to(device),
        input={
            "shape": [SIZE, SIZE],
            "dtype": "uint8",
            "digit": "light on dark, as in MNIST",
            "channels": CHANNELS,
            **stats,
            "prepare": "(x.float()/255 - mean)/std, viewed as [N, 1, 28, 28]",
        },
    )


# -- Training --------------------------------------------------------------------------------
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv and linear weights only; batchnorm and biases are left alone."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


@torch.inference_mode()
def predict_logits(model: nn.Module, x: Tensor, *, bf16: bool) -> Tensor:
    """Logits (float [N, 2], or [N, 10]) for prepared images, scored in large batches."""
    model.eval()
    chunks = []
    for xb in x.split(VALID_BATCH):
        with autocast(x.device, bf16):
            chunks.append(model(xb).float())
    return torch.cat(chunks)  # [N, 2]


def validate_epoch(model: nn.Module, data: Prepared, *, bf16: bool,
                   binary: bool = True) -> Validation:
    """Cross-entropy on the validation set; the 3's logit margin and probability per digit
    (on ten digits, the logits and the softmax)."""
    logits = predict_logits(model, data.valid_x, bf16=bf16)
    loss, probs = F.cross_entropy(logits, data.valid_y).item(), logits.softmax(dim=1)
    if not binary:
        return Validation(loss=loss, preds=logits, pred=logits.argmax(dim=1), probs=probs)
    margin = logits[:, 1] - logits[:, 0]  # sigmoid(l3 - l7) = softmax's p3
    return Validation(loss=loss, preds=margin, pred=binary_pred(margin), probs=probs)


def fit_one_cycle(model: nn.Module, data: Prepared, *, lr: float, epochs: int,
                  batch_size: int, pct_start: float, weight_decay: float,
                  max_momentum: float, base_momentum: float, bf16: bool, seed: int,
                  desc: str = "resnet18", binary: bool = True) -> Fit:
    """Train with cross-entropy, SGD + Nesterov momentum and a one-cycle schedule.

    Each epoch visits the training set in a fresh order from a generator seeded with `seed`,
    in batches of exactly `batch_size` (the remainder is dropped, as in fastai), and ends with
    one validation pass. `binary=False`: ten digits, scored by `digit_accuracy`.
    """
    n = len(data.train_x)
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise PipelineError(
            f"resnet18.batch_size: {batch_size} is more than the {n} training images"
        )
    device = data.train_x.device
    warn_if_slow_bf16(device, bf16)
    opt = torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=max_momentum,
                          nesterov=True, fused=True)
    # Momentum falls while the lr rises, then climbs back (fastai's moms=(0.95, 0.85, 0.95)).
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=per_epoch * epochs, pct_start=pct_start,
        base_momentum=base_momentum, max_momentum=max_momentum)
    order = torch.Generator().manual_seed(seed)

    def forward(xb: Tensor) -> Tensor:
        with autocast(device, bf16):
            return model(xb).float()  # [B, 2] (or [B, 10]); the loss in float32

    def one_epoch(epoch: int):
        model.train()
        batches = shuffled_batches(data.train_x, data.train_y, batch_size, order,
                                   drop_last=True)
        return train_epoch(forward, batches, opt, F.cross_entropy, sched=sched,
                           desc=f"{desc} {epoch}/{epochs}")

    return train_model(one_epoch, lambda: validate_epoch(model, data, bf16=bf16, binary=binary),
                       epochs=epochs, valid_y=data.valid_y, name=desc,
                       accuracy=batch_accuracy if binary else digit_accuracy)


def train_resnet18(params: Mapping, tensors: Path, dataset: str = "mnist_sample") -> StageResult:
    """Stage resnet18's whole run: the network from scratch, one cycle of `fit_one_cycle`."""
    train, p = params["train"], params["resnet18"]
    layout = DATASETS[dataset]
    classes = len(layout.names)  # one output per label: the chapter's index 1 is a 3
    # The chapter's card stays as it was, without labels; ten digits are named "0"-"9".
    labels = None if layout.binary else list(layout.names)
    clock = Clock()
    device = setup(train.seed, train.device, "resnet18")
    data = prepare(load_sample(tensors), device, p.channels_last)
    # Built on the CPU from the seeded generator, then moved: the same start on every device.
    model = resnet18(classes=classes).to(device, memory_format=memory_format(p.channels_last))
    bf16 = use_bf16(p.bf16, device)
    run = fit_one_cycle(model, data, lr=p.lr, epochs=p.epochs, batch_size=p.batch_size,
                        pct_start=p.pct_start, weight_decay=p.weight_decay,
                        max_momentum=p.max_momentum, base_momentum=p.base_momentum,
                        bf16=bf16, seed=train.seed, binary=layout.binary)
    card = model_card("resnet18", arch=arch(classes), input=card_input(data, bf16),
                      params=params, labels=labels)
    return trained_result(run, state=model.state_dict(), card=card, valid_y=data.valid_y,
                          names=layout.names, clock=clock, device=device)


def card_input(data: Prepared, bf16: bool) -> dict:
    """The model card's `input`: how to prepare and score images to reproduce the stage."""
    return {**data.input, "autocast": "bfloat16" if bf16 else "none"}


# -- Reloading -------------------------------------------------------------------------------
def load_predictor(state: Mapping[str, Tensor], card: Mapping) -> Callable[[Tensor], Tensor]:
    """A classifier from a checkpoint: uint8 [N, 28, 28] -> float [N, C], the softmax, as the
    stage's `probs` (the chapter's two outputs: 7, then 3).

    It prepares images and scores them exactly as the stage scored the validation set
    (same normalisation, same autocast), so it reproduces the stage's predictions.
    """
    if card.get("model") != "resnet18":
        raise PipelineError(f"resnet.py holds resnet18, not {card.get('model')!r}")
    inp = card.get("input", {})
    try:
        mean, std = float(inp["mean"]), float(inp["std"])
    except (KeyError, TypeError, ValueError):
        raise PipelineError("resnet18 model card: input.mean and input.std are needed") from None
    model = resnet18(classes=len(card_names(card)))
    try:
        model.load_state_dict(dict(state))
    except RuntimeError as e:  # missing, unexpected or misshapen tensors
        why = " ".join(str(e).strip().splitlines()[:2])
        raise PipelineError(f"checkpoint does not fit a resnet18 model: {why}") from None
    channels_last = card.get("params", {}).get("resnet18", {}).get("channels_last", True)
    model = model.to(memory_format=memory_format(channels_last)).eval()
    bf16 = inp.get("autocast") == "bfloat16"

    def predict(x: Tensor) -> Tensor:
        images = prepare_images(x, mean, std, channels_last=channels_last)
        return predict_logits(model, images, bf16=bf16).softmax(dim=1)

    return predict
