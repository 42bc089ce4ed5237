"""resnet18: the model, its one-cycle training, stage `resnet18`, and reloading a checkpoint."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from mnist_basics import compat
from mnist_basics.artifacts import load_tensors
from mnist_basics.chapter.train import batch_accuracy, setup
from mnist_basics.data.stack import load_sample
from mnist_basics.methods.resnet import (
    OnePixelConv2d,
    fit_one_cycle,
    load_predictor,
    predict_logits,
    prepare,
    prepare_images,
    resnet18,
    use_bf16,
    validate_epoch,
)
from mnist_basics.pipeline.definition import BY_NAME
from tests.harness import ROOT, make_tiny_tensors, run_stage, write_params

COMMITTED = yaml.safe_load((ROOT / "params.yaml").read_text())
STAGE = BY_NAME["resnet18"]
TINY = {"train": {"device": "cpu", "seed": 7},
        "resnet18": {"batch_size": 16, "lr": 0.02}}  # 96 images: 6 steps


def stock_resnet18(classes: int = 2) -> nn.Module:
    """What the module docstring says resnet18() is, built from torchvision directly."""
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


# -- The model -------------------------------------------------------------------------------
def test_resnet18_reads_one_channel_digits_and_gives_two_logits():
    torch.manual_seed(0)
    model = resnet18()
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    assert model.fc.out_features == 2
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 2)
    # The checkpoint is torchvision's: same tensor names and shapes.
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in stock_resnet18().state_dict().items()}


@pytest.mark.parametrize("channels, size, kernel, stride, padding", [
    (64, 1, 3, 1, 1),  # layer4's 3x3 convs on a 1x1 map: the centre tap
    (32, 2, 3, 2, 1),  # layer4.0.conv1: 2x2 -> 1x1, four taps
    (32, 2, 1, 2, 0),  # layer4.0.downsample: a strided 1x1 conv
    (16, 4, 3, 1, 1),  # a 4x4 output: nn.Conv2d's own path
])
def test_one_pixel_conv_computes_what_conv2d_computes(channels, size, kernel, stride, padding):
    torch.manual_seed(0)
    ref = nn.Conv2d(channels, 48, kernel, stride=stride, padding=padding, bias=False)
    ours = OnePixelConv2d(channels, 48, kernel, stride=stride, padding=padding, bias=False)
    ours.weight = nn.Parameter(ref.weight.detach().clone())
    x = torch.randn(6, channels, size, size)
    outputs, grads = [], []
    for conv in (ref, ours):
        xi = x.clone().requires_grad_()
        y = conv(xi)
        (y * torch.arange(y.numel()).view_as(y).cos()).sum().backward()  # any upstream grad
        outputs.append(y)
        grads.append((xi.grad, conv.weight.grad))
    assert outputs[0].shape == outputs[1].shape
    torch.testing.assert_close(outputs[1], outputs[0])
    torch.testing.assert_close(grads[1][0], grads[0][0])  # w.r.t. the input
    torch.testing.assert_close(grads[1][1], grads[0][1])  # w.r.t. every tap, zeros included


def test_one_pixel_conv_keeps_a_plain_kernel_in_a_channels_last_model():
    model = resnet18().to(memory_format=torch.channels_last)
    conv = model.layer4[1].conv2
    assert conv.weight.is_contiguous()  # else the fused SGD step copies it there and back
    assert model.layer3[1].conv2.weight.is_contiguous(memory_format=torch.channels_last)
    F.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.arange(4) % 2).backward()
    assert conv.weight.grad.stride() == conv.weight.stride()  # no copy to match it either


def test_resnet18_is_torchvisions_function():
    torch.manual_seed(0)
    ours, stock = resnet18(), stock_resnet18()
    stock.load_state_dict(ours.state_dict())
    x = torch.randn(8, 1, 28, 28)
    for mode in (True, False):
        ours.train(mode)
        stock.train(mode)
        torch.testing.assert_close(ours(x), stock(x), rtol=1e-4, atol=1e-5)
    ours.train()
    stock.train()
    F.cross_entropy(ours(x), torch.arange(8) % 2).backward()
    F.cross_entropy(stock(x), torch.arange(8) % 2).backward()
    for (name, a), b in zip(ours.named_parameters(), stock.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize("classes", [2, 10])
def test_resnet18_starts_from_the_weights_torchvision_gives_the_same_seed(classes):
    torch.manual_seed(3)
    ours = resnet18(classes=classes).state_dict()
    after_ours = torch.rand(4)  # what the seed's generator gives next
    torch.manual_seed(3)
    stock = stock_resnet18(classes).state_dict()
    after_stock = torch.rand(4)
    assert list(ours) == list(stock)  # same names, same order
    for name, tensor in stock.items():
        assert torch.equal(ours[name], tensor), name
    assert torch.equal(after_ours, after_stock)


def test_bf16_auto_follows_the_hardware_and_true_or_false_is_kept():
    cpu = torch.device("cpu")
    assert use_bf16("auto", cpu) is compat.cpu_has_bf16()
    assert use_bf16(True, cpu) is True and use_bf16(False, cpu) is False
    assert use_bf16("auto", torch.device("meta")) is False  # neither a CPU nor a GPU


def test_images_are_normalised_with_the_training_statistics(tiny_tensors):
    data = prepare(load_sample(tiny_tensors), torch.device("cpu"), channels_last=True)
    assert data.train_x.shape == (96, 1, 28, 28) and data.train_x.dtype == torch.float32
    assert abs(data.train_x.mean().item()) < 1e-4
    assert abs(data.train_x.std().item() - 1) < 1e-3
    assert data.train_y.dtype == torch.int64 and set(data.train_y.tolist()) == {0, 1}
    assert data.input["channels"] == 1
    x = load_sample(tiny_tensors).valid_x
    expected = (x.float() / 255 - data.input["mean"]) / data.input["std"]
    torch.testing.assert_close(prepare_images(x, data.input["mean"], data.input["std"]),
                               expected.unsqueeze(1))


# -- Training --------------------------------------------------------------------------------
def test_fit_one_cycle_follows_the_schedule_and_learns(tiny_tensors):
    device = setup(0, "cpu", "resnet18")
    data = prepare(load_sample(tiny_tensors), device, channels_last=True)
    model = resnet18().to(memory_format=torch.channels_last)
    run = fit_one_cycle(model, data, lr=0.02, epochs=2, batch_size=16, pct_start=0.25,
                        weight_decay=0.01, max_momentum=0.95, base_momentum=0.85, bf16=True,
                        seed=0)
    assert [r["epoch"] for r in run.history] == [1, 2]
    assert [s["step"] for s in run.steps] == list(range(1, 13))  # 2 epochs of 96 // 16
    lrs = [s["lr"] for s in run.steps]
    # OneCycleLR: from lr/25 up to lr after pct_start of the steps, then down to ~0.
    assert lrs[0] == pytest.approx(0.02 / 25)
    assert max(lrs) == pytest.approx(0.02, rel=0.05) and lrs.index(max(lrs)) == 2
    assert lrs[-1] < lrs[0]
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False))
    assert run.history[1]["train_loss"] < run.history[0]["train_loss"]
    assert run.images == 192
    last = run.last  # the last epoch's validation, on the CPU
    assert last.preds.shape == last.pred.shape == (48,) and last.probs.shape == (48, 2)
    assert last.probs.dtype == torch.float32 and last.probs.device.type == "cpu"
    assert batch_accuracy(last.preds, data.valid_y).item() == run.history[-1]["valid_accuracy"]
    # What training left is what the model scores now: preds are the 3's logit margin.
    again = validate_epoch(model, data, bf16=True)
    torch.testing.assert_close(again.probs, last.probs)
    torch.testing.assert_close(again.preds, last.preds)
    assert again.loss == pytest.approx(run.history[-1]["valid_loss"], abs=1e-6)
    logits = predict_logits(model, data.valid_x, bf16=True)
    assert logits.shape == (48, 2)
    torch.testing.assert_close(last.probs, logits.softmax(1))  # by label: 7, then 3
    torch.testing.assert_close(last.probs[:, 1], last.preds.sigmoid())
    assert torch.equal(last.pred, (last.preds.sigmoid() > 0.5).long())


def test_shuffling_follows_the_seed(tiny_tensors):
    data = prepare(load_sample(tiny_tensors), setup(0, "cpu", "resnet18"), channels_last=True)

    def losses(seed: int) -> list[float]:
        torch.manual_seed(0)  # the same start, so only the batch order differs
        run = fit_one_cycle(resnet18(), data, lr=0.02, epochs=1, batch_size=32, pct_start=0.25,
                            weight_decay=0.01, max_momentum=0.95, base_momentum=0.85,
                            bf16=False, seed=seed)
        return [s["loss"] for s in run.steps]

    assert losses(1) == losses(1)
    assert losses(1) != losses(2)


# -- The stage -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The stage run twice on tiny data with the same params: (run a, run b, tensors)."""
    tmp = tmp_path_factory.mktemp("resnet18")
    tensors = make_tiny_tensors(tmp / "tiny.safetensors")
    params = write_params(tmp / "params.yaml", **TINY)
    runs = (tmp / "a", tmp / "b")
    for out in runs:
        r = run_stage("resnet18", under=out, params=params, tensors=tensors)
        assert r.returncode == 0, r.stderr
    assert "epoch 1/1: train_loss" in r.stderr  # one log line per epoch
    return *runs, tensors


def test_stage_writes_every_output(two_runs):
    a, _, tensors = two_runs
    metrics = json.loads((a / "metrics/resnet18.json").read_text())
    assert list(metrics) == ["accuracy", "epochs", "train_loss", "valid_loss"]
    per_class = json.loads((a / "metrics/resnet18_classes.json").read_text())
    assert metrics["epochs"] == 1

    rows = list(csv.DictReader((a / "metrics/resnet18_history.csv").open()))
    assert list(rows[0]) == ["epoch", "train_loss", "valid_loss", "valid_accuracy"]
    assert [r["epoch"] for r in rows] == ["1"]
    assert float(rows[0]["valid_loss"]) == metrics["valid_loss"]
    assert float(rows[0]["train_loss"]) == metrics["train_loss"]

    steps = list(csv.DictReader((a / "metrics/resnet18_steps.csv").open()))
    assert list(steps[0]) == ["step", "lr", "loss"]
    assert [int(s["step"]) for s in steps] == [1, 2, 3, 4, 5, 6]
    assert float(steps[0]["lr"]) == pytest.approx(0.02 / 25)
    mean_loss = sum(float(s["loss"]) for s in steps) / 6
    assert mean_loss == pytest.approx(metrics["train_loss"], abs=1e-5)

    timing = json.loads((a / "metrics/resnet18_timing.json").read_text())
    assert set(timing) == {"process_seconds", "seconds", "train_seconds", "images_per_second",
                           "epoch_seconds", "device", "threads"}
    assert timing["device"] == "cpu" and timing["threads"] == 1
    # The whole process (imports too) outlasts the stage's own clock, which outlasts training.
    assert timing["process_seconds"] > timing["seconds"] >= timing["train_seconds"]
    assert len(timing["epoch_seconds"]) == 1
    # 6 full batches of 16 of the 96 images, to the 3 decimals train_seconds is kept to:
    ips = timing["images_per_second"]
    assert ips * timing["train_seconds"] == pytest.approx(96, abs=ips * 5e-4 + 0.5)
    assert timing["seconds"] >= timing["train_seconds"] > 0

    card = json.loads((a / "models/resnet18.json").read_text())
    assert card["model"] == "resnet18"
    assert card["arch"]["in_channels"] == 1 and card["arch"]["num_classes"] == 2
    assert card["params"] == {"train": {**COMMITTED["train"], **TINY["train"]},
                              "resnet18": {**COMMITTED["resnet18"], **TINY["resnet18"]}}
    assert card["input"]["channels"] == 1 and 0 < card["input"]["std"]
    # resnet18.bf16 is "auto": bfloat16 only where this CPU runs it natively.
    assert card["input"]["autocast"] == ("bfloat16" if compat.cpu_has_bf16() else "none")

    preds = load_tensors(a / "models/resnet18_valid.safetensors")
    assert {k: (list(v.shape), v.dtype) for k, v in preds.items()} == {
        "pred": ([48], torch.int64), "probs": ([48, 2], torch.float32)}
    assert ((preds["probs"] >= 0) & (preds["probs"] <= 1)).all()
    valid_y = load_sample(tensors).valid_y
    right = (preds["pred"] == valid_y).float()
    assert metrics["accuracy"] == round(right.mean().item(), 6)
    assert per_class == {"accuracy_3": round(right[valid_y == 1].mean().item(), 6),
                         "accuracy_7": round(right[valid_y == 0].mean().item(), 6)}


def test_stage_reruns_are_byte_identical(two_runs):
    a, b, _ = two_runs
    for rel in ("models/resnet18.safetensors", "models/resnet18_valid.safetensors",
                "models/resnet18.json", "metrics/resnet18.json", "metrics/resnet18_steps.csv",
                "metrics/resnet18_history.csv"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_load_predictor_gives_back_the_stage_predictions(two_runs):
    a, _, tensors = two_runs
    state = load_tensors(a / "models/resnet18.safetensors")
    card = json.loads((a / "models/resnet18.json").read_text())
    probs = load_tensors(a / "models/resnet18_valid.safetensors")["probs"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the stage ran: bfloat16 sums depend on how work is split
    try:
        predict = load_predictor(state, card)
        valid_x = load_sample(tensors).valid_x  # uint8 [48, 28, 28]
        with torch.inference_mode():
            torch.testing.assert_close(predict(valid_x), probs)
            assert predict(valid_x[:1]).shape == (1, 2)  # one image, as predict.py sends it
    finally:
        torch.set_num_threads(threads)


def test_load_predictor_refuses_a_foreign_checkpoint(two_runs):
    from mnist_basics import PipelineError

    a = two_runs[0]
    state = load_tensors(a / "models/resnet18.safetensors")
    card = json.loads((a / "models/resnet18.json").read_text())
    state["fc.weight"] = torch.zeros(10, 512)
    with pytest.raises(PipelineError, match="does not fit a resnet18 model"):
        load_predictor(state, card)
    with pytest.raises(PipelineError, match="not 'mlp'"):
        load_predictor(state, {**card, "model": "mlp"})


def test_a_batch_larger_than_the_data_is_a_clear_error(tiny_tensors, tmp_path):
    params = write_params(tmp_path / "params.yaml", **{**TINY, "resnet18": {"batch_size": 512}})
    r = run_stage("resnet18", under=tmp_path / "out", params=params, tensors=tiny_tensors)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "error: resnet18.batch_size: 512 is more than the 96 training images")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_tensors, tmp_path):
    params = write_params(tmp_path / "params.yaml", **{**TINY, "train": {"device": "cuda"}})
    r = run_stage("resnet18", under=tmp_path / "out", params=params, tensors=tiny_tensors,
                  env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: train.device: 'cuda' was asked for but no CUDA device is available; "
        "set train.device to 'auto' or 'cpu' in params.yaml"
    ]
    assert not (tmp_path / "out").exists()


def test_stage_help():
    r = subprocess.run([*STAGE.argv(), "--help"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0
    assert "sections train, resnet18" in r.stdout
    assert "--steps PATH" in r.stdout
