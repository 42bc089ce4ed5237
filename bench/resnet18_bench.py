"""What makes stage resnet18 fast on a CPU, and how accurate it is over seeds.

    python bench/resnet18_bench.py speed               # images/s of each training setup
    python bench/resnet18_bench.py speed --threads 1 --steps 20 --repeat 5
    python bench/resnet18_bench.py accuracy --seeds 0 1 2   # whole epochs, default params

`speed` times training steps (forward, backward, optimizer) on real digits, after two warm-up
steps, for each setup below, the setups taking turns `--repeat` times; it prints the best and
the median, since a shared machine makes single timings noisy. `accuracy` runs
`fit_one_cycle` with the params file's resnet18 section (override any key:
`--set lr=0.03 bf16=false`) once per seed and prints validation accuracy and train+validate
seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mnist_basics.data.stack import load_sample  # noqa: E402
from mnist_basics.methods.resnet import (  # noqa: E402
    autocast,
    fit_one_cycle,
    memory_format,
    param_groups,
    prepare,
    resnet18,
    use_bf16,
)
from mnist_basics.params import load  # noqa: E402

NATIVE = use_bf16("auto", torch.device("cpu"))


def setups(batch: int) -> dict[str, tuple[int, bool, bool, bool]]:
    """name -> (batch size, channels_last, bf16, one-pixel convs); the stage's default is
    first: the params file's batch size, bfloat16 where this machine runs it natively
    (resnet18.bf16: auto), else float32."""
    return {
        f"default: bs{batch} channels_last {'bf16' if NATIVE else 'float32'} one-pixel":
            (batch, True, NATIVE, True),
        "plain torchvision convs": (batch, True, NATIVE, False),
        "float32" if NATIVE else "bf16 (emulated here)": (batch, True, not NATIVE, True),
        "contiguous (NCHW)": (batch, False, NATIVE, True),
        "float32 NCHW plain (the naive setup)": (batch, False, False, False),
        **{f"batch {b}": (b, True, NATIVE, True) for b in (64, 128, 256, 512) if b != batch},
    }


def time_steps(x: torch.Tensor, y: torch.Tensor, batch_size: int, channels_last: bool,
               bf16: bool, one_pixel: bool, steps: int) -> float:
    """Seconds for `steps` training steps of batch_size images (after 2 warm-up steps)."""
    torch.manual_seed(0)
    fmt = memory_format(channels_last)
    model = resnet18(one_pixel=one_pixel).to(memory_format=fmt).train()
    opt = torch.optim.SGD(param_groups(model, 0.01), lr=0.01, momentum=0.9, nesterov=True,
                          fused=True)
    cpu = torch.device("cpu")
    start = 0.0
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        i = (step * batch_size) % (len(x) - batch_size)
        xb = x[i:i + batch_size].contiguous(memory_format=fmt)
        with autocast(cpu, bf16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), y[i:i + batch_size])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def speed(args) -> None:
    data = prepare(load_sample(args.tensors), torch.device("cpu"), channels_last=False)
    n_train = len(data.train_x)
    print(f"threads {torch.get_num_threads()}, {args.steps} steps x {args.repeat} repeats; "
          f"epoch = {n_train} images")
    each = setups(load(args.params, "resnet18")["resnet18"].batch_size)
    rates: dict[str, list[float]] = {name: [] for name in each}
    for _ in range(args.repeat):  # setups take turns, so a busy spell hits them all alike
        for name, (bs, cl, bf16, one_pixel) in each.items():
            seconds = time_steps(data.train_x, data.train_y, bs, cl, bf16, one_pixel, args.steps)
            rates[name].append(args.steps * bs / seconds)
    print(f"{'setup':45s} {'img/s best':>10s} {'median':>8s} {'epoch s (best)':>15s}")
    for name, r in rates.items():
        best, median = max(r), statistics.median(r)
        print(f"{name:45s} {best:10.0f} {median:8.0f} {n_train / best:15.1f}")


def accuracy(args) -> None:
    params = load(args.params, "train", "resnet18")
    p = params["resnet18"].model_dump()
    for item in args.set:
        key, value = item.split("=", 1)
        if key == "bf16":  # true, false or auto
            p[key] = value if value == "auto" else value.lower() == "true"
        else:
            p[key] = value.lower() == "true" if isinstance(p[key], bool) else type(p[key])(value)
    data = prepare(load_sample(args.tensors), torch.device("cpu"), p["channels_last"])
    print(f"threads {torch.get_num_threads()}; resnet18 {p}")
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = resnet18().to(memory_format=memory_format(p["channels_last"]))
        run = fit_one_cycle(model, data, seed=seed, lr=p["lr"], epochs=p["epochs"],
                            batch_size=p["batch_size"], pct_start=p["pct_start"],
                            weight_decay=p["weight_decay"], max_momentum=p["max_momentum"],
                            base_momentum=p["base_momentum"],
                            bf16=use_bf16(p["bf16"], torch.device("cpu")))
        last = run.history[-1]
        print(f"seed {seed:3d}: accuracy {last['valid_accuracy']:.4f}, valid_loss "
              f"{last['valid_loss']:.4f}, train+validate {run.train_seconds:.1f} s, "
              f"{run.images / run.train_seconds:.0f} img/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("what", choices=["speed", "accuracy"])
    ap.add_argument("--tensors", type=Path, default=ROOT / "data/mnist_sample.safetensors")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--threads", type=int, default=None, help="default: every core")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per measurement")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per setup")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override a resnet18 param for `accuracy`")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    speed(args) if args.what == "speed" else accuracy(args)


if __name__ == "__main__":
    main()
