"""The private torch APIs this project calls, in one place, each for a reason given below.

`tests/test_compat.py` checks every one of them against the public behaviour it stands for,
so the day a torch release renames or changes one, a test says which and why it is used.
(The private DVC APIs the Snakefile needs live in `mnist_basics/pipeline/bridge.py`, checked
the same way.)
"""

from __future__ import annotations

import torch


def use_deterministic_algorithms() -> None:
    """What `torch.use_deterministic_algorithms(True, warn_only=True)` does, minus 1.5 s.

    The public call imports torch._inductor to set a torch.compile flag; nothing here
    compiles, and every training stage would pay that import.
    """
    torch._C._set_deterministic_algorithms(True, warn_only=True)


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (avx512_bf16 or AMX).

    torch has no public query for it; without it, bf16 autocast on a CPU is emulated and
    slower than float32.
    """
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
