"""What the two engines read, written from the one definition: dvc.yaml and rules/*.smk.

    make dvc.yaml                                    # write them all
    python -m mnist_basics.pipeline.engines --check  # make lint: exit 1 if one is out of date

Each dvc.yaml of `pipeline.py` gets a Snakemake rule file beside it in `rules/`: the chapter's
`rules/chapter.smk`, the full MNIST's `rules/mnist.smk`, the spread's `rules/spread.smk`.
Both show every stage's inputs, outputs and command as literal text; the Snakefile includes
the rule files, and `rules/bridge.smk` adds what keeps the engines in one state.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from mnist_basics.params import PARAMS
from mnist_basics.pipeline.definition import (
    DATASETS,
    DVC_YAML,
    ROOT,
    SAMPLE,
    SPREAD,
    SPREAD_BY_NAME,
    SPREAD_CSV,
    SPREAD_DVC_YAML,
    SPREAD_REPORT,
    STAGES,
    STAGES_OF,
    SWEEP_CSV,
    accuracy_csv,
    dvcfile,
    history,
    report,
    steps,
)
from mnist_basics.pipeline.stage import Stage, fill_placeholders
from mnist_basics.registry import METHODS

# -- dvc.yaml --------------------------------------------------------------------------------


def _dvc(text: str, matrix: dict[str, str]) -> str:
    """A template in DVC's syntax: `{seed}` -> `${item.seed}`, `{sweep.key}` -> `${sweep.key}`."""
    return fill_placeholders(text, lambda k: f"${{item.{k}}}" if k in matrix else f"${{{k}}}")


class Folded(tuple):
    """A command that dvc.yaml shows one path per line, as a folded block (`cmd: >-`)."""


def dump_yaml(doc: dict) -> str:
    """YAML as DVC reads it; each Folded value a `>-` block, whose lines YAML joins with one
    space, so DVC runs exactly the one-line command."""
    folded: dict[str, Folded] = {}

    def mark(value):
        if isinstance(value, Folded):
            folded[f"FOLDED{len(folded)}"] = value
            return f"FOLDED{len(folded) - 1}"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        return value

    text = yaml.safe_dump(mark(doc), sort_keys=False, width=1000)
    for key, lines in folded.items():
        text = re.sub(rf"^( *)(\w+): {key}$",
                      lambda m, lines=lines: f"{m[1]}{m[2]}: >-\n" + "\n".join(
                          f"{m[1]}  {line}" for line in lines), text, count=1, flags=re.M)
    return text


def dvc_stages(stages: list[Stage] = STAGES) -> dict:
    """The `stages:` mapping of a dvc.yaml."""
    out = {}
    for s in stages:
        d: dict = {}
        if s.matrix:
            d["matrix"] = {k: f"${{{v}}}" for k, v in s.matrix.items()}
        if s.dvcfile != "dvc.yaml":
            d["wdir"] = "/".join(".." for _ in Path(s.dvcfile).parent.parts)
        lines = [_dvc(line, s.matrix) for line in s.cmd_lines]
        d["cmd"] = Folded(lines) if len(lines) > 2 else " ".join(lines)
        d["deps"] = [_dvc(p, s.matrix) for p in s.deps]
        if s.params:
            d["params"] = [_dvc(p, s.matrix) for p in s.params]
        if s.outputs:
            d["outs"] = list(s.outputs.values())
        if s.kept:
            d.setdefault("outs", []).extend({_dvc(p, s.matrix): {"cache": False}}
                                            for p in s.kept.values())
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
# GENERATED from mnist_basics/pipeline/definition.py by `make dvc.yaml`: edit that file.
# rules/chapter.smk is Snakemake's view of the same stages. Each command passes every path
# its stage reads and writes; `python stages/<stage>.py --help` lists the flags.
"""

SPREAD_HEADER = """\
# GENERATED from mnist_basics/pipeline/definition.py (SPREAD) by `make dvc.yaml`: edit that file.
# `make spread`, not `make run`: each trained method once per seed of params.yaml
# `spread.seeds`, the sweep once per value and seed, then reports/spread.html. Paths are
# relative to the project root (wdir); the values come from ../params.yaml.
"""

DATASET_HEADER = """\
# GENERATED from mnist_basics/pipeline/definition.py (chapter_stages) by `make dvc.yaml`.
# The chapter's stages on the {dataset} dataset: `dvc repro {dvcfile}`, or list {dataset} in
# params.yaml `datasets`. Paths are relative to the project root (wdir).
"""


def render_dvc_yaml() -> str:
    return HEADER + dump_yaml({"stages": dvc_stages()})


def render_dataset_dvc_yaml(dataset: str) -> str:
    header = DATASET_HEADER.format(dataset=dataset, dvcfile=dvcfile(dataset))
    return header + dump_yaml({"stages": dvc_stages(STAGES_OF[dataset])})


def render_spread_dvc_yaml() -> str:
    return SPREAD_HEADER + dump_yaml({"vars": ["../" + PARAMS], "stages": dvc_stages(SPREAD)})


# -- rules/*.smk -----------------------------------------------------------------------------
# What `snakemake --report report.html` shows: output -> (caption, category, subcategory).
CAPTIONS = {
    report(): ("reports/captions/report.rst", "1. Report", None),
    accuracy_csv(): ("reports/captions/accuracy.rst", "2. Accuracy", None),
    **{history(m): ("reports/captions/history.rst", "3. Training history", m) for m in METHODS},
    steps(): ("reports/captions/steps.rst", "3. Training history", "resnet18"),
    SPREAD_REPORT: ("reports/captions/spread.rst", "4. Seed spread", None),
    SPREAD_CSV: ("reports/captions/spread_csv.rst", "4. Seed spread", None),
    SWEEP_CSV: ("reports/captions/spread_csv.rst", "4. Seed spread", None),
    report("mnist"): ("reports/captions/mnist.rst", "5. Full MNIST", None),
    accuracy_csv("mnist"): ("reports/captions/accuracy.rst", "5. Full MNIST", None),
}
# Each rule file's target rule, and the stages it holds.
RULE_FILES = {"chapter": STAGES, **{d: STAGES_OF[d] for d in DATASETS if d != SAMPLE},
              "spread": SPREAD}


def _output(path: str) -> str:
    if path not in CAPTIONS:
        return f'"{path}"'
    caption, category, subcategory = CAPTIONS[path]
    sub = f', subcategory="{subcategory}"' if subcategory else ""
    # The caption's path is relative to the rule file, in rules/.
    return f'report("{path}", caption="../{caption}", category="{category}"{sub})'


def _expand(path: str, matrix: dict[str, str]) -> str:
    """A matrix stage's output for each value params.yaml lists, as Snakemake's expand()."""
    keys = ", ".join(f'{k}=value("{source}")' for k, source in matrix.items())
    return f'expand("{path}", {keys})'


def _shell(s: Stage) -> list[str]:
    """The command as Snakemake formats it: a matrix key is a wildcard, a params.yaml value
    one of the rule's params."""
    def fill(text: str) -> str:
        return fill_placeholders(text, lambda k: f"{{wildcards.{k}}}" if k in s.matrix
                                 else f"{{params.{k.replace('.', '_')}}}")

    lines = [fill(line) for line in s.cmd_lines]
    return [f'"{lines[0]}"', *(f'" {line}"' for line in lines[1:]), '" > {log} 2>&1"']


def smk_rule(s: Stage) -> str:
    """One stage as a literal Snakemake rule."""
    inputs = [f'"{p}"' for p in (s.script, *s.code)]
    for flag, path in s.inputs.items():
        if flag in s.gathers:  # a folder of matrix outputs: each file params.yaml asks for
            inputs += [_expand(out, SPREAD_BY_NAME[name].matrix) for name in s.gathers[flag]
                       for out in SPREAD_BY_NAME[name].all_outputs]
        else:
            inputs.append(f'"{path}"')
    if s.params:  # params.yaml, while the stage's sections differ from dvc.lock's
        inputs.append(f'params_yaml("{s.address}")')
    out = [f"rule {s.rule}:", "    input:", *(f"        {i}," for i in inputs),
           "    output:", *(f"        {_output(p)}," for p in s.all_outputs)]
    values = sorted({k for line in s.cmd_lines for k in re.findall(r"\{([a-z_]+\.[a-z_]+)\}",
                                                                     line)})
    if values:
        out += ["    params:", *(f'        {k.replace(".", "_")}=value("{k}"),' for k in values)]
    if s.matrix:
        out.append('    wildcard_constraints: seed=r"\\d+", value=r"[^/_]+"')
    log = f"logs/{s.rule}" + "".join(f"_{{{k}}}" for k in s.matrix) + ".log"
    out += [f'    log: "{log}"',
            f"    threads: {'workflow.cores' if s.multicore else 1}",
            f"    resources: gpu={'TRAIN_GPU' if s.gpu else 0}",  # rules/bridge.smk
            '    conda: "../environment.yml"',  # relative to this rule file
            "    shell:", *(f"        {line}" for line in _shell(s))]
    return "\n".join(out) + "\n"


SMK_HEADER = """\
# GENERATED from mnist_basics/pipeline/definition.py by `make dvc.yaml`: edit that file.
# Snakemake's view of {dvcfile}: the same stages, commands and paths. `snakemake {target}`
# builds them all; rules/bridge.smk defines params_yaml() and value(). `conda:` is used only
# with --software-deployment-method conda.
"""


def render_rules(name: str) -> str:
    stages = RULE_FILES[name]
    dvc = stages[0].dvcfile
    body = "\n\n".join(smk_rule(s) for s in stages)
    outputs = [f"rules.{s.rule}.output" if not s.matrix else _expand(p, s.matrix)
               for s in stages for p in ([None] if not s.matrix else s.all_outputs)]
    target = (f"\n\nrule {name}:  # every output above\n    input:\n"
              + "".join(f"        {o},\n" for o in outputs))
    return SMK_HEADER.format(dvcfile=dvc, target=name) + "\n\n" + body + target


def rules_path(name: str) -> Path:
    return ROOT / "rules" / f"{name}.smk"


# -- make dvc.yaml ---------------------------------------------------------------------------
def generated_file_main(argv: list[str] | None, files: dict[Path, object], target: str) -> int:
    """The command line of generated files: write each `render()` to its path, or with --check
    exit 1 when one differs (`make lint` and the tests check the engines' files and README)."""
    names = ", ".join(str(p.relative_to(ROOT)) for p in files)
    ap = argparse.ArgumentParser(description=f"regenerate {names} (make {target})")
    ap.add_argument("--check", action="store_true", help=f"exit 1 if {names} is out of date")
    args = ap.parse_args(argv)
    stale = False
    for path, render in files.items():
        text = render()
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"{path.relative_to(ROOT)} is out of date: run `make {target}`",
                      file=sys.stderr)
                stale = True
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return int(stale)


def files() -> dict[Path, object]:
    """Every generated file of the engines, and what writes it."""
    return {DVC_YAML: render_dvc_yaml, SPREAD_DVC_YAML: render_spread_dvc_yaml,
            **{ROOT / dvcfile(d): (lambda d=d: render_dataset_dvc_yaml(d))
               for d in DATASETS if d != SAMPLE},
            **{rules_path(n): (lambda n=n: render_rules(n)) for n in RULE_FILES}}


def main(argv: list[str] | None = None) -> int:
    return generated_file_main(argv, files(), "dvc.yaml")


if __name__ == "__main__":
    sys.exit(main())
