"""The private APIs of torch and DVC that the project calls still do what it relies on.

Each lives in one place (mnist_basics/compat.py, mnist_basics/pipeline/bridge.py); these tests
fail by name the day an upgrade renames or changes one.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from mnist_basics import compat
from mnist_basics.pipeline import bridge
from tests.harness import engine_env, sh


def test_deterministic_algorithms_as_the_public_call_sets_them():
    was = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        torch.use_deterministic_algorithms(False)
        compat.use_deterministic_algorithms()
        assert torch.are_deterministic_algorithms_enabled(), (
            "torch._C._set_deterministic_algorithms no longer enables deterministic algorithms:"
            " update mnist_basics/compat.py")
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])


def test_bf16_query_answers_a_bool():
    assert isinstance(compat.cpu_has_bf16(), bool)


def test_dvc_rwlock_takes_the_arguments_the_bridge_passes():
    from dvc.rwlock import rwlock

    params = list(inspect.signature(rwlock).parameters)
    assert params == ["tmp_dir", "fs", "cmd", "read", "write", "hardlink"], (
        f"dvc.rwlock.rwlock now takes {params}: update DvcLocks in mnist_basics/pipeline/bridge.py")


@pytest.mark.parametrize("outputs", [[], ["models/mlp.safetensors"]])
def test_dvc_refuses_to_run_while_the_bridge_holds_its_locks(project, monkeypatch, outputs):
    """With only the write lock (outputs) or only the repository lock, `dvc repro` stops."""
    monkeypatch.chdir(project)
    locks = bridge.DvcLocks()
    locks.acquire(outputs)
    try:
        r = sh("dvc", "repro", "mlp", cwd=project, env=engine_env(), check=False)
    finally:
        locks.release()
    assert r.returncode != 0
    assert "lock" in (r.stdout + r.stderr).lower()
    # Released: another holder may take them, and a second holder is refused in one line.
    locks.acquire(outputs)
    try:
        with pytest.raises(bridge.Busy, match="another DVC process"):
            bridge.DvcLocks().acquire(outputs)
    finally:
        locks.release()
