"""This pipeline beside the book's notebook run with fastai, on the same machine (bench/run.py).

Three comparisons, each in alternating rounds (ours, then fastai's, then ours again...), so a
slow spell on the machine falls on both:

- the chapter: a clean `snakemake --cores 4 --resources gpu=1`, from the archive to the page,
  against `bench/notebook.py chapter`: the notebook's cells from unpacking to resnet18 (the
  whole process, `import fastai` included);
- resnet18: the stage alone (`python stages/resnet18.py`, the whole process, from reading the
  tensors to writing the checkpoint and metrics) against fastai's `fit_one_cycle(1, 0.1)`
  alone (its own process's import, unpacking and DataLoaders not counted);
- the same on the full MNIST (60,000 digits, ten classes), when its archive is at hand.

Each figure is the median of the rounds, with its range; a ratio is our median over fastai's.
fastai runs in its own environment (`make fastai-venv`), with the same torch.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from mnist_basics.pipeline.definition import BY_DATASET, tensors
from tests.harness import SNAKEMAKE, clean_outputs

BENCH = Path(__file__).resolve().parent
NOTEBOOK = BENCH / "notebook.py"
FASTAI_PYTHON = BENCH.parent / ".venv-fastai/bin/python"  # the Makefile's fastai-venv

# name -> (comparison, the most ours may take per second of fastai's)
TARGETS = {
    "the chapter: clean snakemake run / the notebook with fastai": ("chapter", 0.6),
    "resnet18: the stage / fastai's fit_one_cycle(1, 0.1)": ("resnet18", 0.35),
    "full MNIST resnet18: the stage / fastai's fit_one_cycle(1, 0.1)": ("mnist_resnet18", 0.3),
}


def notebook(timed, python: Path, what: str, archive: Path, env: dict) -> dict:
    """One run of bench/notebook.py: its JSON, plus the whole process's wall seconds."""
    # fastai's environment, not ours: only the machine's settings carry over.
    fenv = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    fenv["PATH"] = f"{python.parent}:{os.environ.get('PATH', '')}"
    r = timed((str(python), str(NOTEBOOK), what, "--archive", str(archive)), BENCH, fenv)
    out = json.loads(r["stdout"].strip().splitlines()[-1])
    return {**out, "wall_s": round(r["seconds"], 3)}


def _stage(timed, proj: Path, env: dict, dataset: str) -> float:
    python, *script = BY_DATASET[dataset]["resnet18"].argv(root=proj)
    return round(timed((python, *script), proj, env)["seconds"], 3)


def rounds(timed, proj: Path, env: dict, fastai_python: Path, archive: Path,
           digits: Path | None, n: int, log, n_mnist: int | None = None) -> dict[str, list[dict]]:
    """`n` alternating rounds of each comparison (`n_mnist` of the full MNIST's, default `n`):
    {comparison: [one dict per round]}."""
    out: dict[str, list[dict]] = {"chapter": [], "resnet18": []}
    for i in range(n):
        clean_outputs(proj)
        ours = round(timed(SNAKEMAKE, proj, env)["seconds"], 3)
        nb = notebook(timed, fastai_python, "chapter", archive, env)
        out["chapter"].append({"ours": ours, "fastai": nb["wall_s"], "fastai_parts": nb["seconds"],
                               "fastai_accuracy": nb["resnet18_accuracy"]})
        ours = _stage(timed, proj, env, "mnist_sample")  # the clean run left its inputs
        nb = notebook(timed, fastai_python, "resnet18", archive, env)
        out["resnet18"].append({"ours": ours, "fastai": nb["seconds"]["resnet18_fit"],
                                "fastai_process": nb["wall_s"],
                                "fastai_accuracy": nb["resnet18_accuracy"]})
        log(f"side by side, round {i + 1}/{n}: chapter {out['chapter'][-1]['ours']:.1f} s "
            f"vs {out['chapter'][-1]['fastai']:.1f} s, resnet18 {ours:.1f} s vs "
            f"{out['resnet18'][-1]['fastai']:.1f} s")
    if digits is None:
        return out
    timed(("snakemake", tensors("mnist"), *SNAKEMAKE[1:]), proj, env)  # the stage's input
    out["mnist_resnet18"] = []
    n_mnist = n if n_mnist is None else n_mnist
    for i in range(n_mnist):
        ours = _stage(timed, proj, env, "mnist")
        nb = notebook(timed, fastai_python, "resnet18", digits, env)
        out["mnist_resnet18"].append({"ours": ours, "fastai": nb["seconds"]["resnet18_fit"],
                                      "fastai_process": nb["wall_s"],
                                      "fastai_accuracy": nb["resnet18_accuracy"]})
        log(f"side by side, full MNIST round {i + 1}/{n_mnist}: resnet18 {ours:.1f} s vs "
            f"{out['mnist_resnet18'][-1]['fastai']:.1f} s")
    return out


def summary(each: dict[str, list[dict]]) -> dict[str, dict]:
    """Per comparison: medians and ranges of both sides, and the ratio of the medians."""
    out = {}
    for name, runs in each.items():
        ours = [r["ours"] for r in runs]
        theirs = [r["fastai"] for r in runs]
        out[name] = {
            "ours_s": round(statistics.median(ours), 3), "ours_range": [min(ours), max(ours)],
            "fastai_s": round(statistics.median(theirs), 3),
            "fastai_range": [min(theirs), max(theirs)],
            "ratio": round(statistics.median(ours) / statistics.median(theirs), 3),
            "rounds": len(runs),
            "fastai_accuracy": statistics.median(r["fastai_accuracy"] for r in runs),
        }
        if "fastai_parts" in runs[0]:  # where the notebook's time goes
            out[name]["fastai_parts"] = {k: round(statistics.median(
                r["fastai_parts"][k] for r in runs), 3) for k in runs[0]["fastai_parts"]}
    return out


def verdicts(side: dict[str, dict]) -> dict[str, dict]:
    return {name: {"value": side[key]["ratio"], "limit": limit, "unit": "x",
                   "met": side[key]["ratio"] <= limit}
            for name, (key, limit) in TARGETS.items() if key in side}


def table(side: dict[str, dict]) -> list[str]:
    lines = [f"{'side by side (median, range)':32s} {'rounds':>6s} {'ours s':>21s} "
             f"{'fastai s':>22s} {'ratio':>6s}"]
    for name, s in side.items():
        lo, hi = s["ours_range"]
        flo, fhi = s["fastai_range"]
        lines.append(f"{name:32s} {s['rounds']:6d} {s['ours_s']:7.1f} ({lo:5.1f}-{hi:5.1f}) "
                     f"{s['fastai_s']:8.1f} ({flo:5.1f}-{fhi:5.1f}) {s['ratio']:6.2f}")
    return lines
