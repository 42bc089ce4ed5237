"""The full MNIST's page: all ten digits through the chapter's methods, beside MNIST_SAMPLE.

The report stage of mnist/dvc.yaml reads what the ten-digit stages wrote (the tensors, and each
method's checkpoint, model card, predictions, metrics, history and timing) and the chapter's
own metrics, and writes
- `reports/mnist.html`: the ten mean digits, each method's accuracy beside its MNIST_SAMPLE
  figure and its target, per-digit accuracy, a 10×10 confusion matrix per method, the
  most-confused pairs with examples, why L1 does so much worse than RMSE here, and the
  training curves;
- `reports/mnist_accuracy.csv`: the accuracy table, one row per method (`accuracy_rows`).

Like the seed spread's page it is drawn with report.py's helpers (numpy arrays, matplotlib's
Agg canvas, no torch), in params.yaml's `report.lang`, and it holds no wall-clock figure but
each stage's seconds from its timing file. Unlike the chapter's page it needs every input:
a missing or foreign one is a one-line PipelineError naming the file and the stage to rerun,
raised before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_basics import PipelineError
from mnist_basics.artifacts import read_json
from mnist_basics.data.stack import SIZE
from mnist_basics.params import section
from mnist_basics.registry import DATASETS, METHOD_OF_ROW, METHODS, TRAINED, Layout, flags
from mnist_basics.registry import ROWS as ALL_ROWS
from mnist_basics.report.figures import (
    accuracy_chart,
    class_weights_chart,
    history_chart,
    means_figures,
    nearest_chart,
    pair_examples,
    samples_figure,
    steps_chart,
)
from mnist_basics.report.i18n import N_, language
from mnist_basics.report.i18n import gettext as _
from mnist_basics.report.page import (
    TITLES,
    Inputs,
    check_predictions,
    confusion,
    confusion_table,
    environment,
    key_params,
    page_language,
    read_arrays,
    read_counts,
    read_rows,
    wall_times,
)

if TYPE_CHECKING:
    import numpy as np

# The page of any dataset of more than two classes, the full MNIST's by default: its layout
# (mnist_basics/registry.py) gives the classes, the splits and the targets.
DATASET = "mnist"
DIGITS = DATASETS[DATASET].classes  # "0" ... "9", each labelled by its own value
# The accuracy table's rows (mnist_basics/registry.py): row -> (the method that wrote it, its
# keys' prefix in the metrics, its answers in the predictions file). The pixel mean answers
# twice: by L1 and by RMSE.
ROWS = {key: (METHOD_OF_ROW[key], row.prefix, row.pred) for key, row in ALL_ROWS.items()}
PAIRS_SHOWN = 5  # the most-confused (true, predicted) pairs of each method
EXAMPLES_SHOWN = 8  # digits shown per pair, the most confident first
SAMPLES_SHOWN = 12  # training digits per class in the data section
NEEDS = {  # what the page reads from each safetensors input (other tensors are ignored)
    "stack.tensors": {"train_x", "train_y", "valid_x", "valid_y"},
    "pixel_mean.checkpoint": {"means"},
    "linear.checkpoint": {"weights"},
    "pixel_mean.predictions": {"pred", "pred_rmse", "dist_l1", "dist_rmse"},
    **{f"{m}.predictions": {"pred", "probs"} for m in TRAINED},
}
HISTORY_COLUMNS = ("epoch", "train_loss", "valid_loss", "valid_accuracy")
STEPS_COLUMNS = ("step", "lr", "loss")
SECTIONS = {  # id -> heading, in the page's order (in English: the page translates them)
    "accuracy": N_("Accuracy on ten digits"),
    "data": N_("The data"),
    "pixel-similarity": N_("Pixel similarity: ten mean digits"),
    "per-digit": N_("Per-digit accuracy"),
    "confusion": N_("Confusion matrices"),
    "confused-pairs": N_("The most-confused pairs"),
    "training": N_("Training"),
    "stages": N_("Each stage's seconds"),
}


# -- Inputs ----------------------------------------------------------------------------------
READS = {  # `--input stage.flag=PATH`: every method's outputs, and the chapter's metrics
    "stack": ("tensors", "counts"),
    **{m: flags(m) for m in METHODS},
    **{f"sample_{m}": ("metrics",) for m in METHODS},
}


def read_inputs(args) -> Inputs:
    """The page's inputs, from its stage's `--input stage.flag=PATH`s. Each is named here by
    its key, `mlp.checkpoint`; `sample_mlp.metrics` are the chapter's MNIST_SAMPLE metrics."""
    return Inputs.from_args(args, READS)


def stage_of(key: str, dataset: str = DATASET) -> str:
    """The stage that writes an input (`mlp.metrics`), as both engines name it: `dvc repro
    mnist/dvc.yaml:mlp` or `snakemake mnist_mlp`; the chapter's own for MNIST_SAMPLE's metrics."""
    name = key.split(".")[0]
    if name.startswith("sample_"):
        name = name.removeprefix("sample_")
        return f"dvc repro {name}, or snakemake {name}"
    return f"dvc repro {dataset}/dvc.yaml:{name}, or snakemake {dataset}_{name}"


def _file(inputs: Inputs, key: str) -> Path:
    stage, flag = key.split(".")
    return Path(inputs.files[stage][flag])


def _path(inputs: Inputs, field: str) -> Path:
    path = _file(inputs, field)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run the stage that writes it first "
                            f"({stage_of(field, inputs.dataset)})")
    return path


def _refuse(inputs: Inputs, field: str, why: str) -> PipelineError:
    return PipelineError(f"{_file(inputs, field)}: {why}; "
                         f"rerun its stage ({stage_of(field, inputs.dataset)})")


def _json(inputs: Inputs, field: str, keys: Sequence[str] = ()) -> dict:
    data = read_json(_path(inputs, field))
    if not isinstance(data, dict):
        raise _refuse(inputs, field, "not a JSON object")
    missing = [k for k in keys if k not in data]
    if missing:
        raise _refuse(inputs, field, f"no {missing[0]!r}")
    return data


def _rows(inputs: Inputs, field: str, columns: Sequence[str]) -> list[dict]:
    rows = read_rows(_path(inputs, field))
    if not rows:
        raise _refuse(inputs, field, "no rows")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise _refuse(inputs, field, f"no column {missing[0]!r}")
    return rows


def _arrays(inputs: Inputs, field: str) -> dict[str, np.ndarray]:
    arrays = read_arrays(_path(inputs, field), set(), "")  # refuses a file that is no tensors
    missing = sorted(NEEDS[field] - set(arrays))
    if missing:
        raise _refuse(inputs, field, f"no tensor {missing[0]!r}")
    return arrays


def _metric_keys(prefix: str, classes: Sequence[str]) -> list[str]:
    return [f"{prefix}accuracy", *(f"{prefix}accuracy_{c}" for c in classes)]


@dataclass
class Digits:
    """Everything the page shows, read and checked."""

    layout: Layout
    counts: dict[str, dict[str, int]]
    tensors: dict[str, np.ndarray]
    means: np.ndarray  # [10, 28, 28], the pixel mean's ten ideal digits
    linear_weights: np.ndarray  # [784, 10]
    predictions: dict[str, dict[str, np.ndarray]]
    metrics: dict[str, dict]
    history: dict[str, list[dict]]
    timing: dict[str, dict]
    steps: list[dict]
    cards: dict[str, dict]
    sample: dict[str, dict]  # the chapter's metrics, per method


def load(inputs: Inputs) -> Digits:
    """Read every input, or fail naming the first that is missing or not what it should be."""
    import numpy as np

    layout = DATASETS[inputs.dataset]
    classes, n_classes = layout.classes, len(layout.classes)
    counts = read_counts(_path(inputs, "stack.counts"), layout,
                         f"rerun its stage ({stage_of('stack.counts', inputs.dataset)})")
    tensors = _arrays(inputs, "stack.tensors")
    y = tensors["valid_y"]
    n = len(y)
    for split, (xs, ys) in zip(layout.splits, [("train_x", "train_y"), ("valid_x", "valid_y")],
                               strict=True):
        got = np.bincount(tensors[ys], minlength=n_classes)
        if tensors[xs].shape[1:] != (SIZE, SIZE) or len(got) != n_classes or \
                [int(v) for v in got] != [counts[split][c] for c in classes]:
            raise _refuse(inputs, "stack.tensors", f"{ys} does not hold the {split} digits that "
                          f"{_file(inputs, 'stack.counts')} counts")
    means = _arrays(inputs, "pixel_mean.checkpoint")["means"]
    if means.shape != (n_classes, SIZE, SIZE):
        raise _refuse(inputs, "pixel_mean.checkpoint",
                      f"means has shape {list(means.shape)}, not [{n_classes}, 28, 28]")
    weights = _arrays(inputs, "linear.checkpoint")["weights"]
    if weights.shape != (SIZE * SIZE, n_classes):
        raise _refuse(inputs, "linear.checkpoint",
                      f"weights has shape {list(weights.shape)}, not [784, {n_classes}]")
    for m in ("mlp", "resnet18"):  # their weights draw nothing: only there, in their turn
        _path(inputs, f"{m}.checkpoint")
    cards, predictions, metrics, history, timing, sample = {}, {}, {}, {}, {}, {}
    for m in METHODS:
        cards[m] = _json(inputs, f"{m}.model_card", ["labels"])
        if cards[m]["labels"] != list(classes):
            raise _refuse(inputs, f"{m}.model_card", f"a model of the labels "
                          f"{cards[m]['labels']}, not of {inputs.dataset}'s {n_classes} classes")
        predictions[m] = p = _arrays(inputs, f"{m}.predictions")
        check_predictions(p, n, n_classes, _file(inputs, f"{m}.predictions"),
                          _file(inputs, "stack.tensors"),
                          f"rerun its stage ({stage_of(f'{m}.predictions', inputs.dataset)})")
        metrics[m] = _results(inputs, m, classes, trained=m in TRAINED)
        for prefix, key in zip(_prefixes(m), ("pred", "pred_rmse"), strict=False):
            # A metrics file of another run than the predictions would put two stories on
            # one page: they must agree (the metrics are rounded to 6 digits).
            if abs(float((p[key] == y).mean()) - metrics[m][f"{prefix}accuracy"]) > 5e-6:
                raise _refuse(inputs, f"{m}.metrics", f"{prefix}accuracy disagrees with "
                              f"{_file(inputs, f'{m}.predictions')}")
        history[m] = _rows(inputs, f"{m}.history", ["epoch", "valid_accuracy"]
                           if m == "pixel_mean" else HISTORY_COLUMNS)
        timing[m] = _json(inputs, f"{m}.timing", ["seconds"])
        sample[m] = _json(inputs, f"sample_{m}.metrics", [f"{p_}accuracy" for p_ in _prefixes(m)])
    steps = _rows(inputs, "resnet18.steps", STEPS_COLUMNS)
    return Digits(layout=layout, counts=counts, tensors=tensors, means=means,
                  linear_weights=weights, predictions=predictions, metrics=metrics,
                  history=history, timing=timing, steps=steps, cards=cards, sample=sample)


# -- The accuracy table ----------------------------------------------------------------------
def accuracy_rows(inputs: Inputs) -> list[dict[str, object]]:
    """mnist_accuracy.csv: one row per method, in English whatever the page's language: the
    accuracy on the ten digits and on each, MNIST_SAMPLE's figure, the target and whether it
    is met, and the first published figure to compare with. Reads only the metrics."""
    layout = DATASETS[inputs.dataset]
    metrics = {m: _results(inputs, m, layout.classes) for m in METHODS}
    sample = {m: _json(inputs, f"sample_{m}.metrics", [f"{p}accuracy" for p in _prefixes(m)])
              for m in METHODS}
    return _accuracy_rows(metrics, sample, layout)


def _results(inputs: Inputs, method: str, classes: Sequence[str], trained: bool = False) -> dict:
    """A method's metrics with each class's accuracy beside them (`accuracy_3`), from the two
    files its stage writes them to; the losses too when `trained`."""
    keys = [k for p in _prefixes(method) for k in _metric_keys(p, classes)]
    overall = [k for k in keys if k.endswith("accuracy")]
    losses = ["train_loss", "valid_loss", "epochs"] if trained else []
    return {**_json(inputs, f"{method}.metrics", [*overall, *losses]),
            **_json(inputs, f"{method}.classes", [k for k in keys if k not in overall])}


def _prefixes(method: str) -> tuple[str, ...]:
    """The metrics' prefixes of a method's answers: the pixel mean answers by L1 and by RMSE."""
    return tuple(row.prefix for row in METHODS[method].rows)


def _accuracy_rows(metrics: Mapping[str, Mapping], sample: Mapping[str, Mapping],
                   layout: Layout) -> list[dict]:
    rows = []
    for key, (method, prefix, _answers) in ROWS.items():
        m = metrics[method]
        acc = m[f"{prefix}accuracy"]
        target, exactly = layout.targets.get(key, (None, False))
        comparison = layout.comparisons.get(key, [(None, "")])[0]
        rows.append({
            "method": TITLES[key],
            "accuracy": acc,
            **{f"accuracy_{c}": m[f"{prefix}accuracy_{c}"] for c in layout.classes},
            "mnist_sample_accuracy": sample[method][f"{prefix}accuracy"],
            "target": target,
            "target_is": "exactly" if exactly else "at least",
            "target_met": meets(acc, key, layout),
            "comparison": comparison[0],
            "comparison_source": comparison[1],
        })
    return rows


def meets(accuracy: float, key: str, layout: Layout = DATASETS[DATASET]) -> bool | None:
    """Whether a row meets its target on this dataset (None: it has none)."""
    if key not in layout.targets:
        return None
    target, exactly = layout.targets[key]
    return round(accuracy, 4) == target if exactly else accuracy >= target


# -- What the page computes ------------------------------------------------------------------


def confused_pairs(matrix: np.ndarray, k: int = PAIRS_SHOWN) -> list[tuple[int, int, int]]:
    """The k most frequent mistakes as (true, predicted, count), the most first; ties in the
    order of the true digit, then the answer. Pairs that never happen are left out."""
    n = len(matrix)
    off = [(int(matrix[t, p]), t, p) for t in range(n) for p in range(n)
           if t != p and matrix[t, p] > 0]
    off.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [(t, p, c) for c, t, p in off[:k]]


def confidence(pred: Mapping[str, np.ndarray], key: str, answers: np.ndarray,
               y: np.ndarray) -> np.ndarray:
    """How sure each answer is, for ranking mistakes: a trained model's softmax probability of
    its answer; for the pixel mean, how much nearer the answer's mean is than the true digit's
    (a ranking, not a probability)."""
    import numpy as np

    rows = np.arange(len(y))
    if "dist_l1" not in pred:  # a trained model
        return pred["probs"][rows, answers]
    dist = pred["dist_rmse" if key == "pred_rmse" else "dist_l1"]
    return dist[rows, y] - dist[rows, answers]


def _title(key: str) -> str:
    return _(TITLES[key])


def method_confusions(d: Digits) -> list[dict]:
    """Per row of the accuracy table: its confusion matrix and most-confused pairs."""
    import numpy as np

    x, y = d.tensors["valid_x"], d.tensors["valid_y"]
    classes = d.layout.classes
    out = []
    for key, (method, _prefix, answers_key) in ROWS.items():
        pred = d.predictions[method]
        answers = pred[answers_key]
        matrix = confusion(answers, y, range(len(classes)))
        sure = confidence(pred, answers_key, answers, y)
        title = _title(key)
        pairs = []
        for t, p, count in confused_pairs(matrix):
            idx = np.flatnonzero((y == t) & (answers == p))
            idx = idx[np.argsort(-sure[idx], kind="stable")][:EXAMPLES_SHOWN]
            pairs.append({"truth": classes[t], "called": classes[p], "count": count,
                          "share": count / max(int(matrix[t].sum()), 1),
                          "examples": pair_examples(x, idx, classes[t], classes[p], title,
                                                              EXAMPLES_SHOWN)})
        out.append({"key": key, "title": title, "matrix": confusion_table(matrix, classes),
                    "wrong": int(len(y) - np.trace(matrix)), "total": len(y), "pairs": pairs})
    return out


def why_l1(d: Digits) -> dict:
    """The figures behind "why L1 does worse": the mean with the least ink, how many digits
    each distance sends to it, and per digit the average distance to its own mean and to it."""
    import numpy as np

    ink_of = d.means.sum(axis=(1, 2))  # the sum of a mean's pixels, 0 to 1 each
    light = int(np.argmin(ink_of))
    others = np.delete(ink_of, light)
    y = d.tensors["valid_y"]
    p = d.predictions["pixel_mean"]
    m = d.metrics["pixel_mean"]
    classes = d.layout.classes
    rows = []
    for digit in range(len(classes)):
        mine = y == digit
        rows.append({
            "digit": classes[digit], "n": int(mine.sum()), "ink": float(ink_of[digit]),
            "l1": m[f"accuracy_{digit}"], "rmse": m[f"rmse_accuracy_{digit}"],
            "l1_light": int((p["pred"][mine] == light).sum()),
            "rmse_light": int((p["pred_rmse"][mine] == light).sum()),
            "l1_own": _mean(p["dist_l1"][mine, digit]),
            "l1_to_light": _mean(p["dist_l1"][mine, light]),
            "rmse_own": _mean(p["dist_rmse"][mine, digit]),
            "rmse_to_light": _mean(p["dist_rmse"][mine, light]),
        })
    gap = sorted(rows, key=lambda r: (-(r["rmse"] - r["l1"]), r["digit"]))
    sample = d.sample["pixel_mean"]
    return {
        "light": classes[light], "light_ink": float(ink_of[light]),
        "lo": float(others.min()), "hi": float(others.max()),
        "n": len(y), "true_light": int((y == light).sum()),
        "l1_called": int((p["pred"] == light).sum()),
        "rmse_called": int((p["pred_rmse"] == light).sum()),
        "l1": m["accuracy"], "rmse": m["rmse_accuracy"],
        "sample_l1": sample["accuracy"], "sample_rmse": sample["rmse_accuracy"],
        "worst": [r for r in gap[:3] if r["rmse"] > r["l1"]],
        "rows": rows,
        # how many testing digits each mean is nearest to
        "called": {k: [int((p[key] == i).sum()) for i in range(len(classes))]
                   for k, key in (("l1", "pred"), ("rmse", "pred_rmse"))},
    }


def _mean(v: np.ndarray) -> float | None:
    return float(v.mean()) if len(v) else None


# -- Figures ---------------------------------------------------------------------------------


# -- The page --------------------------------------------------------------------------------
def _sections(params: Mapping[str, object]) -> dict[str, dict]:
    """Validated params sections (or plain dicts) as dicts."""
    return {name: s.model_dump() if hasattr(s, "model_dump") else dict(s)  # type: ignore[arg-type]
            for name, s in params.items()}


def _key_params(key: str, params: Mapping[str, dict]) -> str:
    text = key_params(key, params)
    if key == "mlp" and params["mlp"].get("schedule") == "cosine":
        text += ", " + _("cosine learning-rate schedule")
    return text


def accuracy_table(d: Digits, params: Mapping[str, dict]) -> list[dict]:
    """The page's table: accuracy_rows', translated, with the stage's training seconds."""
    out = []
    for key, row in zip(ROWS, _accuracy_rows(d.metrics, d.sample, d.layout), strict=True):
        t = d.timing[ROWS[key][0]]
        out.append({**row, "key": key, "title": _title(key),
                    "comparisons": [{"accuracy": a, "source": _(s)}
                                    for a, s in d.layout.comparisons.get(key, [])],
                    "train_seconds": t.get("train_seconds"), "params": _key_params(key, params)})
    return out


def training_section(d: Digits) -> list[dict]:
    out = []
    for m in TRAINED:
        # One epoch (resnet18's) is one point: the metrics line says it, the steps show it.
        charts = [] if len(d.history[m]) < 2 else [history_chart(
            m, d.history[m], None, loss_name="cross-entropy",
            target=d.layout.targets.get(m, (None,))[0])]
        if m == "linear":
            charts.append(class_weights_chart(d.linear_weights, d.layout.classes))
        if m == "resnet18":
            charts.append(steps_chart(d.steps))
        arch = d.cards[m].get("arch", {})
        out.append({"method": m, "metrics": d.metrics[m], "charts": charts,
                    "forward": arch.get("forward") if isinstance(arch, dict) else None})
    return out


def rerun(dataset: str) -> tuple[str, str]:
    return f"snakemake {dataset} --cores 4 --resources gpu=1", f"dvc repro {dataset}/dvc.yaml"


def context(d: Digits, params: Mapping[str, dict]) -> dict:
    """Everything the template shows, figures included, in the current language."""
    y = d.tensors["valid_y"]
    classes, dataset = d.layout.classes, d.layout.name
    table = accuracy_table(d, params)
    why = why_l1(d)
    per_digit = [{"digit": digit, "n": d.counts[d.layout.splits[1]][digit],
                  "accuracy": [d.metrics[ROWS[k][0]][f"{ROWS[k][1]}accuracy_{digit}"]
                               for k in ROWS]} for digit in classes]
    lowest = [min(r["accuracy"][i] for r in per_digit) for i in range(len(ROWS))]
    return {
        "lang": page_language(params),
        "sections": {k: _(heading) for k, heading in SECTIONS.items()},
        "n_valid": len(y),
        "n_train": len(d.tensors["train_y"]),
        "splits": d.layout.splits,
        "counts": d.counts,
        "digits": classes,
        "accuracy": table,
        "accuracy_chart": accuracy_chart(table),
        "samples": samples_figure(d.tensors["train_x"], d.tensors["train_y"], len(classes),
                                  SAMPLES_SHOWN),
        "means": means_figures(d.means, classes),
        "why": why,
        "nearest": nearest_chart(why["rows"], why, classes),
        "per_digit": per_digit,
        "lowest": lowest,
        "titles": [_title(k) for k in ROWS],
        "confusions": method_confusions(d),
        "training": training_section(d),
        "stages": wall_times(d.timing, METHODS),
        # under their names in params.yaml: the dataset's own sections, and the shared train
        "params": {section(k, dataset): params[k] for k in ("data", *TRAINED, "train")
                   if k in params},
        "rerun": rerun(dataset),
    }


def render_page(inputs: Inputs, params: Mapping[str, object]) -> str:
    """reports/mnist.html, in params.yaml's `report.lang`. `params` are the validated sections
    under their short names (`report`, `train`, and the full MNIST's `data`, `linear`, `mlp`,
    `resnet18`). Reads and checks every input first: nothing here writes."""
    d = load(inputs)
    p = _sections(params)
    lang = page_language(p)
    with language(lang):  # the figures' words and key_params, like the template's
        ctx = context(d, p)
    return environment(lang).get_template("digits.html.j2").render(**ctx)
