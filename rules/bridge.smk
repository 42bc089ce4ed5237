# What keeps Snakemake and DVC in one state (mnist_basics/pipeline/bridge.py has the contract), and
# what the generated rule files call:
#   params_yaml(stage)  params.yaml among a rule's inputs, only while the sections its stage
#                       reads differ from what dvc.lock recorded (bridge rule 2);
#   value(key)          a validated value of params.yaml, such as value("spread.seeds");
#   TRAIN_GPU           a training rule's `gpu` resource: 1 with a GPU, else 0.

import sys

sys.path.insert(0, workflow.basedir)  # the package, even when it isn't installed

from mnist_basics import PipelineError

from mnist_basics.pipeline import bridge
from mnist_basics.params import PARAMS, values


configfile: PARAMS


# Validate every section before anything runs, with the stages' own error messages; the
# values, as the stages read them, are what dvc.lock's are compared with.
try:
    JOBS = bridge.Jobs(values(PARAMS))  # every concrete stage of every dvc.yaml file
except PipelineError as e:
    raise WorkflowError(str(e)) from None

params_yaml, value = JOBS.params_yaml, JOBS.value
# The training stages' `gpu` resource: 1 where they train on a GPU, which they then take in
# turns; 0 on a machine without one, where they run side by side within --cores.
TRAIN_GPU = bridge.gpu_token(value("train.device"))
LOCKS = bridge.DvcLocks()  # held while a run writes outputs (bridge rule 4)
STARTED = bridge.started()


onstart:
    bridge.scope.sync(bridge.scope.listed())  # DVC sees the datasets params.yaml lists
    try:
        LOCKS.acquire(JOBS.outputs())
    except bridge.Busy as e:
        raise WorkflowError(str(e)) from None


onsuccess:
    bridge.finish(LOCKS, JOBS, STARTED)  # release the locks, record what was made (rule 1)


onerror:
    bridge.finish(LOCKS, JOBS, STARTED)
