"""Imports run one way: the chapter's code and the models never import the pipeline.

Each module of the package sits in one layer, and imports only from its own layer or those
below it. A new module must be given a layer here; an import that runs upwards fails by name.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.harness import ROOT, package_imports

PACKAGE = ROOT / "mnist_basics"
# Each folder of the package is one layer, lowest first; the top-level modules are the base
# that every layer may use, and `python -m mnist_basics` sits above everything.
LAYERS = [
    "base",  # names, the registry, params.yaml's sections, atomic files, torch's differences
    "data",  # the verified archives and the stacked tensors
    "chapter",  # the chapter's losses, optimizer, loop and metrics, and its models
    "methods",  # the pixel mean and resnet18
    "pipeline",  # the stage catalogue, the stage command line, the engines' files, the remotes
    "predict",  # a picture of your own through the trained models
    "report",  # the figures, what the pages share, each page, the README's tables
    "entry",  # __main__.py
]
FILES = sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py"))


def layer(file: str) -> str:
    parts = file.split("/")[1:]
    if len(parts) == 1:
        return "entry" if parts[0] == "__main__.py" else "base"
    return parts[0]


def test_every_folder_is_a_layer():
    assert {layer(f) for f in FILES} == set(LAYERS)
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == \
        set(LAYERS) - {"base", "entry"}


@pytest.mark.parametrize("file", FILES)
def test_imports_run_one_way(file):
    """A module imports from its own layer or those below it."""
    upward = {f: layer(f) for f in package_imports(ROOT / file)
              if LAYERS.index(layer(f)) > LAYERS.index(layer(file))}
    assert upward == {}, f"{file} ({layer(file)}) imports from above"


def test_the_chapter_imports_without_the_pipeline():
    """The loop and every model load, and nothing of the pipeline or the pages comes along."""
    low = [f.removesuffix(".py").replace("/", ".") for f in FILES
           if layer(f) in ("chapter", "methods") and not f.endswith("__init__.py")]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in low)
            + "print(sorted(m for m in sys.modules if m.startswith('mnist_basics.') and "
              f"m.split('.')[1] in {LAYERS[LAYERS.index('methods') + 1:]!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def test_no_module_imports_another_modules_private_names():
    """What pages share is public (figures.py, page.py), not borrowed from another page."""
    borrowed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnist_basics"):
                borrowed += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
    assert borrowed == []


def test_no_module_is_over_500_lines():
    """A module a reader takes in whole; a longer one holds two things."""
    long = {p.name: n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
