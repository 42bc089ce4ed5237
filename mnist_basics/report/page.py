"""The pages' toolkit: what the chapter's, the full MNIST's and the spread's pages share.

- Reading: a page's inputs by stage and flag (`Inputs`), safetensors as numpy arrays, CSV
  rows, the stack stage's counts.
- Sections: the confusion matrix of any number of classes, each stage's seconds, the
  methods' key params in words.
- Provenance: the git commit and what differs from it, versions, each input's md5.
- The Jinja environment: autoescape, gettext (mnist_basics/report/i18n.py), the `num` filter, and
  templates/sections.html.j2's macros for the parts every page draws alike.

Figures are in mnist_basics/report/figures.py. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from mnist_basics import PipelineError
from mnist_basics.artifacts import read_json
from mnist_basics.params import load_yaml
from mnist_basics.pipeline.cli import by_stage, require
from mnist_basics.registry import METHOD_OF_ROW, ROWS, SAMPLE, WALL_CLOCK_FLAG, Layout
from mnist_basics.report.i18n import SOURCE, install, ngettext
from mnist_basics.report.i18n import gettext as _

if TYPE_CHECKING:
    import numpy as np

TEMPLATES = Path(__file__).resolve().parent / "templates"
VERSIONS_OF = ("torch", "torchvision", "dvc", "snakemake")
# The accuracy tables' rows, from the registry: accuracy.csv keeps the titles in English, the
# page translates them; the book's figures are fastbook 04_mnist_basics' stored outputs.
TITLES = {key: row.title for key, row in ROWS.items()}
BOOK = {key: row.book for key, row in ROWS.items()}


# -- Reading ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inputs:
    """Every path a page reads, by stage and flag (`--input mlp.metrics=PATH`), and its own."""

    params: Path
    files: dict[str, dict[str, Path]]  # stage -> flag -> path
    out: Path | None = None  # the page itself, which holds this run's wall-clock figures
    dataset: str = SAMPLE  # whose stages wrote them (`--dataset`)

    @classmethod
    def from_args(cls, args, reads: Mapping[str, Sequence[str]]) -> Inputs:
        """From a page stage's flags; `reads` is what it needs of each stage."""
        files = by_stage(args.input)
        require(files, reads)
        return cls(params=args.params, files=files, out=getattr(args, "out", None),
                   dataset=getattr(args, "dataset", SAMPLE))

    def wall_clock(self) -> set[str]:
        """The files that hold this run's seconds: the two runs' only differing bytes."""
        return {str(p) for files in self.files.values() for flag, p in files.items()
                if flag == WALL_CLOCK_FLAG} | ({str(self.out)} if self.out else set())

    def kind(self, flag: str, stages: Sequence[str]) -> dict[str, Path]:
        """One kind of output (`metrics`, `history`, ...) of each of `stages` that writes it."""
        return {s: self.files[s][flag] for s in stages if flag in self.files[s]}

    def of(self, stage: str) -> list[Path]:
        """The files a stage writes."""
        return list(self.files[stage].values())


def read_arrays(path: Path, needs: set[str], stage: str) -> dict[str, np.ndarray]:
    """A safetensors file as numpy arrays (the report only reads, so it needs no torch)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        arrays = load(Path(path).read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise PipelineError(f"{path}: not a valid safetensors file ({e})") from None
    missing = sorted(needs - set(arrays))
    if missing:
        raise PipelineError(f"{path}: no tensor {missing[0]!r}; rerun the {stage} stage")
    return arrays


def read_rows(path: Path) -> list[dict[str, float | None]]:
    """A history or steps CSV as rows of floats; an empty cell (no loss to report) is None."""
    with open(path, newline="") as f:
        return rows_of(f, path)


def rows_of(lines: Iterable[str], where: object) -> list[dict[str, float | None]]:
    """read_rows of a CSV's lines, from wherever they come (`where` names them in errors)."""
    try:
        return [{k: float(v) if v not in ("", None) else None for k, v in r.items()}
                for r in csv.DictReader(lines)]
    except ValueError as e:
        raise PipelineError(f"{where}: not a CSV of numbers ({e})") from None



def check_predictions(arrays: Mapping[str, np.ndarray], n: int, classes: int, where: Path,
                      tensors: Path, rerun: str) -> None:
    """A predictions file as every method's stage writes it, for the `n` validation digits of
    `tensors`: each answer (`pred`, `pred_rmse`) a label [N] below `classes`, everything else
    (`probs`, the pixel mean's distances) [N, C]. PipelineError naming the file otherwise."""
    for key in sorted(arrays):
        a, answers = arrays[key], key.startswith("pred")
        want = (n,) if answers else (n, classes)
        if a.shape != want:
            raise PipelineError(f"{where}: {key} has shape {list(a.shape)}, but {tensors} has "
                                f"{n} validation digits: expected {list(want)}; {rerun}")
        if answers and (a.dtype.kind not in "iu" or a.min(initial=0) < 0
                        or a.max(initial=0) >= classes):
            raise PipelineError(f"{where}: {key} holds {a.dtype} answers, not labels 0 to "
                                f"{classes - 1}; {rerun}")


def read_counts(path: Path, layout: Layout, rerun: str = "rerun the stack stage"
                ) -> dict[str, dict[str, int]]:
    """The stack stage's counts.json: images per split and class."""
    c = read_json(path)
    try:
        return {s: {k: int(c[s][k]) for k in layout.classes} for s in layout.splits}
    except (KeyError, TypeError, ValueError):
        first, second = layout.classes[:2]
        raise PipelineError(f"{path}: expected images per split and class, such as "
                            f'{{"{layout.splits[0]}": {{"{first}": n, "{second}": n, ...}}, '
                            f'"{layout.splits[1]}": {{...}}}}; {rerun}') from None


# -- Sections --------------------------------------------------------------------------------
def confusion(pred: np.ndarray, y: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Counts [C, C]: row i holds the digits whose label is labels[i], column j those answered
    labels[j]. `pred` and `y` are labels, as the stack stage writes them."""
    import numpy as np

    n = max(labels) + 1
    flat = y.astype(np.int64) * n + pred.astype(np.int64)
    counts = np.bincount(flat, minlength=n * n).reshape(n, n)
    return counts[np.ix_(labels, labels)]


def confusion_table(matrix: np.ndarray, classes: Sequence[str]) -> dict:
    """A confusion matrix as templates/sections.html.j2 draws it: counts, shaded. The diagonal
    in blue by the share of the row it holds; a mistake in red by its count against the largest
    mistake, so the pairs that matter stand out even when the diagonal dwarfs them."""
    import numpy as np

    off = matrix - np.diag(np.diag(matrix))
    top = max(int(off.max()), 1)
    rows = []
    for t, name in enumerate(classes):
        total = max(int(matrix[t].sum()), 1)
        cells = []
        for p in range(len(classes)):
            c = int(matrix[t, p])
            alpha, rgb = (c / total, "31, 95, 153") if t == p else (c / top, "161, 38, 27")
            style = f"background: rgba({rgb}, {alpha:.2f});" + (" color: #fff;" if alpha > 0.55
                                                                   else "")
            cells.append({"count": c, "style": style if c else "",
                          "kind": "diagonal" if t == p else "zero" if c == 0 else ""})
        rows.append({"digit": name, "cells": cells, "total": int(matrix[t].sum())})
    return {"classes": list(classes), "rows": rows,
            "answered": [int(v) for v in matrix.sum(axis=0)], "n": int(matrix.sum())}


def wall_times(timing: Mapping[str, Mapping], stages: Sequence[str]) -> dict:
    """Each stage's seconds from its timing file (None where it has not run), and the total:
    the whole process's, as the engines time it, where the file has them."""
    rows = [{"stage": s, "seconds": timing[s].get("process_seconds", timing[s].get("seconds")),
             "train_seconds": timing[s].get("train_seconds"),
             "images_per_second": timing[s].get("images_per_second"),
             "device": timing[s].get("device", _("unknown")),
             "threads": timing[s].get("threads")}
            if s in timing else {"stage": s, "seconds": None} for s in stages]
    timed = [r["seconds"] for r in rows if r["seconds"] is not None]
    return {"rows": rows, "total": sum(timed) if timed else None}


def row_source(key: str) -> tuple[str, str]:
    """A row of the accuracy table -> (the method that wrote it, its keys' prefix in metrics)."""
    return METHOD_OF_ROW[key], ROWS[key].prefix



def key_params(method: str, params: Mapping[str, dict]) -> str:
    """The few params that make a method's result, in words."""
    if method.startswith("pixel_mean"):
        return _("no training: the mean of each class's training images")
    p = params[method]
    v = {"lr": p["lr"], "batch": p["batch_size"],
         "epochs": ngettext("%(n)s epoch", "%(n)s epochs", p["epochs"]) % {"n": p["epochs"]}}
    if method == "linear":
        return _("lr %(lr)s, batch %(batch)s, %(epochs)s") % v
    if method == "mlp":
        return _("lr %(lr)s, batch %(batch)s, %(epochs)s, %(hidden)s hidden") % {
            **v, "hidden": p["hidden"]}
    return (_("one-cycle to lr %(lr)s, batch %(batch)s, %(epochs)s, weight decay %(wd)s") % {
        **v, "wd": p["weight_decay"]}
        + {True: ", bf16", False: "", "auto": ", " + _("bf16 where native")}[p["bf16"]])



# -- Provenance -----------------------------------------------------------------------------
def git_state(cwd: Path, wall_clock: set[str] = frozenset()) -> dict[str, object]:
    """The commit, and the tracked files that differ from it: those the user edited, apart
    from those that only hold this run's wall-clock figures. "unknown" without git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                  timeout=20, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout

    commit = (git("rev-parse", "HEAD") or "").strip()
    changed = git("status", "--porcelain", "-z", "--untracked-files=no") if commit else None
    if changed is None:
        return {"commit": commit or "unknown", "dirty": "unknown", "edited": [],
                "wall_clock": []}
    # -z: each entry `XY path`, NUL-terminated and never quoted; a rename adds the old path.
    entries = changed.split("\0")
    paths, i = [], 0
    while i < len(entries) and entries[i]:
        paths.append(entries[i][3:])
        i += 2 if entries[i][0] in "RC" else 1
    wall = [p for p in paths if p in wall_clock
            or (p == "dvc.lock" and _lock_differs_only_in_wall_clock(git, cwd, wall_clock))]
    edited = [p for p in paths if p not in wall]
    return {"commit": commit, "dirty": "yes" if edited else "no", "edited": edited,
            "wall_clock": wall}


def _without_wall_clock(lock: object, wall_clock: set[str]) -> object:
    """dvc.lock with the hashes of wall-clock files blanked, wherever they appear."""
    if isinstance(lock, dict):
        if lock.get("path") in wall_clock:
            return {"path": lock["path"]}
        return {k: _without_wall_clock(v, wall_clock) for k, v in lock.items()}
    if isinstance(lock, list):
        return [_without_wall_clock(v, wall_clock) for v in lock]
    return lock


def _lock_differs_only_in_wall_clock(git, cwd: Path, wall_clock: set[str]) -> bool:
    committed = git("show", "HEAD:dvc.lock")
    try:
        now = (cwd / "dvc.lock").read_text()
        return committed is not None and (_without_wall_clock(load_yaml(committed), wall_clock)
                                          == _without_wall_clock(load_yaml(now), wall_clock))
    except (OSError, yaml.YAMLError):
        return False


def versions() -> dict[str, str]:
    out = {}
    for name in VERSIONS_OF:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = _("not installed")
    return out


def md5_of(path: Path) -> str:
    """The file's md5, as DVC records it in dvc.lock (`hash: md5`)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()



def file_hashes(inputs: Inputs) -> list[dict]:
    """Every file a page was made from, stage by stage: path, md5, bytes (None if absent)."""
    rows = []
    for stage, files in inputs.files.items():
        for flag, path in files.items():
            there = path.exists()
            rows.append({"stage": stage, "path": str(path),
                         "md5": md5_of(path) if there else None,
                         "size": path.stat().st_size if there else None,
                         # by what the file is, wherever a flag put it
                         "wall_clock": flag == WALL_CLOCK_FLAG})
    return rows


# -- The templates --------------------------------------------------------------------------
def page_language(params: Mapping[str, Mapping]) -> str:
    """params.yaml's `report.lang`; English where the section is not there."""
    return params.get("report", {}).get("lang", SOURCE)


def environment(lang: str = SOURCE):
    """The templates' Jinja environment, in a language: autoescape, i18n, the `num` filter."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # a param such as "<script>" is shown as text, never run
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,  # as babel.cfg extracts the templates' messages
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    install(env, lang)  # {% trans %} and _() in every template
    env.filters["num"] = num
    return env


def num(v: object, spec: str = ".6f") -> str:
    """A number for the page; a dash where there is none."""
    return "—" if v is None or v == "" else format(v, spec)



def render(template: str, context: Mapping) -> str:
    """A page from templates/, in the language of `context["lang"]`."""
    return environment(context.get("lang", SOURCE)).get_template(template).render(**context)
