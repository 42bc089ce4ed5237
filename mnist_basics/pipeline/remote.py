"""Share the pipeline's artifacts through a DVC remote: push them once, pull them anywhere.

    make push      # python -m mnist_basics push: every artifact dvc.lock names, to the remote
    make pull      # python -m mnist_basics pull: all of them back, each checked, no training

Both take what `make run` builds: the dvc.yaml of each dataset params.yaml `datasets` lists
(the chapter's; mnist/dvc.yaml too once it is listed), and the spread's.

The remote is DVC's own default remote (`dvc remote add -d ...`, see the README): SSH, S3 or
any other kind DVC knows. Two things plain `dvc push`/`dvc pull` do not do, these do:
- `pull` checks every object it downloads against its hash (DVC's `verify` option, set for
  this clone): a corrupted object in the remote fails the pull instead of landing in the
  workspace;
- `push` fails when an artifact of dvc.lock is missing from the local cache (DVC only warns),
  since a clone could not pull it.
A failure prints one line, the one that says what went wrong.
"""

from __future__ import annotations

import argparse
import subprocess

from mnist_basics import PipelineError
from mnist_basics.pipeline import scope
from mnist_basics.pipeline.definition import SPREAD_DVCFILE

MISSING = "Some of the cache files do not exist"  # DVC's warning when push leaves some behind


def dvc(*args: str) -> str:
    """Run `dvc args...`; its output, or a PipelineError holding DVC's first ERROR line."""
    r = subprocess.run(["dvc", *args], capture_output=True, text=True)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        errors = [line for line in out.splitlines() if line.startswith("ERROR")]
        raise PipelineError(f"dvc {args[0]}: "
                            + (errors[0].removeprefix("ERROR: ") if errors else out.strip()))
    return out


def default_remote() -> str:
    r = subprocess.run(["dvc", "remote", "default"], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        raise PipelineError("no default DVC remote: add one with `dvc remote add -d <name> <url>`"
                            " (README: Sharing results)")
    return r.stdout.strip()


def targets() -> list[str]:
    """The dvc.yaml files whose artifacts are shared: the listed datasets', the spread's;
    DVC is shown those datasets' and no other (pipeline/scope.py)."""
    scope.sync(scope.listed())
    return [*scope.dvcfiles(), SPREAD_DVCFILE]


def push() -> None:
    default_remote()
    out = dvc("push", *targets())
    if MISSING in out:
        raise PipelineError("dvc push: some artifacts of dvc.lock are not in the local cache, "
                            "so nobody could pull them; run the pipeline, then push again")
    print(out.strip().splitlines()[-1] if out.strip() else "Everything is up to date.")


def pull() -> None:
    dvc("remote", "modify", "--local", default_remote(), "verify", "true")
    out = dvc("pull", *targets())
    print(out.strip().splitlines()[-1] if out.strip() else "Everything is up to date.")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """push and pull take no arguments: the remote is DVC's default, the datasets are those
    params.yaml `datasets` lists."""


def main(args: argparse.Namespace) -> None:
    {"push": push, "pull": pull}[args.command]()
