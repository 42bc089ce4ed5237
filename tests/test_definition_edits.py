"""Edits to the definition rerun only what they change, under either engine.

No stage script imports mnist_basics/pipeline/definition.py: each command passes its paths, and a
stage's code deps are its script and the modules it imports. So a comment reruns nothing, a
new stage runs alone, and a moved output reruns its stage and the stages that read it. Each
engine starts from a copy of a run it finished (conftest.py), and the other engine agrees.
"""

from __future__ import annotations

import re

import pytest

from tests.harness import SNAKEMAKE, dvc_changed, ran, sh, snakemake_plan

# A stage a user adds: its script, and its entry at the end of the definition.
EXTRA_SCRIPT = """import argparse, pathlib
ap = argparse.ArgumentParser()
ap.add_argument("--tensors", type=pathlib.Path)
ap.add_argument("--out", type=pathlib.Path)
a = ap.parse_args()
a.out.write_text(f"{a.tensors.stat().st_size}\\n")
"""
EXTRA_STAGE = """
STAGES.append(Stage(name="extra", inputs={"tensors": TENSORS},
                    outputs={"out": "data/extra.txt"}, code=["mnist_basics/__init__.py"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["snakemake", "dvc"])
def test_edits_to_the_definition_rerun_only_what_they_change(engine, finished_project, tmp_path,
                                                            monkeypatch):
    """A comment reruns nothing, a new stage runs alone, a moved output reruns its stage and
    its dependants: under either engine, and the other agrees."""
    project, archive = finished_project(engine, tmp_path / "proj")  # `engine` ran it all
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(archive[0]))

    def run() -> set[str]:
        if engine == "snakemake":
            r = sh(*SNAKEMAKE, cwd=project)
            return ran(r.stdout + r.stderr)
        out = sh("dvc", "repro", cwd=project).stdout
        return set(re.findall(r"^Running stage '(\w+)'", out, re.M))

    def plans() -> tuple:
        return snakemake_plan(project), dvc_changed(project)

    def edit(old: str, new: str) -> None:
        definition = project / "mnist_basics/pipeline/definition.py"
        text = definition.read_text()
        assert old in text
        definition.write_text(text.replace(old, new))
        sh("python", "-m", "mnist_basics.pipeline.engines", cwd=project)  # make dvc.yaml

    assert plans() == (set(), set())
    edit('"""The pipeline\'s one definition', '# A comment.\n"""The pipeline\'s one definition')
    assert plans() == (set(), set())

    (project / "stages/extra.py").write_text(EXTRA_SCRIPT)
    edit("\n# -- The spread:", EXTRA_STAGE + "\n# -- The spread:")
    assert plans() == ({"extra"}, {"extra"})
    assert run() == {"extra"}
    assert plans() == (set(), set())

    edit('"steps": "metrics/sgd_example.csv"', '"steps": "metrics/sgd_example_steps.csv"')
    assert plans() == ({"sgd_example", "report"}, {"sgd_example", "report"})
    assert run() == {"sgd_example", "report"}
    assert plans() == (set(), set())
    assert (project / "metrics/sgd_example_steps.csv").is_file()
