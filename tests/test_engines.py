"""Two engines, one definition: Snakemake and DVC see the same stages and share one state."""

from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from mnist_basics.pipeline import BY_NAME, STAGES, render_dvc_yaml
from tests.conftest import (
    OUTPUT_DIRS,
    ROOT,
    SNAKEMAKE,
    dvc_changed,
    set_params,
    sh,
    snakemake_plan,
)

# -- One definition ---------------------------------------------------------------------------


def test_committed_dvc_yaml_is_generated_from_the_definition():
    assert (ROOT / "dvc.yaml").read_text() == render_dvc_yaml()
    assert sh(sys.executable, "-m", "mnist_basics.pipeline", "--check").returncode == 0


def snakemake_view(cwd=ROOT) -> dict[str, dict]:
    """Every job of a forced dry run, as Snakemake prints it: input, output, shell command."""
    out = sh("snakemake", "--forceall", "--dry-run", "--printshellcmds", "--cores", "4",
             "--resources", "gpu=1", cwd=cwd).stdout
    jobs: dict[str, dict] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", out):
        m = re.match(r"(?:local)?rule (\w+):\n", block)
        if not m:
            continue
        fields = dict(re.findall(r"^    (input|output|log|threads|resources): (.*)$", block, re.M))
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        jobs[m.group(1)] = {
            "input": fields.get("input", "").split(", ") if fields.get("input") else [],
            "output": fields.get("output", "").split(", ") if fields.get("output") else [],
            "shell": shell.group(1) if shell else None,
            "log": fields.get("log"),
            "resources": fields.get("resources", ""),
        }
    return jobs


def dvc_view(cwd=ROOT) -> dict[str, dict]:
    """Every stage as DVC itself resolves dvc.yaml."""
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        return {
            s.name: {
                "cmd": s.cmd,
                "deps": [d.def_path for d in s.deps if not str(d.def_path).endswith(".yaml")],
                "params": sorted(k for d in s.deps if hasattr(d, "params") for k in d.params),
                "outs": [o.def_path for o in s.outs],
            }
            for s in repo.index.stages
        }


def test_both_engines_see_the_same_dag():
    snake, dvc = snakemake_view(), dvc_view()
    assert set(snake) - {"all"} == set(dvc) == {s.name for s in STAGES}
    for name, d in dvc.items():
        j = snake[name]
        assert j["shell"] == f"{d['cmd']} > logs/{name}.log 2>&1", name  # the log is Snakemake's
        params_stamp = [p for p in j["input"] if p.startswith(".snakemake/params/")]
        assert [p for p in j["input"] if p not in params_stamp] == d["deps"], name
        assert params_stamp == ([f".snakemake/params/{name}.yaml"] if d["params"] else []), name
        assert j["output"] == d["outs"], name
        assert ("gpu=1" in j["resources"]) == BY_NAME[name].gpu, name
        assert d["params"] == sorted(BY_NAME[name].params), name
    # The default target asks for every output, so one run builds the whole DAG.
    assert set(snake["all"]["input"]) == {o for d in dvc.values() for o in d["outs"]}


def test_params_stamps_hold_exactly_the_declared_sections():
    snakemake_view()
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    for s in STAGES:
        if s.params:
            stamp = yaml.safe_load((ROOT / f".snakemake/params/{s.name}.yaml").read_text())
            assert stamp == {k: committed[k] for k in s.params}


def test_snakemake_lint_passes():
    r = sh("snakemake", "--lint", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def package_imports(path: Path) -> set[str]:
    """The mnist_basics modules a file imports, anywhere in it (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mnist_basics")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnist_basics"):
            found.add(node.module)
            if node.module == "mnist_basics":  # from mnist_basics import params
                found |= {f"mnist_basics.{a.name}" for a in node.names
                          if (ROOT / "mnist_basics" / f"{a.name}.py").exists()}
    return found


def module_file(module: str) -> str:
    rel = module.replace(".", "/")
    return f"{rel}/__init__.py" if (ROOT / rel).is_dir() else f"{rel}.py"


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_code_deps_are_exactly_what_the_stage_imports(stage):
    """Editing a module reruns every stage that uses it, and no other."""
    s = BY_NAME[stage]
    seen, todo = set(), [ROOT / s.script]
    while todo:
        for mod in package_imports(todo.pop()):
            f = module_file(mod)
            for part in (module_file("mnist_basics"), f):  # importing a submodule runs __init__
                if part not in seen:
                    seen.add(part)
                    todo.append(ROOT / part)
    declared = {c for c in s.code if c.endswith(".py")}
    assert seen == declared


# -- One state --------------------------------------------------------------------------------

def snakemake(proj, *args):
    return sh(*SNAKEMAKE, *args, cwd=proj)


def clean_outputs(proj):
    for d in (*OUTPUT_DIRS, ".snakemake", "logs", "benchmarks"):
        shutil.rmtree(proj / d, ignore_errors=True)
    for f in ("reports/index.html", "reports/accuracy.csv"):
        (proj / f).unlink(missing_ok=True)


@pytest.mark.slow
def test_snakemake_run_leaves_dvc_up_to_date_and_param_edits_rerun_only_dependents(project):
    snakemake(project)
    assert dvc_changed(project) == set()
    assert snakemake_plan(project) == set()

    set_params(project, mlp={"lr": 0.05})
    assert dvc_changed(project) == {"mlp", "report"}
    assert snakemake_plan(project) == {"mlp", "report"}
    r = snakemake(project)
    log = r.stdout + r.stderr
    assert set(re.findall(r"^(?:local)?rule (\w+):$", log, re.M)) - {"all"} == {"mlp", "report"}
    assert dvc_changed(project) == set()
    assert snakemake_plan(project) == set()

    # Code edited, then DVC reruns what uses it: Snakemake, which ran those stages last,
    # must now see DVC's outputs as up to date.
    with open(project / "mnist_basics/models.py", "a") as f:
        f.write("# an edit\n")
    assert dvc_changed(project) == {"linear", "mlp"}  # DVC lists the stages whose deps changed
    assert snakemake_plan(project) == {"linear", "mlp", "report"}  # Snakemake, all it would run
    sh("dvc", "repro", cwd=project)
    assert snakemake_plan(project) == set()


@pytest.mark.slow
def test_dvc_repro_leaves_snakemake_nothing_to_do_and_param_edits_rerun_only_dependents(project):
    sh("dvc", "repro", cwd=project)
    assert snakemake_plan(project) == set()

    set_params(project, linear={"epochs": 5})
    assert snakemake_plan(project) == {"linear", "report"}
    out = sh("dvc", "repro", cwd=project).stdout
    assert set(re.findall(r"^Running stage '(\w+)'", out, re.M)) == {"linear", "report"}
    assert snakemake_plan(project) == set()
    assert dvc_changed(project) == set()

    # And back to Snakemake after DVC made everything from scratch.
    clean_outputs(project)
    sh("dvc", "repro", cwd=project)
    set_params(project, resnet18={"lr": 0.02})
    assert snakemake_plan(project) == {"resnet18", "report"}
    snakemake(project)
    assert dvc_changed(project) == set()
