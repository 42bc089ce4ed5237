"""The pipeline's one definition: every stage, its script, inputs, params and outputs.

Both engines read this list and nothing else:
- `dvc.yaml` is generated from it (`make dvc.yaml`, i.e. `python -m mnist_basics.pipeline`),
  committed, and checked to be current by `tests/test_engines.py`;
- the `Snakefile` builds one rule per stage from it (`mnist_basics/bridge.py` keeps the two
  engines in one state).

Every path a stage reads or writes is named once here. It reaches the stage script as the
default of a command-line flag (`python stages/mlp.py --help` lists them), so a stage's
command is just `python stages/<name>.py`, and a test points any path elsewhere with
`Stage.argv`.

Run `python -m mnist_basics.pipeline --check` to verify that dvc.yaml matches.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DVC_YAML = ROOT / "dvc.yaml"
PARAMS = "params.yaml"

# -- Artifacts -------------------------------------------------------------------------------
# The verified archive, kept whole and re-packed canonically: the stack stage reads its PNGs
# without extracting them, and any faithful copy of the source gives the same bytes.
ARCHIVE = "data/mnist_sample.tgz"
TENSORS = "data/mnist_sample.safetensors"  # train_x, train_y, valid_x, valid_y (uint8)
COUNTS = "data/counts.json"  # images per split and class

METHODS = ("pixel_mean", "linear", "mlp", "resnet18")
TRAINED = ("linear", "mlp", "resnet18")  # the methods that train, on a GPU when there is one


def checkpoint(name: str) -> str:
    return f"models/{name}.safetensors"


def model_card(name: str) -> str:
    """The JSON beside a checkpoint: architecture and the params it was trained with."""
    return f"models/{name}.json"


def predictions(name: str) -> str:
    """Each method's verdict on every validation digit, for the report's mistakes and confusion."""
    return f"models/{name}_valid.safetensors"


def metrics(name: str) -> str:
    """Results only (accuracies, losses): equal params give equal bytes."""
    return f"metrics/{name}.json"


def history(name: str) -> str:
    """One row per epoch, results only, like the metrics."""
    return f"metrics/{name}_history.csv"


def timing(name: str) -> str:
    """Wall-clock figures: the one file of a stage that differs between two identical runs."""
    return f"metrics/{name}_timing.json"


STEPS = "metrics/resnet18_steps.csv"  # per-step loss and learning rate of the one-cycle run
SGD_EXAMPLE = {  # the chapter's SGD walk-through and its small examples
    "tensors": "data/sgd_example.safetensors",  # time, speed, params/preds/loss per step, curves
    "metrics": "metrics/sgd_example.json",
    "steps": "metrics/sgd_example.csv",  # the loss and a, b, c at every step
}
REPORT = "reports/index.html"
ACCURACY_CSV = "reports/accuracy.csv"

# Outputs that hold this run's wall-clock figures (the page shows when it was written and the
# seconds): the only outputs that two runs with the same params and code write differently.
WALL_CLOCK = (*(timing(m) for m in METHODS), REPORT)

# The shared code each stage imports; editing a module reruns exactly the stages listed here.
# tests/test_engines.py checks the lists against what each stage script really imports.
CORE = [
    "mnist_basics/__init__.py",
    "mnist_basics/artifacts.py",
    "mnist_basics/cli.py",
    "mnist_basics/pipeline.py",
]
PARAMS_CODE = "mnist_basics/params.py"
TRAINING = [*CORE, "mnist_basics/compat.py", "mnist_basics/data.py", "mnist_basics/train.py"]
MODEL_CODE = {  # the module that holds each method
    "pixel_mean": "mnist_basics/pixel_mean.py",
    "linear": "mnist_basics/models.py",
    "mlp": "mnist_basics/models.py",
    "resnet18": "mnist_basics/resnet.py",
}


@dataclass(frozen=True)
class Stage:
    """One stage: `python stages/<name>.py`, each path the default of one of its flags."""

    name: str
    inputs: dict[str, str] = field(default_factory=dict)  # flag -> path read
    outputs: dict[str, str] = field(default_factory=dict)  # flag -> path written (DVC-cached)
    metrics: dict[str, str] = field(default_factory=dict)  # flag -> small JSON kept in git
    plots: dict[str, str] = field(default_factory=dict)  # flag -> CSV kept in git
    code: list[str] = field(default_factory=list)  # package modules the stage imports
    params: list[str] = field(default_factory=list)  # params.yaml sections the stage reads
    gpu: bool = False  # trains a model: one GPU (or the whole CPU) at a time
    multicore: bool = False  # uses every core it is given (the others use one thread)
    plot_axes: dict[str, tuple[str, str]] = field(default_factory=dict)  # plot path -> (x, y)

    @property
    def script(self) -> str:
        return f"stages/{self.name}.py"

    @property
    def deps(self) -> list[str]:
        return [self.script, *self.code, *self.inputs.values()]

    @property
    def files(self) -> dict[str, str]:
        """flag -> path for everything the stage reads and writes."""
        return {**self.inputs, **self.outputs, **self.metrics, **self.plots}

    @property
    def all_outputs(self) -> list[str]:
        return [*self.outputs.values(), *self.metrics.values(), *self.plots.values()]

    @property
    def cmd(self) -> str:
        """The command both engines run: every path is the flag's default."""
        return f"python {self.script}"

    def argv(self, *, python: str = sys.executable, root: str | Path = ROOT,
             under: str | Path | None = None, params: str | Path | None = None,
             **paths: str | Path) -> list[str]:
        """The command with explicit paths, for tests and benchmarks: the script under `root`,
        `paths` by flag name, every other path `under` a folder, another params file."""
        out = [python, str(Path(root) / self.script)]
        if params is not None:
            out += ["--params", str(params)]
        for flag, path in self.files.items():
            if flag in paths:
                path = paths[flag]
            elif under is not None:
                path = Path(under) / path
            else:
                continue
            out += [f"--{flag.replace('_', '-')}", str(path)]
        return out


def _method_stage(name: str, *, extra_plots: dict[str, str] | None = None) -> Stage:
    trains = name in TRAINED
    axes = {history(name): ("epoch", "valid_accuracy")}
    if name == "resnet18":
        axes[STEPS] = ("step", "lr")
    return Stage(
        name=name,
        inputs={"tensors": TENSORS},
        outputs={
            "checkpoint": checkpoint(name),
            "model_card": model_card(name),
            "predictions": predictions(name),
            "timing": timing(name),
        },
        metrics={"metrics": metrics(name)},
        plots={"history": history(name), **(extra_plots or {})},
        code=[*TRAINING, *([PARAMS_CODE] if trains else []), MODEL_CODE[name]],
        params=["train", name] if trains else [],
        gpu=trains,
        # The small models run fastest on one thread; resnet18 uses every core it is given.
        multicore=name == "resnet18",
        plot_axes=axes,
    )


_DOWNLOAD = Stage(
    name="download",
    outputs={"out": ARCHIVE},
    code=[*CORE, PARAMS_CODE, "mnist_basics/data.py", "mnist_basics/download.py"],
    params=["data"],
)
_STACK = Stage(
    name="stack",
    inputs={"archive": ARCHIVE},
    outputs={"tensors": TENSORS, "counts": COUNTS},
    code=[*CORE, "mnist_basics/data.py"],
)
_SGD_EXAMPLE = Stage(
    name="sgd_example",
    outputs={"tensors": SGD_EXAMPLE["tensors"]},
    metrics={"metrics": SGD_EXAMPLE["metrics"]},
    plots={"steps": SGD_EXAMPLE["steps"]},
    code=[*TRAINING, PARAMS_CODE, "mnist_basics/models.py", "mnist_basics/sgd_example.py"],
    params=["sgd_example"],
    plot_axes={SGD_EXAMPLE["steps"]: ("step", "loss")},
)
_NN_LINEAR = Stage(
    name="nn_linear",
    inputs={"tensors": TENSORS},
    metrics={"metrics": metrics("nn_linear")},
    plots={"history": history("nn_linear")},
    code=[*TRAINING, PARAMS_CODE, "mnist_basics/models.py"],
    params=["train", "linear"],
    gpu=True,
    plot_axes={history("nn_linear"): ("epoch", "basic_optim")},
)
_METHODS = [_method_stage("pixel_mean"), _method_stage("linear"), _method_stage("mlp"),
            _method_stage("resnet18", extra_plots={"steps": STEPS})]


def report_flag(stage: str, flag: str) -> str:
    """The report's flag for another stage's output: `--mlp-metrics`, `--stack-tensors`."""
    return f"{stage}_{flag}"


STAGES: list[Stage] = [
    _DOWNLOAD,
    _STACK,
    _SGD_EXAMPLE,
    *_METHODS,
    _NN_LINEAR,
    Stage(
        name="report",
        # Every output of every stage: the page hashes each file it lists, so its
        # reproducibility table is this run's under either engine.
        inputs={report_flag(s.name, flag): path
                for s in (_DOWNLOAD, _STACK, _SGD_EXAMPLE, *_METHODS, _NN_LINEAR)
                for flag, path in {**s.outputs, **s.metrics, **s.plots}.items()},
        outputs={"out": REPORT, "accuracy_csv": ACCURACY_CSV},
        code=[*CORE, PARAMS_CODE, "mnist_basics/data.py", "mnist_basics/report.py",
              "mnist_basics/i18n.py", "mnist_basics/try_it.py",
              "mnist_basics/templates/report.html.j2", "mnist_basics/templates/try_it.html.j2",
              "mnist_basics/templates/prepare.js",
              "mnist_basics/locale/et/LC_MESSAGES/messages.po"],
        params=["data", "sgd_example", "train", *TRAINED, "report"],
    ),
]

BY_NAME = {s.name: s for s in STAGES}


def dvc_stages() -> dict:
    """The `stages:` mapping of dvc.yaml."""
    out = {}
    for s in STAGES:
        d: dict = {"cmd": s.cmd, "deps": s.deps}
        if s.params:
            d["params"] = list(s.params)
        if s.outputs:
            d["outs"] = list(s.outputs.values())
        if s.metrics:
            d["metrics"] = [{p: {"cache": False}} for p in s.metrics.values()]
        if s.plots:
            d["plots"] = []
            for p in s.plots.values():
                props: dict = {"cache": False}
                if p in s.plot_axes:
                    props["x"], props["y"] = s.plot_axes[p]
                d["plots"].append({p: props})
        out[s.name] = d
    return out


HEADER = """\
# GENERATED from mnist_basics/pipeline.py by `make dvc.yaml`: edit that file, not this one.
# The Snakefile builds its rules from the same definition. Each stage's paths are its
# script's defaults (`python stages/<stage>.py --help`).
"""


def render_dvc_yaml() -> str:
    body = yaml.safe_dump({"stages": dvc_stages()}, sort_keys=False, width=1000)
    return HEADER + body


def generated_file_main(argv: list[str] | None, path: Path, render, target: str) -> int:
    """The command line of a generated file: write `render()` to `path`, or with --check exit 1
    when the file differs from it (`make lint` and the tests check dvc.yaml and the README)."""
    ap = argparse.ArgumentParser(description=f"regenerate {path.name} (make {target})")
    ap.add_argument("--check", action="store_true", help=f"exit 1 if {path.name} is out of date")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path.name} is out of date: run `make {target}`", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    return generated_file_main(argv, DVC_YAML, render_dvc_yaml, "dvc.yaml")


if __name__ == "__main__":
    sys.exit(main())
