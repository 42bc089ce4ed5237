# The Snakemake view of the pipeline. Its rules are built from mnist_basics/pipeline.py, the
# same definition that generates dvc.yaml, so the two engines run the same commands on the
# same files. mnist_basics/bridge.py keeps the two engines in one state; this file only adds
# what is Snakemake's own: threads, a `gpu` resource on the training stages and a log per rule.
#
#   snakemake --cores 4 --resources gpu=1      # run everything that is out of date
#   snakemake -n                               # show what would run
#   snakemake spread --cores 4 --resources gpu=1   # the seed spread and sweep (make spread)
#   snakemake mnist --cores 4 --resources gpu=1    # the full MNIST (mnist/dvc.yaml)
#
# The default target builds each dataset that params.yaml `datasets` lists.

import sys

sys.path.insert(0, workflow.basedir)  # the package, even when it isn't installed

from mnist_basics import PipelineError, bridge
from mnist_basics.params import values
from mnist_basics.pipeline import (DATASETS, METHODS, PARAMS, SAMPLE, SPREAD, SPREAD_CSV,
                                   SPREAD_REPORT, STAGES_OF, SWEEP_CSV, accuracy_csv,
                                   dataset_stages, dvcfile, history, report as page,
                                   snakemake_inputs, spread_jobs, steps)


configfile: PARAMS


# Validate every section before anything runs, with the stages' own error messages; the
# values, as the stages read them, are what dvc.lock's are compared with (bridge rule 2).
try:
    VALUES = values(PARAMS)
except PipelineError as e:
    raise WorkflowError(str(e)) from None

DVCFILES = [*map(dvcfile, DATASETS), "spread/dvc.yaml"]
LOCKS_OF = {f: bridge.read_lock(f.replace(".yaml", ".lock")) for f in DVCFILES}
SPREAD_JOBS = spread_jobs(VALUES)
DATASET_STAGES = dataset_stages(DATASETS)
JOBS = [*DATASET_STAGES, *SPREAD_JOBS]  # every concrete stage of every dvc.yaml file
BY_RULE_JOB = {(j.rule, j.key): j for j in JOBS}

# What `snakemake --report report.html` shows: output -> (caption, category, subcategory).
CAPTIONS = {
    page(): ("reports/captions/report.rst", "1. Report", None),
    accuracy_csv(): ("reports/captions/accuracy.rst", "2. Accuracy", None),
    **{history(m): ("reports/captions/history.rst", "3. Training history", m) for m in METHODS},
    steps(): ("reports/captions/steps.rst", "3. Training history", "resnet18"),
    SPREAD_REPORT: ("reports/captions/spread.rst", "4. Seed spread", None),
    SPREAD_CSV: ("reports/captions/spread_csv.rst", "4. Seed spread", None),
    SWEEP_CSV: ("reports/captions/spread_csv.rst", "4. Seed spread", None),
    page("mnist"): ("reports/captions/mnist.rst", "5. Full MNIST", None),
    accuracy_csv("mnist"): ("reports/captions/accuracy.rst", "5. Full MNIST", None),
}


def declared(path):
    if path in CAPTIONS:
        caption, category, subcategory = CAPTIONS[path]
        return report(path, caption=caption, category=category, subcategory=subcategory)
    return path


rule all:
    # The default target: every stage's outputs, up to the report, for each dataset that
    # params.yaml `datasets` lists (the chapter's MNIST_SAMPLE unless you add mnist).
    default_target: True
    input: [p for s in dataset_stages(VALUES["datasets"]) for p in s.all_outputs]


for dataset in DATASETS:
    if dataset != SAMPLE:
        rule:  # `snakemake mnist`: that dataset's stages, whatever `datasets` lists
            name: dataset
            input: [p for s in STAGES_OF[dataset] for p in s.all_outputs]


rule spread:
    # The seed spread and the sweep (spread/dvc.yaml): `make spread`.
    input: [p for j in SPREAD_JOBS for p in j.all_outputs]


def job(s, wildcards):
    """The concrete stage a job runs: for a matrix stage, the one of its wildcards' values."""
    key = "-".join(str(wildcards[k]) for k in s.matrix)
    return BY_RULE_JOB[(s.rule, key)]


def inputs(s):
    # params.yaml only while the stage's sections differ from dvc.lock's (bridge rule 2).
    def of(wildcards):
        j = job(s, wildcards)
        changed = bridge.params_changed(j, VALUES, LOCKS_OF[s.dvcfile])
        return [*snakemake_inputs(j, VALUES), *([PARAMS] if changed else [])]
    return of


for s in [*DATASET_STAGES, *SPREAD]:
    rule:
        name: s.rule
        input: inputs(s)
        # A matrix stage's keys ({seed}, {value}) are wildcards; values that params.yaml
        # does not list have no stage in spread/dvc.yaml, so nothing can record them.
        output: [declared(p) for p in s.all_outputs]
        wildcard_constraints: seed=r"\d+", value=r"[^/_]+"
        # `shell:` is evaluated when the job runs, after this loop has moved on: bind now.
        params: cmd=lambda wildcards, s=s: job(s, wildcards).cmd
        # A multicore stage claims every core Snakemake has, so that nothing runs beside it
        # (each stage still uses no more threads than the machine has; see cli.cpu_threads).
        threads: workflow.cores if s.multicore else 1
        resources: gpu=int(s.gpu)
        conda: "environment.yml"  # used only with --software-deployment-method conda
        log: f"logs/{s.rule}" + "".join(f"_{{{k}}}" for k in s.matrix) + ".log"
        shell: "{params.cmd} > {log} 2>&1"


LOCKS = bridge.DvcLocks()  # held while a run writes outputs (bridge rule 4)
STARTED = bridge.started()


onstart:
    try:
        LOCKS.acquire([p for j in JOBS for p in j.all_outputs])
    except bridge.Busy as e:
        raise WorkflowError(str(e)) from None


def finish():
    """Release DVC's locks, then record what this run completed (bridge rule 1)."""
    LOCKS.release()
    bridge.commit(bridge.completed(JOBS, STARTED))


onsuccess:
    finish()


onerror:
    finish()
