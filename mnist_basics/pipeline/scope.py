"""Which dvc.yaml files DVC sees: those of the datasets this project builds, and the spread's.

`dvc status` and `dvc exp show` read every dvc.yaml in the project. The full MNIST's
(mnist/dvc.yaml) is built only once params.yaml `datasets` lists it; until then a bare
`dvc status` would call each of its stages missing. So `.dvcignore` hides the dvc.yaml of
each dataset that `datasets` leaves out, between its two marker lines, and `sync` rewrites
them before anything builds or shares artifacts:
- `make run` (the Snakefile's onstart), `make repro` (`python -m mnist_basics dvcfiles`),
  `make push`, `make pull`: the datasets `datasets` lists;
- `make mnist`, `make mnist-dvc` (`python -m mnist_basics dvcfiles mnist`): the full MNIST too,
  since they build it; a Snakemake run shows every dataset whose stages it completed before
  it records them in its dvc.lock.
Hiding a dvc.yaml removes nothing: its outputs, dvc.lock and cache stay where they are. The
spread's dvc.yaml is always seen: its outputs are kept in git, so every clone has them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from mnist_basics import PipelineError
from mnist_basics.artifacts import write_text
from mnist_basics.params import PARAMS, load
from mnist_basics.pipeline.definition import DATASETS, SAMPLE, dvcfile

DVCIGNORE = ".dvcignore"
BEGIN = "# >>> datasets params.yaml leaves out (`python -m mnist_basics dvcfiles` rewrites this)"
END = "# <<<"


def listed(params_path: str | Path = PARAMS) -> list[str]:
    """The datasets params.yaml `datasets` lists, in the order of DATASETS."""
    names = load(params_path, "datasets")["datasets"].root
    return [d for d in DATASETS if d in names]


def dvcfiles(params_path: str | Path = PARAMS) -> list[str]:
    """The dvc.yaml files of the datasets params.yaml `datasets` lists (`make repro`)."""
    return [dvcfile(d) for d in listed(params_path)]


def render(text: str, shown: Iterable[str]) -> str:
    """.dvcignore's text with its block hiding every dataset's dvc.yaml but `shown`'s; the
    rest of the file as it was."""
    shown = set(shown)
    hidden = [f"/{dvcfile(d)}" for d in DATASETS if d != SAMPLE and d not in shown]
    lines = text.splitlines()
    if BEGIN in lines and END in lines[lines.index(BEGIN):]:
        start = lines.index(BEGIN)
        end = lines.index(END, start)
        lines[start:end + 1] = []
    else:
        start = len(lines)
    lines[start:start] = [BEGIN, *hidden, END]
    return "\n".join(lines) + "\n"


def sync(shown: Iterable[str], root: str | Path = ".") -> None:
    """Let DVC see the dvc.yaml files of `shown` datasets, and hide the other datasets'."""
    path = Path(root) / DVCIGNORE
    old = path.read_text() if path.exists() else ""
    new = render(old, shown)
    if new != old:
        write_text(path, new)


OTHERS = [d for d in DATASETS if d != SAMPLE]  # the datasets with a dvc.yaml of their own


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("datasets", nargs="*", metavar="DATASET",
                    help=f"only these datasets' dvc.yaml files ({', '.join(OTHERS)}), which DVC "
                         "is then shown too (default: those params.yaml `datasets` lists)")


def main(args: argparse.Namespace) -> None:
    """Show DVC the dvc.yaml files to build, hide the rest, and print them for `dvc repro`."""
    for d in args.datasets:
        if d not in OTHERS:
            raise PipelineError(f"dvcfiles: no dataset {d!r} with a dvc.yaml of its own; "
                                f"choose from {', '.join(OTHERS)}")
    sync([*listed(), *args.datasets])
    print(" ".join(dvcfile(d) for d in args.datasets) if args.datasets
          else " ".join(dvcfiles()))
