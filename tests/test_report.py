"""The report stage: its page and accuracy table, rendered from a complete set of artifacts
written here in the formats the other stages use, then with parts of it missing."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

from mnist_basics import PipelineError
from mnist_basics.params import PARAMS, load
from mnist_basics.pipeline import definition as pipeline
from mnist_basics.report import chapter as report
from mnist_basics.report.chapter import (
    accuracy_rows,
    build,
    inputs,
    load_run,
    mistakes,
    parser,
    render,
)
from mnist_basics.report.figures import montage, whole_epochs
from mnist_basics.report.page import BOOK, Inputs, confusion, confusion_table, git_state
from tests.harness import (
    ROOT,
    make_tiny_archive,
    make_tiny_tensors,
    run_stage,
    write_params,
    write_results,
)

CHAPTER = pipeline.BY_NAME["report"].params  # the sections the page lists, every one

STAGE = pipeline.BY_NAME["report"]
PAYLOAD = "<script>alert(1)</script>"
# The report's inputs, by the stage that writes each: (stage, path), stage by stage in the
# pipeline's order, each stage's wall-clock figures (read, not a dependency) last.
WRITTEN_BY = sorted(((flag.partition(".")[0], path) for flag, path in STAGE.reads.items()),
                    key=lambda pair: [s.name for s in pipeline.STAGES].index(pair[0]))
assert {p for _, p in WRITTEN_BY} == {p for s in pipeline.STAGES if s.name != "report"
                                      for p in s.all_outputs}


def committed_params() -> dict:
    return yaml.safe_load((ROOT / PARAMS).read_text())


# -- A complete, plausible set of inputs -------------------------------------------------------
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _accuracies(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """As every stage computes them from its answers (labels: 1 for a 3, 0 for a 7)."""
    correct = pred == y
    return {"accuracy": round(float(correct.mean()), 6),
            "accuracy_3": round(float(correct[y == 1].mean()), 6),
            "accuracy_7": round(float(correct[y == 0].mean()), 6)}


def _history(epochs: int, final_acc: float) -> list[dict]:
    return [{"epoch": e, "train_loss": round(0.5 * 0.85 ** e, 6),
             "valid_loss": round(0.45 * 0.86 ** e, 6),
             "valid_accuracy": round(final_acc - 0.3 * 0.7 ** e + 0.3 * 0.7 ** epochs, 6)}
            for e in range(1, epochs + 1)]


def write_artifacts(root: Path, tensors: Path | None = None, seed: int = 0) -> Path:
    """Write every input of the report under `root`, at the pipeline's paths.

    The archive and tensors are the tiny synthetic ones (or a real tensors file, copied); the
    pixel mean is computed for real; the trained models' predictions are noisy guesses, with
    metrics that agree with them exactly.
    """
    import torch

    from mnist_basics.artifacts import load_tensors, save_tensors, write_csv, write_json

    def at(p: str) -> Path:
        return root / p

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        at(pipeline.ARCHIVE).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(make_tiny_archive(Path(tmp))[0], at(pipeline.ARCHIVE))
    if tensors is None:
        make_tiny_tensors(at(pipeline.TENSORS))
    else:
        save_tensors(at(pipeline.TENSORS), load_tensors(tensors))
    t = {k: v.numpy() for k, v in load_tensors(at(pipeline.TENSORS)).items()}
    write_json(at(pipeline.COUNTS), {s: {"3": int((t[f"{s}_y"] == 1).sum()),
                                         "7": int((t[f"{s}_y"] == 0).sum())}
                                     for s in ("train", "valid")})
    params = committed_params()
    params["data"]["url"] = "https://example.com/mnist_sample.tgz"
    at(PARAMS).write_text(yaml.safe_dump(params, sort_keys=False))
    y = t["valid_y"]
    n_train = len(t["train_y"])

    def timing(seconds: float, epochs: int, device: str = "cpu") -> dict:
        return {"seconds": round(seconds + 1.5, 3), "train_seconds": seconds,
                "images_per_second": round(n_train * epochs / seconds, 1),
                "epoch_seconds": [round(seconds / epochs, 3)] * epochs, "device": device,
                "threads": 2}

    # pixel_mean: the real thing, in numpy.
    train = t["train_x"].astype(np.float32) / 255
    mean3, mean7 = train[t["train_y"] == 1].mean(0), train[t["train_y"] == 0].mean(0)
    valid = t["valid_x"].astype(np.float32) / 255
    means = np.stack([mean7, mean3])  # by label: a 7 is 0, a 3 is 1
    dist_l1 = np.abs(valid[:, None] - means).mean((2, 3))  # [N, 2]
    dist_rmse = np.sqrt(((valid[:, None] - means) ** 2).mean((2, 3)))
    inverse = 1 / dist_l1
    pred, pred_rmse = dist_l1.argmin(1), dist_rmse.argmin(1)
    l1, rmse = _accuracies(pred, y), _accuracies(pred_rmse, y)
    tensors_of = {"pixel_mean": {"mean3": mean3, "mean7": mean7}}
    predictions = {"pixel_mean": {"pred": pred.astype(np.int64),
                                  "probs": inverse / inverse.sum(1, keepdims=True),
                                  "pred_rmse": pred_rmse.astype(np.int64),
                                  "dist_l1": dist_l1, "dist_rmse": dist_rmse}}
    metrics = {"pixel_mean": {**l1, **{f"rmse_{k}": v for k, v in rmse.items()}}}
    histories = {"pixel_mean": [{"epoch": 1, "train_loss": "", "valid_loss": "",
                                 "valid_accuracy": l1["accuracy"]}]}
    timings = {"pixel_mean": timing(0.02, 1)}

    # The trained models: the right answer, blurred by noise so that some are wrong.
    tensors_of["linear"] = {"weights": rng.normal(size=(784, 1)).astype(np.float32),
                            "bias": rng.normal(size=1).astype(np.float32)}
    tensors_of["mlp"] = {"0.weight": rng.normal(size=(30, 784)).astype(np.float32) * 0.05,
                         "0.bias": np.zeros(30, np.float32),
                         "2.weight": rng.normal(size=(1, 30)).astype(np.float32),
                         "2.bias": np.zeros(1, np.float32)}
    # A stand-in (the report draws nothing from resnet18's weights); no draw from rng, so
    # the noise below, and with it the mistakes shown, stay as they were.
    tensors_of["resnet18"] = {"fc.weight": np.zeros((2, 512), np.float32),
                              "fc.bias": np.zeros(2, np.float32)}
    for method, (noise, epochs, secs) in {"linear": (2.5, 20, 4.0), "mlp": (1.6, 40, 9.0),
                                          "resnet18": (0.8, 1, 30.0)}.items():
        z = (2.0 * y - 1) * 3 + rng.normal(scale=noise, size=len(y))
        p = _sigmoid(z).astype(np.float32)
        answers = (p > 0.5).astype(np.int64)
        predictions[method] = {"pred": answers, "probs": np.stack([1 - p, p], axis=1)}
        acc = _accuracies(answers, y)
        hist = _history(epochs, acc["accuracy"])
        metrics[method] = {**acc, "train_loss": hist[-1]["train_loss"],
                           "valid_loss": hist[-1]["valid_loss"], "epochs": epochs}
        histories[method] = hist
        timings[method] = timing(secs, epochs, "cuda" if method == "resnet18" else "cpu")

    for method in pipeline.METHODS:
        save_tensors(at(pipeline.checkpoint(method)),
                     {k: torch.from_numpy(v) for k, v in tensors_of[method].items()})
        section = {m: params[m] for m in ("train", method) if m in params}
        write_json(at(pipeline.model_card(method)),
                   {"model": method, "arch": {}, "input": {"shape": [28, 28]},
                    "params": section if method != "pixel_mean" else {}})
        save_tensors(at(pipeline.predictions(method)),
                     {k: torch.from_numpy(np.asarray(v, np.int64 if k.startswith("pred")
                                                     else np.float32))
                      for k, v in predictions[method].items()})
        write_results(at(pipeline.metrics(method)), at(pipeline.classes(method)), metrics[method])
        write_csv(at(pipeline.history(method)), histories[method])
        write_json(at(pipeline.timing(method)), timings[method])
    steps, peak = 49, 0.1
    warm = int(steps * 0.25)
    write_csv(at(pipeline.STEPS), [
        {"step": s, "lr": round(peak * (0.5 - 0.5 * math.cos(math.pi * s / warm)) if s < warm
                                else peak * (0.5 + 0.5 * math.cos(math.pi * (s - warm)
                                                                  / (steps - warm))), 8),
         "loss": round(0.7 * 0.93 ** s + 0.01, 6)} for s in range(steps)])
    for path, data in sgd_example_outputs().items():
        at(path).parent.mkdir(parents=True, exist_ok=True)
        at(path).write_bytes(data)
    # nn_linear: the two variants end where linear's noisy guess is, and agree exactly.
    lin = metrics["linear"]
    write_json(at(pipeline.metrics("nn_linear")), {
        **{v: {k: lin[k] for k in ("accuracy", "accuracy_3", "accuracy_7", "train_loss")}
           for v in ("basic_optim", "torch_sgd")}, "largest_parameter_difference": 0.0})
    write_csv(at(pipeline.history("nn_linear")),
              [{"epoch": r["epoch"], "basic_optim": r["valid_accuracy"],
                "torch_sgd": r["valid_accuracy"]} for r in histories["linear"]])
    assert all(at(p).is_file() for _, p in WRITTEN_BY)  # every input of the report
    return root


@functools.cache
def sgd_example_outputs() -> dict[str, bytes]:
    """What stages/sgd_example.py writes (it reads no data): run once, kept as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        params = write_params(Path(tmp) / "params.yaml")
        r = run_stage("sgd_example", under=Path(tmp), params=params)
        assert r.returncode == 0, r.stderr
        return {p: (Path(tmp) / p).read_bytes()
                for p in pipeline.BY_NAME["sgd_example"].all_outputs}


def report_args(root: Path | None) -> list[str]:
    """The report stage's flags, each pointing at its file under `root` (None: every path is
    its flag's default, relative to the working folder)."""
    if root is None:
        return STAGE.argv()[2:]
    return STAGE.argv(under=root, params=root / PARAMS)[2:]


def render_report(root: Path | None) -> tuple[str, list[dict]]:
    """What `stages/report.py` does, in this process: (the page, the CSV rows)."""
    args = parser(None).parse_args(report_args(root))
    run = load_run(inputs(args), load(args.params, *CHAPTER))
    return render(build(run, cwd=ROOT)), accuracy_rows(run)


@pytest.fixture
def artifacts(tmp_path) -> Path:
    return write_artifacts(tmp_path)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, str, list[dict]]:
    """One complete run, rendered once for the tests that only read it."""
    root = write_artifacts(tmp_path_factory.mktemp("run"))
    return root, *render_report(root)


# -- Reading the page back -------------------------------------------------------------------
class Page(HTMLParser):
    """The parts of a page the tests look at: ids, tables (cell texts), images, scripts."""

    def __init__(self, html: str):
        super().__init__()
        self.ids: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.imgs: list[dict] = []
        self.scripts = 0
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "table":
            self._table = a.get("id", f"table-{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def section_text(self, html: str, section: str) -> str:
        start = html.index(f'<section id="{section}">')
        return html[start: html.index("</section>", start)]


def _number(cell: str) -> float | None:
    return None if cell == "—" else float(cell.replace(",", ""))


# -- Tests -----------------------------------------------------------------------------------
def test_every_section_is_there_in_the_chapters_order(rendered):
    _, html, _ = rendered
    page = Page(html)
    positions = [page.ids.index(s) for s in report.SECTIONS]
    assert positions == sorted(positions)
    assert list(report.SECTIONS) == ["summary", "accuracy", "data", "pixel-similarity", "sgd",
                                   "loss-function", "linear", "mlp", "resnet18", "mistakes",
                                   "try-it", "reproducibility"]
    assert "Missing" not in html  # every input was there


def test_page_is_self_contained(rendered):
    _, html, _ = rendered
    page = Page(html)
    # Script only in the "Try it" panel, and inline (no src: nothing to fetch); none elsewhere.
    start = html.index('<section id="try-it"')
    try_it = html[start: html.index("</section>", start)]
    assert "<script" not in (html[:start] + html[start + len(try_it):]).lower()
    assert re.findall(r"<script\b[^>]*>", try_it, re.I) == ["<script>"] * page.scripts
    assert len(page.imgs) > 20  # charts, digits, and the mistakes of four methods
    for img in page.imgs:
        assert img["src"].startswith("data:image/png;base64,")
        assert img["alt"].strip()
        assert int(img["width"]) > 0 and int(img["height"]) > 0
    for fetch in ('src="http', "href=\"http", "url(", "@import", "<link"):
        assert fetch not in html


def test_accuracy_table_matches_the_metrics(rendered):
    artifacts, html, _ = rendered
    rows = Page(html).tables["accuracy-table"]
    header, body = rows[0], rows[1:]
    assert header[:6] == ["method", "accuracy", "on 3s", "on 7s", "book", "difference"]
    assert [r[0] for r in body] == ["pixel mean (L1)", "pixel mean (RMSE)", "linear", "mlp",
                                    "resnet18"]
    m = {k: {**json.loads((artifacts / pipeline.metrics(k)).read_text()),
             **json.loads((artifacts / pipeline.classes(k)).read_text())} for k in pipeline.METHODS}
    expected = {
        "pixel mean (L1)": (m["pixel_mean"]["accuracy"], m["pixel_mean"]["accuracy_3"],
                            m["pixel_mean"]["accuracy_7"], BOOK["pixel_mean"]),
        "pixel mean (RMSE)": (m["pixel_mean"]["rmse_accuracy"], m["pixel_mean"]["rmse_accuracy_3"],
                              m["pixel_mean"]["rmse_accuracy_7"], None),
        **{k: (m[k]["accuracy"], m[k]["accuracy_3"], m[k]["accuracy_7"], BOOK[k])
           for k in ("linear", "mlp", "resnet18")},
    }
    for row in body:
        acc, acc3, acc7, book = expected[row[0]]
        assert [_number(c) for c in row[1:4]] == [acc, acc3, acc7]
        assert _number(row[4]) == book
        if book is None:
            assert row[5] == "—"
        else:
            assert _number(row[5]) == pytest.approx(acc - book, abs=5e-5)
    timing = json.loads((artifacts / pipeline.timing("linear")).read_text())
    linear = next(r for r in body if r[0] == "linear")
    assert _number(linear[6]) == pytest.approx(timing["train_seconds"], abs=0.005)
    assert _number(linear[7]) == pytest.approx(timing["images_per_second"], abs=0.5)
    assert linear[8] == "lr 1.0, batch 256, 20 epochs"


def test_csv_matches_the_table(rendered, tmp_path):
    _, html, rows = rendered
    from mnist_basics.artifacts import write_csv

    write_csv(tmp_path / "accuracy.csv", rows)
    with open(tmp_path / "accuracy.csv", newline="") as f:
        written = list(csv.DictReader(f))
    table = Page(html).tables["accuracy-table"][1:]
    assert len(written) == len(table) == 5
    for line, cells in zip(written, table, strict=True):
        assert line["method"] == cells[0]
        for key, cell in zip(["accuracy", "accuracy_3", "accuracy_7", "book_accuracy"],
                             cells[1:5], strict=True):
            assert (float(line[key]) if line[key] else None) == _number(cell)
        if line["difference"]:
            assert float(line["difference"]) == pytest.approx(_number(cells[5]), abs=5e-5)
        assert line["params"] == cells[8]


def test_every_param_is_shown_and_html_in_a_param_is_text(artifacts):
    scripts = Page(render_report(artifacts)[0]).scripts  # the page's own (see the test above)
    params = yaml.safe_load((artifacts / PARAMS).read_text())
    params["data"]["url"] = f"https://example.com/{PAYLOAD}"
    (artifacts / PARAMS).write_text(yaml.safe_dump(params))
    html, _ = render_report(artifacts)
    page = Page(html)
    assert page.scripts == scripts  # the param added none
    assert PAYLOAD not in html
    assert "https://example.com/&lt;script&gt;alert(1)&lt;/script&gt;" in html
    shown = {row[0]: row[1] for row in page.tables["params-data"] + sum(
        (page.tables[f"params-{s}"] for s in CHAPTER if s != "data"), []) if len(row) == 2}
    for section in CHAPTER:
        for key, value in params[section].items():
            assert f"{section}.{key}" in shown
            assert shown[f"{section}.{key}"] == str(value)


def test_a_missing_model_leaves_a_note_and_the_rest_renders(artifacts):
    for path in ["models/linear.safetensors", "models/linear_valid.safetensors",
                 "metrics/linear.json", "metrics/linear_history.csv"]:
        (artifacts / path).unlink()
    html, rows = render_report(artifacts)
    page = Page(html)
    linear = page.section_text(html, "linear")
    assert "Missing" in linear and "metrics/linear.json" in linear
    assert "dvc repro linear" in linear
    assert "<img" not in linear
    assert "<img" in page.section_text(html, "mlp")  # the others are unaffected
    row = next(r for r in page.tables["accuracy-table"] if r[0] == "linear")
    assert row[1:4] == ["—", "—", "—"]
    assert next(r for r in rows if r["method"] == "linear")["accuracy"] is None
    assert "models/linear_valid.safetensors" in page.section_text(html, "mistakes")


def test_renders_with_only_the_params(tmp_path):
    """Before any stage has run: every section says what is missing, nothing crashes."""
    (tmp_path / PARAMS).write_text(yaml.safe_dump(committed_params()))
    html, rows = render_report(tmp_path)
    page = Page(html)
    assert all(s in page.ids for s in report.SECTIONS)
    assert not page.imgs
    for section in ("data", "pixel-similarity", "linear", "mlp", "resnet18", "mistakes"):
        assert "Missing" in page.section_text(html, section), section
    # Every input is listed in the hashes table, none of them there yet.
    assert [r[2:] for r in page.tables["hashes"][1:]] == [["missing", "—"]] * len(WRITTEN_BY)
    assert all(r["accuracy"] is None for r in rows)


def test_sample_three_and_the_rerun_commands(rendered):
    artifacts, html, _ = rendered
    page = Page(html)
    t = load_file(artifacts / pipeline.TENSORS)
    a_3 = t["train_x"][t["train_y"] == 1][1].astype(np.float32) / 255
    mean3 = t["train_x"][t["train_y"] == 1].astype(np.float32).mean(0) / 255
    table = page.tables["sample-distances"]
    assert table[1][:2] == ["L1", "mean3"]
    assert float(table[1][2]) == pytest.approx(float(np.abs(a_3 - mean3).mean()), abs=5e-5)
    assert [r[3] for r in table[1:]] == ["0.1114", "0.1586", "0.2021", "0.3021"]
    repro = page.section_text(html, "reproducibility")
    for cmd in ("snakemake --cores 4 --resources gpu=1", "dvc repro", "dvc exp run -S mlp.lr=0.05"):
        assert cmd in repro


def test_hashes_list_every_input_with_the_md5_of_its_bytes(artifacts, monkeypatch):
    """Run from the project folder, every path the default one (as both engines run it)."""
    monkeypatch.chdir(artifacts)
    html, _ = render_report(None)
    rows = Page(html).tables["hashes"]
    assert rows[0] == ["stage", "file", "md5", "bytes"]
    expected = []
    for stage, path in WRITTEN_BY:
        data = (artifacts / path).read_bytes()
        shown = f"{path} (wall-clock)" if path in pipeline.WALL_CLOCK else path
        expected.append([stage, shown, hashlib.md5(data).hexdigest(), f"{len(data):,}"])
    assert rows[1:] == expected
    # The seconds are in the timing files only: each is marked, and nothing else is.
    marked = {r[1].removesuffix(" (wall-clock)") for r in rows[1:] if r[1].endswith(")")}
    assert marked == {pipeline.timing(m) for m in pipeline.METHODS}


def test_hashes_follow_the_files(rendered, tmp_path):
    """A changed file shows its new md5: the table is made from the files, not a record."""
    artifacts, html, _ = rendered

    def md5s(page: str, root: Path) -> dict[str, str]:
        return {str(Path(r[1].removesuffix(" (wall-clock)")).relative_to(root)): r[2]
                for r in Page(page).tables["hashes"][1:]}

    before = md5s(html, artifacts)
    assert set(before) == {p for _, p in WRITTEN_BY}
    copy = shutil.copytree(artifacts, tmp_path / "changed")
    metrics = json.loads((copy / pipeline.metrics("mlp")).read_text())
    (copy / pipeline.metrics("mlp")).write_text(json.dumps({**metrics, "epochs": 41}))
    after = md5s(render_report(copy)[0], copy)
    assert {p for p in before if after[p] != before[p]} == {pipeline.metrics("mlp")}
    assert after[pipeline.metrics("mlp")] == hashlib.md5(
        (copy / pipeline.metrics("mlp")).read_bytes()).hexdigest()


# The files that hold a run's seconds: as the page learns them from its command.
WALL = {pipeline.timing(m) for m in pipeline.METHODS} | {pipeline.REPORT}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout


def _lock(timing_md5: str, checkpoint_md5: str) -> str:
    """A dvc.lock in which the mlp timing file is an output of mlp and an input of report."""
    timing = {"path": pipeline.timing("mlp"), "hash": "md5", "md5": timing_md5}
    return yaml.safe_dump({"schema": "2.0", "stages": {
        "mlp": {"cmd": "python stages/mlp.py", "outs": [
            {"path": pipeline.checkpoint("mlp"), "hash": "md5", "md5": checkpoint_md5},
            timing]},
        "report": {"cmd": "python stages/report.py", "deps": [timing], "outs": [
            {"path": pipeline.REPORT, "hash": "md5", "md5": timing_md5[::-1]}]}}})


def _summary(html: str) -> str:
    """The page's "uncommitted changes" cell, as text."""
    start = html.index('id="git-dirty">') + len('id="git-dirty">')
    cell = html[start: html.index("</td>", start)]
    return " ".join(re.sub(r"<[^>]+>", " ", cell).split()).replace(" ,", ",").replace(
        " )", ")").replace("( ", "(")


def test_git_state_tells_edits_from_wall_clock_figures(artifacts, tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never the checkout's git
    monkeypatch.chdir(artifacts)  # the page's paths relative, as its command passes them
    repo = tmp_path / "repo"
    repo.mkdir()
    assert git_state(repo, WALL) == {"commit": "unknown", "dirty": "unknown", "edited": [],
                               "wall_clock": []}
    _git(repo, "init", "-q")
    (repo / "params.yaml").write_text("mlp:\n  lr: 0.2\n")
    (repo / "dvc.lock").write_text(_lock("a" * 32, "b" * 32))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "run")
    commit = _git(repo, "rev-parse", "HEAD").strip()
    assert git_state(repo, WALL) == {"commit": commit, "dirty": "no", "edited": [],
                                     "wall_clock": []}

    # A rerun with the same params and code: only the wall-clock files' hashes moved.
    (repo / "dvc.lock").write_text(_lock("c" * 32, "b" * 32))
    assert git_state(repo, WALL) == {"commit": commit, "dirty": "no", "edited": [],
                               "wall_clock": ["dvc.lock"]}
    assert _summary(render(build(load_run(*_inputs(Path("."))), cwd=repo))) == (
        "no Only dvc.lock differs, and only in this run's wall-clock figures.")

    (repo / "params.yaml").write_text("mlp:\n  lr: 0.1\n")  # an edit
    assert git_state(repo, WALL) == {"commit": commit, "dirty": "yes", "edited": ["params.yaml"],
                               "wall_clock": ["dvc.lock"]}
    assert _summary(render(build(load_run(*_inputs(Path("."))), cwd=repo))) == (
        "yes: 1 tracked file differs from the commit (params.yaml) Besides, dvc.lock differs, "
        "and only in this run's wall-clock figures.")

    (repo / "dvc.lock").write_text(_lock("c" * 32, "d" * 32))  # a result changed too
    assert git_state(repo, WALL) == {"commit": commit, "dirty": "yes",
                               "edited": ["dvc.lock", "params.yaml"], "wall_clock": []}


def _inputs(root: Path) -> tuple[Inputs, dict]:
    args = parser(None).parse_args(report_args(root))
    return inputs(args), load(args.params, *CHAPTER)


def test_epochs_get_one_tick_each_up_to_ten():
    """With one epoch, matplotlib's integer locator alone would label 0.8, 0.9, 1.0, ..."""
    from matplotlib.figure import Figure as MplFigure

    for epochs in (1, 3, 10, 40):
        ax = MplFigure().subplots()
        ax.plot(range(1, epochs + 1), [0.5] * epochs)
        whole_epochs(epochs, ax)
        ticks = [t for t in ax.get_xticks() if 0.5 <= t <= epochs + 0.5]
        assert ax.get_xlim() == (0.5, epochs + 0.5)
        if epochs <= 10:
            assert ticks == list(range(1, epochs + 1)), epochs
        else:
            assert all(t == int(t) for t in ticks) and 2 <= len(ticks) < epochs


def test_confusion_and_mistakes_on_a_hand_made_case():
    y = np.array([1, 1, 1, 0, 0, 0], np.uint8)  # three 3s, three 7s
    prob3 = np.array([0.9, 0.2, 0.45, 0.1, 0.7, 0.95], np.float32)
    answers = np.where(prob3 > 0.5, 1, 0)  # a 3 (label 1) when prob3 > 0.5
    matrix = confusion(answers, y, [1, 0])  # rows and columns: 3, then 7
    assert matrix.tolist() == [[1, 2], [2, 1]]
    table = confusion_table(matrix, ["3", "7"])
    assert [[c["count"] for c in r["cells"]] for r in table["rows"]] == [[1, 2], [2, 1]]
    assert (table["answered"], table["n"]) == ([3, 3], 6)
    x = np.zeros((6, 28, 28), np.uint8)
    got = mistakes({"pred": answers, "probs": np.stack([1 - prob3, prob3], axis=1)}, y, x,
                   "linear")
    assert got["count"] == 4 and got["total"] == 6
    # Most confident first: the 7 at 0.95, the 3 at 0.2 (0.8 for a 7), the 7 at 0.7, ...
    assert [f.caption for f in got["shown"]] == [
        "a 7, called 3 (0.95)", "a 3, called 7 (0.80)", "a 7, called 3 (0.70)",
        "a 3, called 7 (0.55)"]


def test_montage_lays_tiles_out_in_rows():
    tiles = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 2, 3), np.float32)
    grid = montage(tiles, cols=2, gap=1, fill=-1)  # [3*(2+1)-1, 2*(3+1)-1]
    assert grid.shape == (8, 7)
    assert grid[0, 0] == 0 and grid[0, 4] == 1 and grid[3, 0] == 2 and grid[6, 0] == 4
    assert grid[6, 4] == -1 and grid[2, 0] == -1  # the empty slot and the gaps


@pytest.mark.parametrize("path, tensors, message", [
    (pipeline.predictions("mlp"), {"pred": (5,), "probs": (5, 2)},
     r"pred has shape \[5\], but .* has 48 validation digits: expected \[48\]; rerun the mlp "
     "stage"),
    (pipeline.predictions("linear"), {"pred": (48,), "probs": (48, 2)},
     "pred holds float32 answers, not labels 0 to 1; rerun the linear stage"),
    (pipeline.checkpoint("linear"), {"bias": (1,)}, "no tensor 'weights'; rerun the linear stage"),
    (pipeline.predictions("pixel_mean"), {"pred": (48,), "probs": (48, 2)},
     "no tensor 'dist_l1'; rerun the pixel_mean stage"),
])
def test_a_stale_or_foreign_input_is_refused_in_one_line(artifacts, path, tensors, message):
    import torch

    from mnist_basics.artifacts import save_tensors

    save_tensors(artifacts / path, {k: torch.zeros(*shape) for k, shape in tensors.items()})
    with pytest.raises(PipelineError, match=message):
        render_report(artifacts)


def test_counts_of_another_shape_are_refused(artifacts):
    (artifacts / pipeline.COUNTS).write_text('{"train": 12396, "valid": 2038}')
    with pytest.raises(PipelineError, match="counts.json: expected images per split and class"):
        render_report(artifacts)


def test_stage_script_help():
    done = subprocess.run([*STAGE.argv(), "--help"], cwd=ROOT, capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for flag in ("--out", "--accuracy-csv", "--params", "--input STAGE.FLAG=PATH"):
        assert flag in done.stdout
    assert "--dvc-lock" not in done.stdout  # the hashes come from the files themselves


def test_stage_script_writes_the_page_and_the_csv(artifacts):
    done = run_stage("report", under=artifacts, params=artifacts / PARAMS)
    assert done.returncode == 0, done.stderr
    page = (artifacts / pipeline.REPORT).read_text()
    assert "<table" in page and "accuracy-table" in page
    lines = (artifacts / pipeline.ACCURACY_CSV).read_text().splitlines()
    # Results only: the seconds are on the page, from the timing files.
    assert lines[0] == "method,accuracy,accuracy_3,accuracy_7,book_accuracy,difference,params"
    assert len(lines) == 6
    assert not list(artifacts.glob("reports/.*"))  # no temporary file left behind


def test_stage_script_reports_bad_params_in_one_line(artifacts):
    params = yaml.safe_load((artifacts / PARAMS).read_text())
    params["mlp"]["lr"] = -1.0
    (artifacts / PARAMS).write_text(yaml.safe_dump(params))
    done = run_stage("report", under=artifacts, params=artifacts / PARAMS)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {artifacts / PARAMS}: mlp.lr: must be greater than 0 (got -1.0)"]
    assert not (artifacts / pipeline.REPORT).exists()
