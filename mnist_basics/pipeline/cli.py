"""What every stage script shares: its flags, its error handling, its progress log.

A stage script declares the flags it takes; the pipeline's command (`dvc.yaml`, the
Snakefile) passes every path it reads and writes, so the script never imports the pipeline
definition and an edit there reruns no stage. `python stages/mlp.py --help` lists the flags;
each stage's full command is in dvc.yaml.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mnist_basics import PipelineError
from mnist_basics.params import PARAMS
from mnist_basics.registry import DATASETS, KEPT, METHODS, METRICS, OUTPUTS, PLOTS, SAMPLE

log = logging.getLogger("mnist_basics")

EPILOG = ("The pipeline's command for this stage, with every path, is its `cmd` in dvc.yaml "
          "(mnist/dvc.yaml, spread/dvc.yaml); `dvc repro -s STAGE` runs it.")
GROUPS = {  # a stage's file flags, by what happens to the file
    "inputs": "read",
    "outputs": "written",
    "metrics": "written, kept in git",
    "plots": "written, kept in git",
    "kept": "written, kept in git",
}


def parser(script: str, description: str | None, *, params: Sequence[str] = (),
           datasets: bool = False, **files: Sequence[str]) -> argparse.ArgumentParser:
    """A stage's flags: `files` by group (inputs=["tensors"], outputs=[...], as GROUPS
    names them), each a required path; `--params` when it reads `params` sections; and
    `--dataset` when the same script runs for every dataset (MNIST_SAMPLE by default)."""
    ap = argparse.ArgumentParser(prog=script, description=description, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    if datasets:
        ap.add_argument("--dataset", choices=DATASETS, default=SAMPLE,
                        help="whose data and params sections (default: %(default)s)")
    else:
        ap.set_defaults(dataset=SAMPLE)
    if params:
        ap.add_argument("--params", type=Path, default=Path(PARAMS),
                        help=f"params file; reads sections {', '.join(params)} "
                             "(default: %(default)s)")
    for group, names in files.items():
        g = ap.add_argument_group(group)
        for name in names:
            g.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True,
                           metavar="PATH", help=GROUPS[group])
    return ap


def method_parser(method: str, description: str | None) -> argparse.ArgumentParser:
    """A method stage's flags: the tensors it reads, then what every method's stage writes
    (mnist_basics/registry.py), for any dataset."""
    return parser(f"stages/{method}.py", description,
                  params=("train", method) if METHODS[method].trains else (), datasets=True,
                  inputs=["tensors"], outputs=OUTPUTS, metrics=METRICS,
                  plots=(*PLOTS, *METHODS[method].extra_plots), kept=KEPT)


def named_paths(ap: argparse.ArgumentParser, flag: str = "--input") -> None:
    """A repeatable `--input NAME.KIND=PATH`: a page's inputs, every other stage's outputs."""
    ap.add_argument(flag, action="append", default=[], metavar="STAGE.FLAG=PATH",
                    help="a file read, by the stage and flag that write it (repeatable)")


def by_stage(pairs: Sequence[str]) -> dict[str, dict[str, Path]]:
    """`["mlp.metrics=metrics/mlp.json", ...]` -> {"mlp": {"metrics": Path(...)}, ...}."""
    out: dict[str, dict[str, Path]] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        stage, dot, flag = name.partition(".")
        if not (sep and dot and stage and flag and path):
            raise PipelineError(f"--input {pair}: expected STAGE.FLAG=PATH, "
                                "e.g. --input mlp.metrics=metrics/mlp.json")
        out.setdefault(stage, {})[flag] = Path(path)
    return out


def require(files: Mapping[str, Mapping[str, Path]],
            expected: Mapping[str, Sequence[str]]) -> None:
    """Refuse a page's command that leaves out an input the page reads."""
    for stage, flags in expected.items():
        for flag in flags:
            if flag not in files.get(stage, {}):
                raise PipelineError(f"missing --input {stage}.{flag}=PATH")


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so that `finally` blocks remove temporary files."""


def _terminate(signum, frame):
    raise Terminated


def run(main: Callable[[], object], *, stage: bool = True) -> None:
    """Run a stage's main(): a PipelineError becomes one line on stderr and exit status 1.

    A stage's process then leaves at once (`stage`): by then every output is written and
    closed, and tearing down an interpreter that imported torch takes 0.5 to 2 s, longer than
    most stages' own work, which the engines would time as the stage's. The package's own
    command line (`python -m mnist_basics`, which tests call in-process) passes stage=False.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print("error: terminated", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    if stage:
        leave()


def leave() -> None:
    """A stage's process, done: flush what it logged and printed, and exit without teardown."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
