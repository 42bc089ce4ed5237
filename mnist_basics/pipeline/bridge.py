"""How Snakemake and DVC share one state: everything the Snakefile adds to the definition.

The contract, under either engine:
1. **dvc.lock is the record.** It holds, per stage, the params and the hashes of the inputs
   and outputs that were last made (spread/dvc.lock likewise for each concrete job of
   spread/dvc.yaml, `mlp@3`). DVC writes it after each stage; a Snakemake run writes it
   through `dvc commit` for every stage it completed, when it ends (`commit`), also when
   another stage failed.
2. **A params edit reruns exactly the stages that read it.** Snakemake compares files by
   mtime, and params.yaml holds every stage's params. So a rule lists params.yaml among its
   inputs only while the sections its stage reads differ from what dvc.lock recorded
   (`params_changed`): the edit made params.yaml newer than the stage's outputs, so Snakemake
   reruns that stage and no other. Once the run is committed, the values agree with dvc.lock
   and the input is gone again; outputs that DVC remade stay up to date for Snakemake too.
   The workflow profile (`profiles/default/config.yaml`) sets `rerun-triggers: mtime`, so
   that input coming and going is not itself a reason to rerun.
3. **Reading the workflow changes nothing.** Everything here that runs when the Snakefile is
   parsed only reads files, so `snakemake -n`, `--lint` and `--report` leave the tree as it
   was. Writing happens in jobs and in the onstart/onsuccess/onerror handlers of real runs.
4. **The engines exclude each other.** While a Snakemake run writes outputs it holds DVC's
   repository lock and DVC's write lock on every output (`DvcLocks`): a `dvc repro`
   started meanwhile fails fast with DVC's own message, and one already running a stage
   makes Snakemake stop before it starts. The OS drops both locks if Snakemake is killed.

DVC has no public API for its write lock, so `DvcLocks` calls `dvc.rwlock.rwlock`;
`tests/test_compat.py` checks that it still takes the arguments used here and still makes a
concurrent `dvc repro` refuse to run, so a DVC upgrade that changes it fails a test by name.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from mnist_basics.params import PARAMS, Loader
from mnist_basics.pipeline import scope
from mnist_basics.pipeline.definition import (
    DATASETS,
    SPREAD_BY_NAME,
    dataset_stages,
    dvcfile,
    spread_jobs,
)
from mnist_basics.pipeline.stage import Stage, lookup

BUSY = ("another DVC process (a `dvc repro`?) is working in this project; wait for it to "
        "finish, then run again")


class LockLoader(getattr(yaml, "CSafeLoader", Loader)):
    """The params' YAML 1.2 reading on libyaml's parser, where PyYAML has it: every engine
    start reads each dvc.lock (~1,000 lines each), and the pure-Python parser took most of
    a no-op run's second."""

    yaml_implicit_resolvers = Loader.yaml_implicit_resolvers


def read_lock(path: str | Path = "dvc.lock") -> dict:
    """dvc.lock's stages, or {} before anything was recorded (read as DVC wrote it: YAML 1.2)."""
    path = Path(path)
    if not path.exists():
        return {}
    return (yaml.load(path.read_text(), Loader=LockLoader) or {}).get("stages", {})


def params_of(stage: Stage, params: Mapping[str, Mapping]) -> dict:
    """The sections (or single keys, `train.device`) a stage reads, as dvc.lock records them
    under `params.yaml`."""
    out = {}
    for name in stage.params:
        value = lookup(params, name)
        out[name] = dict(value) if isinstance(value, Mapping) else value
    return out


def params_changed(stage: Stage, params: Mapping[str, Mapping], lock: Mapping) -> bool:
    """Whether the stage's sections differ from what dvc.lock recorded for its outputs."""
    if not stage.params:
        return False
    recorded = lock.get(stage.name, {}).get("params", {}).get(PARAMS)
    return recorded != params_of(stage, params)


class Jobs:
    """Every concrete stage of every dvc.yaml at these params, and dvc.lock's record of each:
    what the Snakefile's rules run (rules/bridge.smk)."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self.values = values
        self.all = [*dataset_stages(DATASETS), *spread_jobs(values)]
        self._by_address = {j.address: j for j in self.all}
        self._locks: dict[str, dict] = {}  # read when a rule first asks: a run reads only its own

    def job(self, address: str, wildcards: Mapping[str, object]) -> Stage:
        """The concrete stage a rule runs: `spread/dvc.yaml:mlp` with seed 3 is `...:mlp@3`."""
        if address in self._by_address:
            return self._by_address[address]
        matrix = SPREAD_BY_NAME[address.rpartition(":")[2]].matrix
        return self._by_address[f"{address}@{'-'.join(str(wildcards[k]) for k in matrix)}"]

    def params_changed(self, address: str, wildcards: Mapping[str, object]) -> bool:
        job = self.job(address, wildcards)
        if job.dvcfile not in self._locks:
            self._locks[job.dvcfile] = read_lock(job.dvcfile.replace(".yaml", ".lock"))
        return params_changed(job, self.values, self._locks[job.dvcfile])

    def params_yaml(self, address: str):
        """A rule's input function: params.yaml while its stage's sections differ from
        dvc.lock's (rule 2), else nothing."""
        return lambda wildcards: [PARAMS] if self.params_changed(address, wildcards) else []

    def value(self, key: str) -> object:
        """A validated value of params.yaml: `value("spread.seeds")`."""
        return lookup(self.values, key)

    def outputs(self) -> list[str]:
        return [p for j in self.all for p in j.all_outputs]


class DvcLocks:
    """DVC's repository lock, then its write lock on every output, from `acquire` to `release`.

    The Snakefile takes them in its onstart handler and gives them back when the run ends, so
    they live in an ExitStack rather than a `with` block.
    """

    def __init__(self) -> None:
        self._held = contextlib.ExitStack()

    def acquire(self, outputs: Iterable[str], root: str | Path = ".") -> None:
        """Raises `Busy`, holding nothing, if another DVC process holds either lock."""
        from dvc.fs import localfs
        from dvc.lock import LockError
        from dvc.repo import Repo
        from dvc.rwlock import rwlock

        root = os.path.abspath(root)
        try:
            repo = self._held.enter_context(Repo(root))
            self._held.enter_context(repo.lock)
            self._held.enter_context(rwlock(repo.tmp_dir, localfs, "snakemake", [],
                                            [os.path.join(root, p) for p in outputs], False))
        except LockError:
            self.release()
            raise Busy(BUSY) from None

    def release(self) -> None:
        self._held.close()


class Busy(Exception):
    """Another DVC process is working in the project."""


def completed(stages: Iterable[Stage], since: float) -> list[str]:
    """The stages whose every output was written after `since`: what this run made, as DVC's
    commands name them (`mlp`, `spread/dvc.yaml:mlp@3`)."""
    return [s.address for s in stages
            if all(os.path.exists(p) and os.path.getmtime(p) >= since for p in s.all_outputs)]


def commit(names: list[str]) -> None:
    """Record what these stages made in dvc.lock and DVC's cache, so `dvc status` agrees.

    --no-relink leaves the outputs in place: relinking rewrites them (with DVC's default
    `copy` cache), and their new mtimes would make the next Snakemake run redo everything.
    """
    if names:
        subprocess.run(["dvc", "commit", "--force", "--quiet", "--no-relink", *names],
                       check=True)


def finish(locks: DvcLocks, jobs: Jobs, since: float) -> None:
    """A Snakemake run's end, failed or not: release DVC's locks, then record what it made,
    in the dvc.lock of each dataset it built, shown to DVC now if it was not (scope.py)."""
    locks.release()
    made = completed(jobs.all, since)
    built = {j.dataset for j in jobs.all if j.address in made and j.dvcfile == dvcfile(j.dataset)}
    scope.sync({*scope.listed(), *built})
    commit(made)


def gpu_token(device: str, dev: Path = Path("/dev"),
              env: Mapping[str, str] = os.environ) -> int:
    """The `gpu` resource a training stage holds (its rule's `resources: gpu=TRAIN_GPU`).

    1 where the stages train on a GPU (params.yaml `train.device` cuda, or auto with a GPU
    device here and visible), so that they take turns on it; 0 on a machine with none, where
    each small model trains on a core of its own, side by side. resnet18 runs alone either way:
    it takes every core. Looks for the devices' files, not torch: reading the workflow must
    stay quick."""
    if device == "cuda":
        return 1
    if device == "cpu" or env.get("CUDA_VISIBLE_DEVICES") == "":
        return 0
    return int(any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists())  # NVIDIA, ROCm


def started() -> float:
    """A run's start, a little early: file systems may round mtimes down."""
    return time.time() - 1
