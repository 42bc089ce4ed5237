"""Imports run one way: the chapter's code and the models never import the pipeline.

Each module of the package sits in one layer, and imports only from its own layer or those
below it. A new module must be given a layer here; an import that runs upwards fails by name.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.harness import ROOT

PACKAGE = ROOT / "mnist_basics"
LAYERS = {  # lowest first
    # names, atomic files, torch's version differences
    "base": {"__init__", "artifacts", "compat", "methods"},
    # the archives and tensors, params.yaml, a picture of your own
    "data": {"data", "download", "params", "prepare"},
    # the chapter's losses, optimizer, loop and metrics, and each method's model
    "chapter": {"train", "models", "pixel_mean", "resnet", "sgd_example"},
    # the stage catalogue, the stage command line, the engines' files and bridge, the remotes
    "pipeline": {"cli", "pipeline", "engines", "bridge", "remote"},
    # the pages (their figures and shared toolkit, then each page), their strings, predict,
    # the README's tables, `python -m mnist_basics`
    "pages": {"i18n", "figures", "page", "report", "digits_report", "spread", "try_it",
              "predict", "readme", "__main__"},
}
LEVEL = {m: i for i, modules in enumerate(LAYERS.values()) for m in modules}


def imports(module: str) -> set[str]:
    """The package's modules that `module` imports, anywhere in it (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnist_basics"):
            if node.module == "mnist_basics":  # from mnist_basics import cli, PipelineError
                found |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
                found.add("__init__")
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names
                      if a.name.startswith("mnist_basics.")}
    return found - {module}


def test_every_module_has_a_layer():
    assert {p.stem for p in PACKAGE.glob("*.py")} == set(LEVEL)


@pytest.mark.parametrize("module", sorted(LEVEL))
def test_imports_run_one_way(module):
    upward = {m: LEVEL_NAME[LEVEL[m]] for m in imports(module) if LEVEL[m] > LEVEL[module]}
    assert upward == {}, f"{module} ({LEVEL_NAME[LEVEL[module]]}) imports from above"


LEVEL_NAME = list(LAYERS)


def test_the_chapter_imports_without_the_pipeline():
    """The loop and every model load, and nothing of the pipeline or the pages comes along."""
    above = [f"mnist_basics.{m}" for m in LEVEL if LEVEL[m] > LEVEL["train"]]
    code = ("import sys\n"
            + "".join(f"import mnist_basics.{m}\n" for m in sorted(LAYERS["chapter"]))
            + f"print(sorted(m for m in {above!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def test_no_module_imports_another_modules_private_names():
    """What pages share is public (figures.py, page.py), not borrowed from another page."""
    borrowed = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnist_basics"):
                borrowed += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
    assert borrowed == []


def test_no_module_is_over_500_lines():
    """A module a reader takes in whole; a longer one holds two things."""
    long = {p.name: n for p in PACKAGE.glob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
