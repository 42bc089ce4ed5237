"""A stage, as both engines run it: its script, the paths it reads and writes, its params.

`pipeline/definition.py` lists the pipeline's stages as `Stage`s; `pipeline/engines.py` writes
each one into dvc.yaml and a Snakemake rule. A stage's command passes every path it reads and
writes (`Stage.cmd`), and tests run it elsewhere with `Stage.argv`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mnist_basics.registry import SAMPLE

ROOT = Path(__file__).resolve().parents[2]  # the project: mnist_basics/pipeline/stage.py


@dataclass(frozen=True)
class Stage:
    """One stage: `python stages/<name>.py`, each path the default of one of its flags."""

    name: str
    # flag -> path read; a page's `stage.flag` keys reach it as `--input stage.flag=PATH`
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # flag -> path written (DVC-cached)
    metrics: dict[str, str] = field(default_factory=dict)  # flag -> small JSON kept in git
    plots: dict[str, str] = field(default_factory=dict)  # flag -> CSV kept in git
    kept: dict[str, str] = field(default_factory=dict)  # flag -> other file kept in git
    # flag -> a path read but not a dependency: other stages' wall-clock figures, which a
    # page shows but which change on every run (so no experiment lists them as changed).
    # The stage that writes one writes a real input of this stage too, so it ran before.
    side_inputs: dict[str, str] = field(default_factory=dict)
    code: list[str] = field(default_factory=list)  # package modules the stage imports
    params: list[str] = field(default_factory=list)  # params.yaml sections (or keys) it reads
    gpu: bool = False  # trains a model: takes turns on the GPU, where there is one
    multicore: bool = False  # uses every core it is given (the others use one thread)
    plot_axes: dict[str, tuple[str, str]] = field(default_factory=dict)  # plot path -> (x, y)
    # A stage run once per combination of values (DVC's `matrix`, a Snakemake wildcard per
    # key): key -> the params.yaml list it takes, e.g. {"seed": "spread.seeds"}. "{seed}" in
    # its paths and `args` stands for the value, "{sweep.key}" for a value of params.yaml.
    matrix: dict[str, str] = field(default_factory=dict)
    args: str = ""  # the command's arguments besides the paths
    script_name: str = ""  # stages/<script_name>.py when it is not the stage's name
    dvcfile: str = "dvc.yaml"  # the file that holds the stage
    # input flag -> the matrix stages whose outputs that folder holds: DVC depends on the
    # folder, Snakemake on each file.
    gathers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dataset: str = SAMPLE  # the dataset whose copy of the stage this is (`--dataset`)

    @property
    def script(self) -> str:
        return f"stages/{self.script_name or self.name}.py"

    @property
    def address(self) -> str:
        """How DVC's commands name the stage: `mlp`, `spread/dvc.yaml:mlp@3`."""
        return self.name if self.dvcfile == "dvc.yaml" else f"{self.dvcfile}:{self.name}"

    @property
    def deps(self) -> list[str]:
        return [self.script, *self.code, *self.inputs.values()]

    @property
    def reads(self) -> dict[str, str]:
        """flag -> path for everything the stage reads, its side inputs too."""
        return {**self.inputs, **self.side_inputs}

    @property
    def written(self) -> dict[str, str]:
        """flag -> path for everything the stage writes."""
        return {**self.outputs, **self.metrics, **self.plots, **self.kept}

    @property
    def files(self) -> dict[str, str]:
        """flag -> path for everything the stage reads and writes."""
        return {**self.reads, **self.written}

    @property
    def all_outputs(self) -> list[str]:
        """In dvc.yaml's order: outs (cached, then kept in git), metrics, plots."""
        return [*self.outputs.values(), *self.kept.values(), *self.metrics.values(),
                *self.plots.values()]

    @property
    def rule(self) -> str:
        """The Snakemake rule: the stage's name, prefixed by its dvc.yaml's folder if any; a
        concrete job of a matrix stage (`mlp@3`) runs its stage's rule (`spread_mlp`)."""
        folder = Path(self.dvcfile).parent.name
        name = self.name.partition("@")[0]
        return f"{folder}_{name}" if folder else name

    @property
    def key(self) -> str:
        """A concrete job's matrix values, as DVC joins them into its name (`mlp@0.05-0`)."""
        return self.name.partition("@")[2]

    @property
    def cmd_lines(self) -> list[str]:
        """The command, a line per path: the script and its arguments, then every path it
        reads and writes (dvc.yaml folds them into one line)."""
        dataset = f"--dataset {self.dataset}" if self.dataset != SAMPLE else ""
        head = " ".join([f"python {self.script}", *filter(None, [dataset, self.args])])
        return [head, *(" ".join(pair) for pair in path_args(self.files))]

    @property
    def cmd(self) -> str:
        """The command both engines run."""
        return " ".join(self.cmd_lines)

    def argv(self, *, python: str = sys.executable, root: str | Path = ROOT,
             under: str | Path | None = None, params: str | Path | None = None,
             **paths: str | Path) -> list[str]:
        """The command with explicit paths, for tests and benchmarks: the script under `root`,
        `paths` by flag name, every other path `under` a folder, another params file."""
        out = [python, str(Path(root) / self.script)]
        if self.dataset != SAMPLE:
            out += ["--dataset", self.dataset]
        if params is not None:
            out += ["--params", str(params)]
        files = {}
        for flag, path in self.files.items():
            key = flag.replace(".", "_")  # a page's `mlp.metrics` is `mlp_metrics=` here
            files[flag] = paths[key] if key in paths else (
                Path(under) / path if under is not None else path)
        return out + [arg for pair in path_args(files) for arg in pair]

    def expand(self, params: dict) -> list[Stage]:
        """One concrete stage per combination of the matrix's values, named as DVC names them
        (`mlp@3`, `sweep@0.05-0`), every placeholder filled in."""
        if not self.matrix:
            return [self]
        combos: list[dict] = [{}]
        for key, source in self.matrix.items():
            combos = [{**c, key: v} for c in combos for v in lookup(params, source)]
        return [self._concrete(c, params, self.args) for c in combos]

    def _concrete(self, values: dict, params: dict, args: str) -> Stage:
        def fill(text: str) -> str:
            return fill_placeholders(text, lambda k: values[k] if k in values
                                     else lookup(params, k))

        def each(paths: dict[str, str]) -> dict[str, str]:
            return {flag: fill(path) for flag, path in paths.items()}

        return Stage(
            name=f"{self.name}@{'-'.join(str(values[k]) for k in self.matrix)}",
            inputs=each(self.inputs), side_inputs=each(self.side_inputs),
            outputs=each(self.outputs), metrics=each(self.metrics),
            plots=each(self.plots), kept=each(self.kept), code=self.code,
            params=[fill(p) for p in self.params], gpu=self.gpu, multicore=self.multicore,
            args=fill(args), script_name=self.script_name or self.name, dvcfile=self.dvcfile)


def path_args(files: dict[str, str | Path]) -> list[tuple[str, str]]:
    """Each file as a command passes it: `--tensors PATH`; a page's `--input mlp.metrics=PATH`."""
    return [("--input", f"{flag}={path}") if "." in flag
            else (f"--{flag.replace('_', '-')}", str(path)) for flag, path in files.items()]


def lookup(params: dict, dotted: str) -> object:
    """params.yaml's value at `spread.seeds`."""
    value: object = params
    for part in dotted.split("."):
        value = value[part]  # type: ignore[index]
    return value


PLACEHOLDER = re.compile(r"\{([a-z_]+(?:\.[a-z_]+)?)\}")


def fill_placeholders(text: str, value) -> str:
    return PLACEHOLDER.sub(lambda m: str(value(m.group(1))), text)
