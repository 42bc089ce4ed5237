"""`python -m mnist_basics compare A B [--out FILE]`: one page that sets two runs side by side.

A and B are each a git revision (a branch, a tag, a commit), the name of a DVC experiment
(`dvc exp show` lists them), or `workspace`, the files as they are now. Every file comes
through DVC's public API (`dvc.api.read` with `rev`): the params, metrics, histories and
dvc.lock from git, the predictions and tensors from DVC's cache (or its remote), so it works
in any clone whose cache holds both runs. The page, one self-contained file in the language
of params.yaml `report.lang`, holds:
- the params that differ;
- each method's accuracy in both runs, and the change;
- each trained method's curves, both runs on one chart, and resnet18's steps;
- each method's confusion matrices side by side;
- the validation digits one run gets right and the other wrong;
- which artifacts differ, by the hashes dvc.lock records.
It compares the chapter's MNIST_SAMPLE runs (dvc.yaml); nothing here trains or writes but
the page.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_basics import PipelineError
from mnist_basics.artifacts import write_text
from mnist_basics.params import PARAMS, load_yaml
from mnist_basics.pipeline.definition import (
    TENSORS,
    WALL_CLOCK,
    classes,
    history,
    metrics,
    predictions,
    steps,
)
from mnist_basics.registry import DATASETS, METHODS, ROWS, SAMPLE, TRAINED
from mnist_basics.report.figures import canvas, chart, ink, montage, picture, whole_epochs
from mnist_basics.report.i18n import gettext as _
from mnist_basics.report.i18n import language, ngettext
from mnist_basics.report.page import (
    TITLES,
    confusion,
    confusion_table,
    environment,
    page_language,
    row_source,
    rows_of,
)

if TYPE_CHECKING:
    import numpy as np

WORKSPACE = "workspace"
OUT = "reports/compare.html"
SHOWN = 24  # digits shown of each kind of disagreement
LAYOUT = DATASETS[SAMPLE]


# -- Reading a run -----------------------------------------------------------------------------
@dataclass
class Run:
    """What one revision holds: params, results, answers and dvc.lock's hashes; a file it
    does not hold is simply absent (an older commit, a method not run)."""

    name: str
    rev: str | None  # None: the workspace
    params: dict
    lock: dict[str, str]  # output path -> md5
    metrics: dict[str, dict]  # method -> its metrics with each class's accuracy
    history: dict[str, list[dict]]
    steps: list[dict] | None
    answers: dict[str, dict[str, np.ndarray]]  # method -> pred (and pred_rmse)
    tensors: dict[str, np.ndarray] | None  # valid_x, valid_y


def read(path: str, rev: str | None, name: str, mode: str = "r") -> str | bytes | None:
    """A file at a revision through dvc.api, or None where that revision has no such file."""
    import dvc.api
    from dvc.exceptions import DvcException, PathMissingError
    from dvc.scm import RevError

    try:
        return dvc.api.read(path, rev=rev, mode=mode)
    except PathMissingError:
        return None
    except RevError:
        raise PipelineError(f"compare: {name!r} is neither a git revision nor a DVC experiment "
                            f"(`dvc exp show` lists them), nor {WORKSPACE!r}") from None
    except DvcException as e:  # a DVC-tracked file whose object is in no cache here
        raise PipelineError(f"compare: {path} of {name}: {e}; `dvc pull` (or `dvc exp pull` "
                            "for an experiment) fetches it") from None


def load_run(name: str) -> Run:
    rev = None if name == WORKSPACE else name

    def text(path: str) -> str | None:
        return read(path, rev, name)

    def arrays(path: str) -> dict[str, np.ndarray] | None:
        from safetensors.numpy import load

        data = read(path, rev, name, mode="rb")
        return None if data is None else load(data)

    params = text(PARAMS)
    if params is None:
        raise PipelineError(f"compare: {name} has no {PARAMS}")
    lock = load_yaml(text("dvc.lock") or "{}") or {}
    hashes = {o["path"]: o.get("md5") for s in lock.get("stages", {}).values()
              for o in s.get("outs", [])}
    run = Run(name=name, rev=rev, params=load_yaml(params), lock=hashes, metrics={},
              history={}, steps=None, answers={}, tensors=None)
    for m in METHODS:
        found = text(metrics(m))
        if found is None:
            continue
        # Before the per-class file existed, the metrics held each class's accuracy.
        run.metrics[m] = {**json.loads(found), **json.loads(text(classes(m)) or "{}")}
        rows = text(history(m))
        if rows:
            run.history[m] = rows_of(rows.splitlines(), f"{history(m)} of {name}")
        pred = arrays(predictions(m))
        if pred is not None:
            run.answers[m] = {k: v for k, v in pred.items() if k.startswith("pred")}
    rows = text(steps())
    if rows:
        run.steps = rows_of(rows.splitlines(), f"{steps()} of {name}")
    run.tensors = arrays(TENSORS)
    return run


# -- Sections ----------------------------------------------------------------------------------
def flat(params: Mapping, prefix: str = "") -> dict[str, object]:
    """params.yaml as dotted keys: `mlp.lr`."""
    out: dict[str, object] = {}
    for k, v in params.items():
        if isinstance(v, Mapping):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def params_differing(a: Run, b: Run) -> list[dict]:
    fa, fb = flat(a.params), flat(b.params)
    return [{"key": k, "a": fa.get(k, "—"), "b": fb.get(k, "—")}
            for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)]


def accuracy(a: Run, b: Run) -> list[dict]:
    """Each row of the chapter's accuracy table in both runs, and the change."""
    out = []
    for key in ROWS:
        method, prefix = row_source(key)
        va, vb = (r.metrics.get(method, {}).get(f"{prefix}accuracy") for r in (a, b))
        out.append({"method": _(TITLES[key]), "a": va, "b": vb,
                    "change": vb - va if va is not None and vb is not None else None})
    return out


def curves_chart(method: str, a: Run, b: Run):
    """Loss and validation accuracy per epoch, both runs on each panel."""
    fig, (loss, acc) = canvas(9, 3.2, ncols=2)
    for run, style in ((a, "-"), (b, "--")):
        rows = run.history.get(method)
        if not rows:
            continue
        epochs = [r["epoch"] for r in rows]
        loss.plot(epochs, [r["train_loss"] for r in rows], style, color="C0", marker=".",
                  label=_("%(run)s: train") % {"run": run.name})
        loss.plot(epochs, [r["valid_loss"] for r in rows], style, color="C1", marker=".",
                  label=_("%(run)s: validation") % {"run": run.name})
        acc.plot(epochs, [r["valid_accuracy"] for r in rows], style, color="C2", marker=".",
                 label=run.name)
    loss.set(title=_("%(method)s: loss per epoch") % {"method": method}, xlabel=_("epoch"),
             ylabel=_("loss"))
    acc.set(title=_("%(method)s: validation accuracy per epoch") % {"method": method},
            xlabel=_("epoch"), ylabel=_("accuracy"))
    loss.legend(fontsize=8)
    acc.legend(loc="lower right", fontsize=8)
    whole_epochs(max(len(a.history.get(method, [])), len(b.history.get(method, []))), loss, acc)
    ends = "; ".join(_("%(run)s ends at %(acc)s") % {
        "run": r.name, "acc": f"{r.history[method][-1]['valid_accuracy']:.4f}"}
        for r in (a, b) if r.history.get(method))
    return chart(fig, _("Loss and validation accuracy of %(method)s per epoch, both runs: "
                        "%(ends)s.") % {"method": method, "ends": ends})


def steps_chart(a: Run, b: Run):
    """resnet18's loss at every step of its one cycle, both runs."""
    fig, ax = canvas(9, 3.0)
    for run, style in ((a, "-"), (b, "--")):
        if run.steps:
            ax.plot([r["step"] for r in run.steps], [r["loss"] for r in run.steps], style,
                    label=run.name)
    ax.set(title=_("resnet18: training loss per step"), xlabel=_("step"), ylabel=_("loss"))
    ax.legend(fontsize=8)
    return chart(fig, _("resnet18's training loss at every step, %(a)s and %(b)s.") % {
        "a": a.name, "b": b.name})


def disagreements(a: Run, b: Run) -> tuple[list[dict], str | None]:
    """Per accuracy row: each run's confusion matrix, and the digits one run gets right and
    the other wrong. Needs both runs' answers on the same validation digits."""
    import numpy as np

    ta, tb = a.tensors, b.tensors
    if ta is None or tb is None:
        return [], _("One of the runs holds no tensors, so its answers can't be set side by side.")
    if not (np.array_equal(ta["valid_y"], tb["valid_y"])
            and np.array_equal(ta["valid_x"], tb["valid_x"])):
        return [], _("The two runs were validated on different digits, so their answers can't "
                     "be set side by side.")
    x, y = ta["valid_x"], ta["valid_y"].astype(np.int64)
    labels = list(range(len(LAYOUT.names)))
    out = []
    for key, row in ROWS.items():
        method = row_source(key)[0]
        pa, pb = (r.answers.get(method, {}).get(row.pred) for r in (a, b))
        if pa is None or pb is None:
            continue
        right_a, right_b = pa == y, pb == y
        only_a = np.flatnonzero(right_a & ~right_b)
        only_b = np.flatnonzero(right_b & ~right_a)
        out.append({
            "method": _(TITLES[key]),
            "confusion": [confusion_table(confusion(p, y, labels), LAYOUT.names)
                          for p in (pa, pb)],
            "only": [_digits(x, idx, right, wrong)
                     for idx, right, wrong in ((only_a, a, b), (only_b, b, a))],
        })
    return out, None


def _digits(x: np.ndarray, idx: np.ndarray, right: Run, wrong: Run) -> dict:
    text = ngettext("%(n)s digit %(right)s gets right and %(wrong)s wrong",
                    "%(n)s digits %(right)s gets right and %(wrong)s wrong", len(idx)) % {
        "n": len(idx), "right": right.name, "wrong": wrong.name}
    shown = idx[:SHOWN]
    figure = picture(montage(ink(x[shown]), cols=12), text, scale=2) if len(shown) else None
    return {"n": len(idx), "text": text, "figure": figure}


def artifacts(a: Run, b: Run) -> dict:
    """dvc.lock's outputs whose hashes differ between the runs, wall-clock files marked."""
    rows = [{"path": p, "a": a.lock.get(p), "b": b.lock.get(p), "wall_clock": p in WALL_CLOCK}
            for p in sorted(a.lock.keys() | b.lock.keys()) if a.lock.get(p) != b.lock.get(p)]
    return {"rows": rows, "same": len(a.lock.keys() & b.lock.keys()) - sum(
        1 for r in rows if r["a"] and r["b"])}


# -- The page ----------------------------------------------------------------------------------
def build(a: Run, b: Run, lang: str) -> dict:
    with language(lang):  # the figures' words, like the template's
        pairs, why = disagreements(a, b)
        return {
            "lang": lang, "a": a, "b": b,
            "params": params_differing(a, b),
            "accuracy": accuracy(a, b),
            "curves": [curves_chart(m, a, b) for m in TRAINED
                       if m in a.history or m in b.history],
            "steps": steps_chart(a, b) if a.steps or b.steps else None,
            "pairs": pairs, "pairs_missing": why,
            "artifacts": artifacts(a, b),
        }


def render(context: Mapping) -> str:
    return environment(context["lang"]).get_template("compare.html.j2").render(**context)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("a", metavar="A", help=f"a git revision, a DVC experiment or {WORKSPACE}")
    ap.add_argument("b", metavar="B", help="the run to set beside it, the same kinds")
    ap.add_argument("--out", type=Path, default=Path(OUT), help="the page (default: %(default)s)")
    ap.add_argument("--params", type=Path, default=Path(PARAMS),
                    help="whose report.lang the page speaks (default: %(default)s)")


def main(args: argparse.Namespace) -> None:
    lang = page_language(load_yaml(args.params.read_text()) if args.params.exists() else {})
    runs = [load_run(name) for name in (args.a, args.b)]
    write_text(args.out, render(build(*runs, lang)))
    print(f"wrote {args.out}: {args.a} beside {args.b}")

