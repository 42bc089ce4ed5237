# The Snakemake view of the pipeline. Its rules are built from mnist_basics/pipeline.py, the
# same definition that generates dvc.yaml, so the two engines run the same commands on the
# same files. This file adds only what is Snakemake's own: threads, a `gpu` resource on the
# training stages, a log and a benchmark per rule, and committing the results to DVC.
#
#   snakemake --cores 4 --resources gpu=1      # run everything that is out of date
#   snakemake -n                               # show what would run

import os
import subprocess
import sys
import time

sys.path.insert(0, workflow.basedir)  # the package, even when it isn't installed

from mnist_basics import PipelineError
from mnist_basics.params import load
from mnist_basics.pipeline import DIRECTORIES, PARAMS, STAGES


configfile: PARAMS


# Validate every section before anything runs, with the stages' own error messages.
try:
    load(PARAMS, *config)
except PipelineError as e:
    raise WorkflowError(str(e)) from None

STARTED = time.time()
CORES = min(workflow.cores, os.cpu_count() or 1)


def log_of(name):
    return f"logs/{name}.log"


for s in STAGES:

    rule:
        name: s.name
        input: s.deps
        output: [directory(p) if p in DIRECTORIES else p for p in s.all_outputs]
        # The values of the params.yaml sections the stage reads: Snakemake reruns the
        # stage when they change, and only then (as DVC does).
        params: **{section: config[section] for section in s.params}
        threads: CORES if s.multicore else 1
        resources: gpu=int(s.gpu)
        log: log_of(s.name)
        benchmark: f"benchmarks/{s.name}.tsv"
        shell: s.cmd + " > {log} 2>&1"


onsuccess:
    # Record what this run produced in dvc.lock (and DVC's cache), so `dvc status` agrees.
    ran = [s.name for s in STAGES
           if os.path.exists(log_of(s.name)) and os.path.getmtime(log_of(s.name)) >= STARTED]
    if ran:
        subprocess.run(["dvc", "commit", "--force", "--quiet", *ran], check=True)
