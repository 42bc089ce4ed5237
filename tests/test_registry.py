"""One registry each for methods and datasets (mnist_basics/registry.py): every list of them
derives from it.

Each method the registry names has its code where the registry says. A method or a dataset
added to the registry, in a fresh interpreter before anything else imports it, reaches the
stage catalogue, both engines' files, the params sections, the stage command line, the pages'
rows, predict and the spread without another edit.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_basics.params import SECTIONS
from mnist_basics.pipeline.definition import BY_DATASET, DATASETS, SPREAD_BY_NAME
from mnist_basics.registry import METHODS, ROWS
from mnist_basics.report.page import BOOK, TITLES
from tests.harness import ROOT


@pytest.mark.parametrize("name", METHODS)
def test_each_method_has_its_code_where_the_registry_says(name):
    spec = METHODS[name]
    module = importlib.import_module(spec.import_name)
    assert callable(module.load_predictor)  # predict loads every method through it
    assert (ROOT / "stages" / f"{name}.py").is_file()
    for dataset in DATASETS:
        stage = BY_DATASET[dataset][name]
        assert f"mnist_basics/{spec.module.replace('.', '/')}.py" in stage.code
        assert stage.multicore == spec.multicore and stage.gpu == spec.trains
    assert {r.key for r in spec.rows} <= set(TITLES) and {r.key for r in spec.rows} <= set(BOOK)
    if spec.trains:
        assert callable(getattr(module, spec.trainer))  # what a spread job runs
        assert name in SECTIONS and name in SPREAD_BY_NAME
    else:
        assert name not in SECTIONS and name not in SPREAD_BY_NAME


def test_the_pages_rows_are_the_registrys():
    assert list(TITLES) == list(ROWS) == [r.key for m in METHODS.values() for r in m.rows]


def registered(tmp_path: Path, edits: dict[str, tuple[str, str]], report: str) -> dict:
    """A copy of the package with `edits` made (file -> (after this text, insert that)), and
    what `report`, run against the copy, prints as JSON: what the rest derived from them."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "mnist_basics", copy / "mnist_basics",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name, (anchor, insert) in edits.items():
        path = copy / "mnist_basics" / name
        text = path.read_text()
        assert text.count(anchor) == 1, anchor
        path.write_text(text.replace(anchor, anchor + insert))
    done = subprocess.run([sys.executable, "-c", "import json\n" + report],
                          capture_output=True, text=True, cwd=copy, check=False,
                          env={**os.environ, "PYTHONPATH": str(copy)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# The full MNIST's entry ends the list of datasets; another, Fashion-MNIST-shaped, after it.
LAST_DATASET = """                                        "2-core CPU")),),
           }),
"""
NEW_DATASET = """    Layout(name="fashion", top="fashion_png", splits=("training", "testing"),
           classes=tuple("0123456789"), label={str(d): d for d in range(10)},
           labels_file=None, env="FASHION_URL", archive="fashion_png.tgz"),
"""


def test_a_new_dataset_is_one_entry(tmp_path):
    got = registered(tmp_path, {"registry.py": (LAST_DATASET, NEW_DATASET)}, """
import argparse
from mnist_basics.params import SECTIONS
from mnist_basics.pipeline import cli, definition, engines
from mnist_basics.predict import predict
stages = definition.STAGES_OF["fashion"]
ap = argparse.ArgumentParser()
predict.add_arguments(ap)
stack = cli.parser("stack", None, datasets=True)
print(json.dumps({
    "sections": {n: SECTIONS[n].__name__ for n in SECTIONS if n.startswith("fashion.")},
    "stages": [s.name for s in stages],
    "dvcfiles": sorted({s.dvcfile for s in stages}),
    "cmd": definition.BY_DATASET["fashion"]["mlp"].cmd,
    "files": sorted(f.relative_to(definition.ROOT).as_posix()
                    for f, render in engines.files().items() if "fashion" in str(f) and render()),
    "stack": stack.parse_args(["--dataset", "fashion"]).dataset,
    "predict": ap.parse_args(["x.png", "--dataset", "fashion"]).dataset,
}))
""")
    assert got["sections"] == {"fashion.data": "Data", "fashion.linear": "DigitsLinear",
                               "fashion.mlp": "DigitsMlp", "fashion.resnet18": "Resnet18"}
    assert got["stages"] == list(BY_DATASET["mnist"])
    assert got["dvcfiles"] == ["fashion/dvc.yaml"]
    assert "--dataset fashion" in got["cmd"] and "--tensors data/fashion.safetensors" in got["cmd"]
    assert got["files"] == ["fashion/dvc.yaml", "rules/fashion.smk"]
    assert got["stack"] == got["predict"] == "fashion"


# resnet18's entry ends the list of methods: two more after it, one trained and one not, each
# with its code (here the code of methods already there), and the trained one's params model.
LAST_METHOD = """           rows=(Row("resnet18", "resnet18", 0.997056),)),
"""
NEW_METHODS = """    Method("knn", "methods.pixel_mean", trains=False,
           rows=(Row("knn", "knn", None),)),
    Method("wide", "chapter.models", trains=True, rows=(Row("wide", "wide", None),)),
"""
WIDE_PARAMS = ("""    "mlp": (Mlp, DigitsMlp),
""", """    "wide": (Mlp, DigitsMlp),
""")


def test_a_new_method_is_one_entry_plus_its_code(tmp_path):
    edits = {"registry.py": (LAST_METHOD, NEW_METHODS), "params.py": WIDE_PARAMS}
    got = registered(tmp_path, edits, """
from mnist_basics.pipeline import definition
from mnist_basics.predict import predict
from mnist_basics.report import page
chapter = definition.BY_NAME
new = ("knn", "wide")
print(json.dumps({
    "stages": list(chapter),
    "knn_code": chapter["knn"].code,
    "wide_params": chapter["wide"].params,
    "report_reads": sorted(k for k in chapter["report"].reads if k.startswith(new)),
    "mnist": [s for s in definition.BY_DATASET["mnist"] if s in new],
    "spread": [s.name for s in definition.SPREAD if s.name in new],
    "titles": [k for k in page.TITLES if k in new],
    "predict": [m for m in predict.METHODS if m in new],
}))
""")
    assert got["stages"].index("wide") < got["stages"].index("report")
    assert "mnist_basics/methods/pixel_mean.py" in got["knn_code"]
    assert got["wide_params"] == ["train", "wide"]
    assert {"knn.metrics", "wide.predictions", "wide.history"} <= set(got["report_reads"])
    assert got["mnist"] == got["titles"] == got["predict"] == ["knn", "wide"]
    assert got["spread"] == ["wide"]


def test_the_registry_imports_nothing_of_the_package():
    """Every stage imports it: it holds names, so editing code elsewhere reruns no stage."""
    text = (ROOT / "mnist_basics" / "registry.py").read_text()
    assert "import mnist_basics" not in text and "from mnist_basics" not in text
