"""Reading and writing artifacts so that nobody ever sees half of one.

Every file a stage writes goes to a temporary file in the same folder, is flushed to disk,
and is then `os.replace`d into place: a crash, a kill or a full disk leaves either the old
artifact or the new one, never a mix. Tensors are safetensors (no pickle anywhere); small
records are JSON with sorted keys, so equal content means equal bytes.

Temporary names carry the writer's process id (`.mlp.json.4242.k3j_x.tmp`). Only SIGKILL
(or a power cut) can leave one behind; the next writer of the same artifact removes those
whose process is gone (`sweep`), and never touches a temporary that a live process is still
writing.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnist_basics import PipelineError

if TYPE_CHECKING:
    import torch


_UMASK = os.umask(0)
os.umask(_UMASK)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep(path: str | Path) -> list[Path]:
    """Remove the temporaries a killed writer of `path` left beside it; returns what it removed.

    Matches `.<name>.<pid>.*.tmp*`, and only when process <pid> no longer exists.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\..*\.tmp")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:  # no folder yet, or unreadable: nothing of ours to clean
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or _alive(int(m.group(1))) or entry.is_dir(follow_symlinks=False):
            continue
        stale = Path(entry.path)
        stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it's gone."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                   suffix=".tmp" + suffix)
    except OSError as e:
        raise PipelineError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual mode
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise PipelineError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run the stage that writes it first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: not valid JSON ({e})") from None


def write_csv(path: str | Path, rows: Sequence[Mapping[str, object]]) -> None:
    """One header line from the first row's keys, then one line per row."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata=None) -> None:
    """Torch tensors, or NumPy arrays (the same bytes, without importing torch)."""
    if all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save as save_numpy

        arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        write_bytes(path, save_numpy(arrays, metadata=metadata))
        return
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_bytes(path, save(tensors, metadata=metadata))


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a truncated or foreign file (a pickle, say) is refused."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run the stage that writes it first") from None
    except IsADirectoryError:
        raise PipelineError(f"{path}: is a directory, not a safetensors file") from None
    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise PipelineError(f"{path}: not a valid safetensors file ({e})") from None
