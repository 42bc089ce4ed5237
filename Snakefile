# The Snakemake view of the pipeline. Its rules are built from mnist_basics/pipeline.py, the
# same definition that generates dvc.yaml, so the two engines run the same commands on the
# same files. This file adds only what is Snakemake's own: threads, a `gpu` resource on the
# training stages, a log and a benchmark per rule, how Snakemake sees params, and committing
# the results to DVC so that both engines share one state.
#
#   snakemake --cores 4 --resources gpu=1      # run everything that is out of date
#   snakemake -n                               # show what would run

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, workflow.basedir)  # the package, even when it isn't installed

from mnist_basics import PipelineError
from mnist_basics.params import load
from mnist_basics.pipeline import (
    ACCURACY_CSV, METHODS, PARAMS, REPORT, STAGES, STEPS, history,
)


configfile: PARAMS


# Validate every section before anything runs, with the stages' own error messages.
try:
    load(PARAMS, *config)
except PipelineError as e:
    raise WorkflowError(str(e)) from None

STARTED = time.time()
LOCKED = (yaml.safe_load(Path("dvc.lock").read_text()) or {}) if Path("dvc.lock").exists() else {}


def params_stamp(s):
    """A file holding the params sections a stage reads, as an input of its rule.

    Snakemake compares inputs by mtime, so the stamp is rewritten only when the values change.
    It is dated 1970 when the values are those dvc.lock recorded for the stage's outputs:
    outputs that DVC made stay up to date here too, and a changed value reruns the stage
    under either engine.
    """
    path = Path(f".snakemake/params/{s.name}.yaml")
    values = {section: config[section] for section in s.params}
    text = yaml.safe_dump(values, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        locked = LOCKED.get("stages", {}).get(s.name, {}).get("params", {}).get(PARAMS)
        if locked == values:
            os.utime(path, (0, 0))
    return str(path)


# What `snakemake --report report.html` shows: output -> (caption, category, subcategory).
CAPTIONS = {
    REPORT: ("reports/captions/report.rst", "1. Report", None),
    ACCURACY_CSV: ("reports/captions/accuracy.rst", "2. Accuracy", None),
    **{history(m): ("reports/captions/history.rst", "3. Training history", m) for m in METHODS},
    STEPS: ("reports/captions/steps.rst", "3. Training history", "resnet18"),
}


def declared(path):
    if path in CAPTIONS:
        caption, category, subcategory = CAPTIONS[path]
        return report(path, caption=caption, category=category, subcategory=subcategory)
    return path


def log_of(name):
    return f"logs/{name}.log"


def benchmark_of(name):
    return f"benchmarks/{name}.tsv"


def forget_stale_run(s):
    """Drop a stage's log and benchmark once DVC has remade its outputs.

    They describe the Snakemake job that made the outputs (the benchmark is written after it
    ends), and Snakemake dates a stage by its oldest product, these two included: left
    behind, they would make the outputs DVC remade look older than their inputs.
    """
    bench = Path(benchmark_of(s.name))
    if not bench.exists():
        return
    made = bench.stat().st_mtime
    if any(os.path.exists(p) and os.path.getmtime(p) > made for p in s.all_outputs):
        bench.unlink()
        Path(log_of(s.name)).unlink(missing_ok=True)


rule all:
    # The default target: every stage's outputs, up to the report.
    default_target: True
    input: [p for s in STAGES for p in s.all_outputs]


for s in STAGES:
    forget_stale_run(s)

    rule:
        name: s.name
        input: [*s.deps, *([params_stamp(s)] if s.params else [])]
        output: [declared(p) for p in s.all_outputs]
        # `shell:` is evaluated when the job runs, after this loop has moved on: bind now.
        params: cmd=s.cmd
        # A multicore stage claims every core Snakemake has, so that nothing runs beside it
        # (each stage still uses no more threads than the machine has; see cli.cpu_threads).
        threads: workflow.cores if s.multicore else 1
        resources: gpu=int(s.gpu)
        conda: "environment.yml"  # used only with --software-deployment-method conda
        log: log_of(s.name)
        benchmark: benchmark_of(s.name)
        shell: "{params.cmd} > {log} 2>&1"


# Hold DVC's locks while this run writes outputs, so the engines never race for the same
# files: DVC's repository lock (a `dvc repro` started meanwhile fails fast with DVC's own
# message) and DVC's write lock on every output (a `dvc repro` already running a stage makes
# this run stop here). The OS drops both if Snakemake is killed.
HELD = []


onstart:
    import zc.lockfile
    from dvc.fs import localfs
    from dvc.lock import LockError
    from dvc.rwlock import rwlock

    busy = (
        "another DVC process (a `dvc repro`?) is working in this project; "
        "wait for it to finish, then run again"
    )
    os.makedirs(".dvc/tmp", exist_ok=True)  # absent in a fresh clone until DVC first runs
    try:
        HELD.append(zc.lockfile.LockFile(".dvc/tmp/lock"))
        outputs = [os.path.abspath(p) for s in STAGES for p in s.all_outputs]
        writing = rwlock(os.path.abspath(".dvc/tmp"), localfs, "snakemake", [], outputs, False)
        writing.__enter__()
        HELD.append(writing)
    except (zc.lockfile.LockError, LockError):
        release_dvc_locks()
        raise WorkflowError(busy) from None


def release_dvc_locks():
    while HELD:
        lock = HELD.pop()
        lock.__exit__(None, None, None) if hasattr(lock, "__exit__") else lock.close()


onerror:
    release_dvc_locks()


onsuccess:
    release_dvc_locks()
    # Record what this run produced in dvc.lock (and DVC's cache), so `dvc status` agrees.
    # --no-relink leaves the outputs in place: relinking rewrites them (with DVC's default
    # `copy` cache), and their new mtimes would make the next Snakemake run redo everything.
    ran = [s.name for s in STAGES
           if os.path.exists(log_of(s.name)) and os.path.getmtime(log_of(s.name)) >= STARTED]
    if ran:
        subprocess.run(["dvc", "commit", "--force", "--quiet", "--no-relink", *ran], check=True)
