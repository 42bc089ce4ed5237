"""What every stage script shares: its flags, its error handling, its CPU budget, its progress.

A stage's flags come from its entry in `pipeline.py`, with the pipeline's paths as defaults,
so `python stages/mlp.py` runs standalone and `--help` shows where inputs come from and where
outputs go.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from mnist_basics import PipelineError
from mnist_basics.pipeline import BY_NAME, DATASETS, PARAMS, SAMPLE, STAGES_OF, Stage

T = TypeVar("T")
log = logging.getLogger("mnist_basics")


def parser(stage: str | Stage, description: str | None,
           argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The stage's flags: a stage by its script's name (`mlp` for stages/mlp.py), or any Stage
    (those of spread/dvc.yaml).

    A script that runs for several datasets takes `--dataset` (MNIST_SAMPLE by default), and
    its paths default to that dataset's, so `python stages/mlp.py --dataset mnist` is the
    command of mnist/dvc.yaml's stage.
    """
    of = {} if not isinstance(stage, str) else {
        d: s for d in DATASETS for s in STAGES_OF[d] if Path(s.script).stem == stage}
    datasets = list(of)
    s = stage
    if isinstance(stage, str):
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--dataset", choices=datasets, default=datasets[0])
        s = of[pre.parse_known_args(argv)[0].dataset]
    ap = argparse.ArgumentParser(
        prog=s.script,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if datasets and datasets != [SAMPLE]:  # the chapter's own stages need no --dataset
        ap.add_argument("--dataset", choices=datasets, default=datasets[0],
                        help="whose copy of the stage to run; sets every default path "
                             "below (default: %(default)s)")
    if s.params:
        ap.add_argument(
            "--params",
            type=Path,
            default=Path(PARAMS),
            help=f"params file; reads sections {', '.join(s.params)} (default: %(default)s)",
        )
    groups = [("inputs", "read", s.inputs), ("outputs", "written", s.outputs),
              ("metrics", "written, kept in git", s.metrics),
              ("plots", "written, kept in git", s.plots),
              ("kept", "written, kept in git", s.kept)]
    for title, verb, flags in groups:
        if not flags:
            continue
        g = ap.add_argument_group(title)
        for flag, path in flags.items():
            g.add_argument(
                f"--{flag.replace('_', '-')}",
                type=Path,
                default=Path(path),
                metavar="PATH",
                help=f"{verb} (default: {path})",
            )
    return ap


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so that `finally` blocks remove temporary files."""


def _terminate(signum, frame):
    raise Terminated


def run(main: Callable[[], object]) -> None:
    """Run a stage's main(): a PipelineError becomes one line on stderr and exit status 1."""
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


def cpu_threads(stage: str | None = None) -> int:
    """The threads a stage may use: what its engine granted, else every core.

    Snakemake exports OMP_NUM_THREADS = the rule's `threads`; DVC runs one stage at a time.
    A stage that is not `multicore` in pipeline.py uses one thread under either engine.
    """
    if stage is not None and not BY_NAME[stage].multicore:
        return 1
    granted = os.environ.get("OMP_NUM_THREADS", "")
    cores = os.cpu_count() or 1
    return max(1, min(int(granted), cores)) if granted.isdigit() else cores


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    """A progress bar on a terminal; nothing in a log (stages log one line per epoch)."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, leave=False, disable=not sys.stderr.isatty())
