"""Stages of spread/dvc.yaml: one trained method, run once under one seed (the seed spread)
or with one key of its params section changed as well (the sweep).

The run is the chapter stage's own (the same function, params.yaml's values), with
`train.seed` replaced by --seed and `<method>.<key>` by each --set. It writes one small JSON
(the accuracies and losses the chapter stage's metrics hold, and what was changed) and no
checkpoint: `make spread` runs every seed and value in params.yaml `spread` and `sweep`.

    python stages/spread.py mlp --seed 3 --tensors data/mnist_sample.safetensors \
        --out metrics/spread/mlp_seed3.json
    python stages/spread.py mlp --seed 0 --set lr=0.05 --tensors data/mnist_sample.safetensors \
        --out metrics/sweep/value0.05_seed0.json
"""

import argparse
import importlib
from pathlib import Path

from mnist_basics import PipelineError
from mnist_basics.artifacts import write_json
from mnist_basics.params import PARAMS, load, load_yaml
from mnist_basics.pipeline import cli
from mnist_basics.registry import METHODS, TRAINED


def trainer(method: str):
    """The chapter stage's run, by the registry: its module alone is imported, so the small
    models never load torchvision."""
    spec = METHODS[method]
    return getattr(importlib.import_module(spec.import_name), spec.trainer)


def changes(pairs: list[str]) -> dict[str, object]:
    """`--set lr=0.05` -> {"lr": 0.05}: each value read as params.yaml reads it."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PipelineError(f"--set {pair}: expected KEY=VALUE, e.g. --set lr=0.05")
        out[key] = load_yaml(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="stages/spread.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("method", choices=TRAINED)
    ap.add_argument("--seed", type=int, required=True, help="in place of train.seed")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="in place of a key of the method's section (repeatable)")
    ap.add_argument("--out", type=Path, required=True, metavar="PATH", help="written")
    ap.add_argument("--tensors", type=Path, required=True, metavar="PATH", help="read")
    ap.add_argument("--params", type=Path, default=Path(PARAMS),
                    help="reads sections train and the method's (default: %(default)s)")
    args = ap.parse_args()
    changed = changes(args.set)
    params = load(args.params, "train", args.method,
                  overrides={"train": {"seed": args.seed}, args.method: changed})
    result = trainer(args.method)(params, args.tensors)
    write_json(args.out, {"method": args.method, "seed": args.seed, "set": changed,
                          **result.metrics, **result.classes})


if __name__ == "__main__":
    cli.run(main)
