# The Snakemake view of the pipeline. Its rules are built from mnist_basics/pipeline.py, the
# same definition that generates dvc.yaml, so the two engines run the same commands on the
# same files. mnist_basics/bridge.py keeps the two engines in one state; this file only adds
# what is Snakemake's own: threads, a `gpu` resource on the training stages and a log per rule.
#
#   snakemake --cores 4 --resources gpu=1      # run everything that is out of date
#   snakemake -n                               # show what would run

import sys

sys.path.insert(0, workflow.basedir)  # the package, even when it isn't installed

from mnist_basics import PipelineError, bridge
from mnist_basics.params import load
from mnist_basics.pipeline import ACCURACY_CSV, METHODS, PARAMS, REPORT, STAGES, STEPS, history


configfile: PARAMS


# Validate every section before anything runs, with the stages' own error messages; the
# values, as the stages read them, are what dvc.lock's are compared with (bridge rule 2).
try:
    VALUES = {name: section.model_dump() for name, section in load(PARAMS, *config).items()}
except PipelineError as e:
    raise WorkflowError(str(e)) from None

LOCK = bridge.read_lock()

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


rule all:
    # The default target: every stage's outputs, up to the report.
    default_target: True
    input: [p for s in STAGES for p in s.all_outputs]


for s in STAGES:
    rule:
        name: s.name
        # params.yaml only while the stage's sections differ from dvc.lock's (bridge rule 2).
        input: [*s.deps, *([PARAMS] if bridge.params_changed(s, VALUES, LOCK) else [])]
        output: [declared(p) for p in s.all_outputs]
        # `shell:` is evaluated when the job runs, after this loop has moved on: bind now.
        params: cmd=s.cmd
        # A multicore stage claims every core Snakemake has, so that nothing runs beside it
        # (each stage still uses no more threads than the machine has; see cli.cpu_threads).
        threads: workflow.cores if s.multicore else 1
        resources: gpu=int(s.gpu)
        conda: "environment.yml"  # used only with --software-deployment-method conda
        log: f"logs/{s.name}.log"
        shell: "{params.cmd} > {log} 2>&1"


LOCKS = bridge.DvcLocks()  # held while a run writes outputs (bridge rule 4)
STARTED = bridge.started()


onstart:
    try:
        LOCKS.acquire([p for s in STAGES for p in s.all_outputs])
    except bridge.Busy as e:
        raise WorkflowError(str(e)) from None


def finish():
    """Release DVC's locks, then record what this run completed (bridge rule 1)."""
    LOCKS.release()
    bridge.commit(bridge.completed(STAGES, STARTED))


onsuccess:
    finish()


onerror:
    finish()
