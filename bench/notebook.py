"""The book's chapter 4, as its notebook runs it with fastai: what `make bench` compares with.

    .venv-fastai/bin/python bench/notebook.py chapter --archive mnist_sample.tgz
    .venv-fastai/bin/python bench/notebook.py resnet18 --archive mnist_png.tgz   # ten digits

It runs in its own environment (`make fastai-venv`: bench/fastai-requirements.txt, the same
torch) and imports nothing from this project. `chapter` runs the notebook's cells in order:
unpacking the archive, stacking the PNGs, the pixel-mean baseline, the SGD example, the
linear model trained by hand, `nn.Linear` with `BasicOptim`, fastai's `Learner`, `simple_net`
and resnet18's `fit_one_cycle(1, 0.1)`; `resnet18` runs only the last (and its unpacking).
It prints one JSON object: the seconds of each part, resnet18's accuracy, torch's threads and
the versions.

The archive is unpacked with the same code `untar_data` ends with, into a scratch
FASTAI_HOME: `untar_data` itself would first compare the file with fastai's recorded checksum
and download it again when they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()
SECONDS: dict[str, float] = {}


def part(name: str, since: float) -> float:
    now = time.perf_counter()
    SECONDS[name] = round(now - since, 3)
    return now


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["chapter", "resnet18"])
    ap.add_argument("--archive", type=Path, required=True,
                    help="mnist_sample.tgz (train/valid, 3s and 7s) or mnist_png.tgz "
                         "(training/testing, ten digits)")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="fastai-home-")
    os.environ["FASTAI_HOME"] = home

    from fastai.vision.all import (  # noqa: F401 (the notebook's `from fastai.vision.all import *`)
        SGD,
        DataLoader,
        DataLoaders,
        F,
        Image,
        ImageDataLoaders,
        Learner,
        accuracy,
        nn,
        resnet18,
        tensor,
        torch,
        vision_learner,
    )
    from fastcore.xtras import untar_dir
    t = part("import", START)

    path = untar_dir(args.archive, Path(home) / "data")  # the folder the archive holds
    t = part("untar", t)
    ten = (path / "training").is_dir()

    if args.what == "chapter":
        if ten:
            ap.error("chapter: the 3s and 7s of mnist_sample.tgz")
        t = chapter(path, t, locals())

    train, valid = ("training", "testing") if ten else ("train", "valid")
    dls = ImageDataLoaders.from_folder(path, train=train, valid=valid)
    learn = vision_learner(dls, resnet18, pretrained=False, loss_func=F.cross_entropy,
                           metrics=accuracy)
    t = part("resnet18_setup", t)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 0.1)
    t = part("resnet18_fit", t)
    acc = float(learn.recorder.values[-1][-1])

    import fastai
    print(json.dumps({
        "what": args.what, "archive": args.archive.name, "seconds": SECONDS,
        "total_seconds": round(time.perf_counter() - START, 3), "resnet18_accuracy": acc,
        "threads": torch.get_num_threads(), "fastai": fastai.__version__,
        "torch": torch.__version__, "python": sys.version.split()[0],
    }))
    return 0


def chapter(path: Path, t: float, fa: dict) -> float:
    """The notebook's cells before resnet18, as the book writes them."""
    torch, tensor, Image, nn = fa["torch"], fa["tensor"], fa["Image"], fa["nn"]
    DataLoader, DataLoaders, Learner, SGD = (fa["DataLoader"], fa["DataLoaders"], fa["Learner"],
                                             fa["SGD"])

    def stacked(folder: Path):
        return torch.stack([tensor(Image.open(o)) for o in folder.ls().sorted()]).float() / 255

    threes, sevens = stacked(path / "train/3"), stacked(path / "train/7")
    valid_3_tens, valid_7_tens = stacked(path / "valid/3"), stacked(path / "valid/7")
    t = part("stack", t)

    mean3, mean7 = threes.mean(0), sevens.mean(0)

    def mnist_distance(a, b):
        return (a - b).abs().mean((-1, -2))

    def is_3(x):
        return mnist_distance(x, mean3) < mnist_distance(x, mean7)

    accuracy_3s = is_3(valid_3_tens).float().mean()
    accuracy_7s = (1 - is_3(valid_7_tens).float()).mean()
    assert (accuracy_3s + accuracy_7s) / 2 > 0.9
    t = part("pixel_mean", t)

    # The SGD walk-through: a quadratic fitted to 20 noisy speeds.
    time_ = torch.arange(0, 20).float()
    speed = torch.randn(20) * 3 + 0.75 * (time_ - 9.5) ** 2 + 1
    params = torch.randn(3).requires_grad_()
    for _ in range(10):
        a, b, c = params
        loss = ((a * (time_ ** 2) + (b * time_) + c - speed) ** 2).mean()
        loss.backward()
        params.data -= 1e-5 * params.grad.data
        params.grad = None
    t = part("sgd_example", t)

    train_x = torch.cat([threes, sevens]).view(-1, 28 * 28)
    train_y = tensor([1] * len(threes) + [0] * len(sevens)).unsqueeze(1)
    valid_x = torch.cat([valid_3_tens, valid_7_tens]).view(-1, 28 * 28)
    valid_y = tensor([1] * len(valid_3_tens) + [0] * len(valid_7_tens)).unsqueeze(1)
    dl = DataLoader(list(zip(train_x, train_y, strict=True)), batch_size=256)
    valid_dl = DataLoader(list(zip(valid_x, valid_y, strict=True)), batch_size=256)

    def init_params(size, std=1.0):
        return (torch.randn(size) * std).requires_grad_()

    def mnist_loss(predictions, targets):
        predictions = predictions.sigmoid()
        return torch.where(targets == 1, 1 - predictions, predictions).mean()

    def batch_accuracy(xb, yb):
        return ((xb.sigmoid() > 0.5) == yb).float().mean()

    def validate_epoch(model):
        return round(torch.stack([batch_accuracy(model(xb), yb) for xb, yb in valid_dl])
                     .mean().item(), 4)

    weights, bias = init_params((28 * 28, 1)), init_params(1)

    def linear1(xb):
        return xb @ weights + bias

    def calc_grad(xb, yb, model):
        mnist_loss(model(xb), yb).backward()

    def train_epoch(model, lr, params):
        for xb, yb in dl:
            calc_grad(xb, yb, model)
            for p in params:
                p.data -= p.grad * lr
                p.grad.zero_()

    for _ in range(20):
        train_epoch(linear1, 1.0, (weights, bias))
    validate_epoch(linear1)
    t = part("linear", t)

    class BasicOptim:
        def __init__(self, params, lr):
            self.params, self.lr = list(params), lr

        def step(self, *args, **kwargs):
            for p in self.params:
                p.data -= p.grad.data * self.lr

        def zero_grad(self, *args, **kwargs):
            for p in self.params:
                p.grad = None

    linear_model = nn.Linear(28 * 28, 1)
    opt = BasicOptim(linear_model.parameters(), 1.0)
    for _ in range(20):
        for xb, yb in dl:
            calc_grad(xb, yb, linear_model)
            opt.step()
            opt.zero_grad()
    validate_epoch(linear_model)
    t = part("nn_linear", t)

    dls = DataLoaders(dl, valid_dl)
    learn = Learner(dls, nn.Linear(28 * 28, 1), opt_func=SGD, loss_func=mnist_loss,
                    metrics=batch_accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fit(10, lr=1.0)
    t = part("learner_linear", t)

    simple_net = nn.Sequential(nn.Linear(28 * 28, 30), nn.ReLU(), nn.Linear(30, 1))
    learn = Learner(dls, simple_net, opt_func=SGD, loss_func=mnist_loss, metrics=batch_accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fit(40, 0.1)
    return part("mlp", t)


if __name__ == "__main__":
    sys.exit(main())
