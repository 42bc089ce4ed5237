"""Two engines, one definition: Snakemake and DVC see the same stages and share one state.

Every test that runs an engine runs it in a copy of the project (tests/harness.py), never in
the checkout.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path

import pytest
import yaml

from mnist_basics.params import PARAMS
from mnist_basics.pipeline import bridge
from mnist_basics.pipeline.definition import (
    BY_NAME,
    DATASETS,
    MNIST_STAGES,
    SPREAD,
    STAGES,
    STAGES_OF,
    WALL_CLOCK,
    dvcfile,
)
from mnist_basics.pipeline.engines import files, render_dvc_yaml
from mnist_basics.registry import METHODS, TRAINED
from tests.harness import (
    GPU_HERE,
    ROOT,
    SNAKEMAKE,
    clean_outputs,
    dvc_changed,
    make_project,
    module_files,
    package_imports,
    ran,
    set_params,
    sh,
    snakemake_plan,
)

# -- One definition ---------------------------------------------------------------------------


def test_committed_dvc_yaml_is_generated_from_the_definition():
    assert (ROOT / "dvc.yaml").read_text() == render_dvc_yaml()
    assert sh("python", "-m", "mnist_basics.pipeline.engines", "--check").returncode == 0
    # Every dvc.yaml and its Snakemake rule file, each as the definition writes it.
    assert {p.relative_to(ROOT).as_posix(): p.read_text() for p in files()} == {
        p.relative_to(ROOT).as_posix(): render() for p, render in files().items()}


def command_paths(cmd: str) -> list[str]:
    """The paths a stage's command passes: after each `--flag`, in each `--input NAME=PATH`."""
    words = cmd.split()
    return [value.partition("=")[2] if flag == "--input" else value
            for flag, value in zip(words, words[1:], strict=False)
            if flag.startswith("--") and flag not in ("--dataset", "--seed", "--set")]


@pytest.mark.parametrize("dvc_yaml", ["dvc.yaml", "mnist/dvc.yaml", "spread/dvc.yaml"])
def test_every_command_names_every_file_its_stage_reads_and_writes(dvc_yaml):
    """DVC's convention: the command passes each path, and deps, outs, metrics and plots list
    the same paths, so a reader sees every input and output as text, and no script needs the
    definition to find them. The one exception: a page reads the methods' wall-clock figures
    without depending on them, so that no experiment lists them as changed."""
    for name, d in yaml.safe_load((ROOT / dvc_yaml).read_text())["stages"].items():
        assert d["cmd"].split()[:2] == ["python", d["deps"][0]], name
        declared = [p for p in d["deps"] if not p.startswith(("stages/", "mnist_basics/"))]
        for kind in ("outs", "metrics", "plots"):
            declared += [next(iter(p)) if isinstance(p, dict) else p for p in d.get(kind, [])]
        side = [p for p in command_paths(d["cmd"]) if p not in declared]
        assert sorted(command_paths(d["cmd"])) == sorted(declared + side), name
        assert all(p in WALL_CLOCK for p in side), name
        assert bool(side) == ("report" in name and dvc_yaml != "spread/dvc.yaml"), name
        assert not any(p in WALL_CLOCK for p in d["deps"]), name
    # Another dataset's copy of a stage is the chapter's script, with its dataset named.
    mnist = yaml.safe_load((ROOT / "mnist/dvc.yaml").read_text())["stages"]
    assert all(" --dataset mnist " in d["cmd"] for d in mnist.values())


def test_no_stage_script_imports_the_definition():
    """Editing the definition reruns nothing: no stage depends on it, nor on the engines' code."""
    engines = {f"mnist_basics/pipeline/{m}.py" for m in ("definition", "engines", "bridge")}
    for s in [*STAGES, *MNIST_STAGES, *SPREAD]:
        assert not engines & set(s.deps), s.name


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """A copy of the project with the committed dvc.lock, for plans that run nothing."""
    return make_project(tmp_path_factory.mktemp("view") / "proj", lock=True)


def snakemake_view(cwd: Path, *targets: str) -> dict[str, dict]:
    """Every job of a forced dry run, as Snakemake prints it: input, output, shell command."""
    out = sh(SNAKEMAKE[0], *targets, *SNAKEMAKE[1:], "--forceall", "--dry-run",
             "--printshellcmds", cwd=cwd).stdout
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
            "resources": fields.get("resources", ""),
        }
    return jobs


def dvc_view(cwd: Path, dvc_yaml: str = "dvc.yaml") -> dict[str, dict]:
    """Every stage as DVC itself resolves one dvc.yaml."""
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        return {
            s.name: {
                "cmd": s.cmd,
                "deps": [d.def_path for d in s.deps if not str(d.def_path).endswith(".yaml")],
                "params": sorted(k for d in s.deps if hasattr(d, "params") for k in d.params),
                "outs": [o.def_path for o in s.outs],
            }
            for s in repo.index.stages if s.path_in_repo == dvc_yaml
        }


@pytest.mark.parametrize("dataset", DATASETS)
def test_both_engines_see_the_same_dag(copy, dataset):
    """Each dataset's stages, as DVC resolves its dvc.yaml and as Snakemake plans its target."""
    target = "all" if dataset == "mnist_sample" else dataset
    if dataset != "mnist_sample":  # shown to DVC as `make mnist-dvc` shows it
        sh("python", "-m", "mnist_basics", "dvcfiles", dataset, cwd=copy)
    snake, dvc = snakemake_view(copy, target), dvc_view(copy, dvcfile(dataset))
    stages = {s.name: s for s in STAGES_OF[dataset]}
    rules = {s.rule for s in stages.values()}
    # The full MNIST's page sets each figure beside the chapter's: those stages plan too.
    assert rules <= set(snake) and set(snake) - {target} - rules <= {s.rule for s in STAGES}
    assert set(dvc) == set(stages)
    for name, d in dvc.items():
        s = stages[name]
        j = snake[s.rule]
        assert j["shell"] == f"{d['cmd']} > logs/{s.rule}.log 2>&1", name  # Snakemake's log
        # With the committed dvc.lock every stage's params are as recorded: no params input.
        assert j["input"] == d["deps"], name
        assert j["output"] == d["outs"], name
        assert ("gpu=1" in j["resources"]) == (s.gpu and GPU_HERE), name
        assert d["params"] == sorted(s.params), name
    # The target asks for every output, so one run builds the whole DAG.
    assert set(snake[target]["input"]) == {o for d in dvc.values() for o in d["outs"]}


def test_the_default_target_builds_the_datasets_params_yaml_lists(tmp_path):
    """`datasets` is the one place that says which datasets a plain run builds."""
    proj = make_project(tmp_path / "proj", lock=True)
    assert "all" in snakemake_view(proj) and not any(
        j.startswith("mnist_") for j in snakemake_view(proj))
    set_params(proj, datasets=["mnist_sample", "mnist"])
    plan = snakemake_view(proj)
    assert {s.rule for s in [*STAGES, *MNIST_STAGES]} <= set(plan)
    assert set(plan["all"]["input"]) == {p for s in [*STAGES, *MNIST_STAGES]
                                          for p in s.all_outputs}
    made = sh("python", "-m", "mnist_basics", "dvcfiles", cwd=proj).stdout.split()
    assert made == ["dvc.yaml", "mnist/dvc.yaml"]  # what `make repro` hands to `dvc repro`


def test_the_gpu_token_is_held_only_where_a_gpu_is(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    assert bridge.gpu_token("auto", dev, {}) == 0
    assert bridge.gpu_token("cuda", dev, {}) == 1  # asked for: the stage says if there is none
    (dev / "nvidia0").touch()
    assert bridge.gpu_token("auto", dev, {}) == 1
    assert bridge.gpu_token("cpu", dev, {}) == 0
    assert bridge.gpu_token("auto", dev, {"CUDA_VISIBLE_DEVICES": ""}) == 0
    (dev / "nvidia0").unlink()
    (dev / "kfd").touch()  # ROCm's
    assert bridge.gpu_token("auto", dev, {}) == 1


@pytest.mark.slow
def test_without_a_gpu_the_small_models_train_side_by_side_and_resnet18_alone(
        finished_project, tmp_path):
    """The finished Snakemake run's log, job by job: which ran while another ran. With a GPU
    here, the training stages take turns on it instead."""
    project, _ = finished_project("snakemake", tmp_path / "proj")
    (log,) = (project / ".snakemake/log").glob("*.log")
    running, overlaps = set(), set()
    for start, rule in re.findall(r"^(?:local)?rule (\w+):$|^Finished jobid: \d+ \(Rule: (\w+)\)",
                                  log.read_text(), re.M):
        if start:
            overlaps |= {frozenset((start, other)) for other in running}
            running.add(start)
        else:
            running.discard(rule)
    pairs = {frozenset(p) for p in itertools.combinations(("linear", "mlp", "nn_linear"), 2)}
    assert (pairs & overlaps) == (set() if GPU_HERE else pairs)
    assert not any("resnet18" in pair for pair in overlaps)  # it holds every core


def test_a_stage_whose_params_differ_from_dvc_lock_reads_params_yaml_too(tmp_path):
    proj = make_project(tmp_path / "proj", lock=True, params={"linear": {"epochs": 7}})
    snake = snakemake_view(proj)
    with_params = {name for name, j in snake.items() if PARAMS in j["input"]}
    assert with_params == readers("linear") == {"linear", "nn_linear", "report"}


def readers(section: str) -> set[str]:
    """The stages that read a params section: they, and only they, rerun when it changes."""
    return {s.name for s in STAGES if section in s.params}


def test_params_changed_is_per_section():
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    both = [*STAGES, *MNIST_STAGES]
    locks = {d: {s.name: {"params": {PARAMS: bridge.params_of(s, committed)}}
                 for s in STAGES_OF[d]} for d in DATASETS}

    def changed(params):
        return [s.rule for s in both if bridge.params_changed(s, params, locks[s.dataset])]

    assert changed(committed) == []
    edited = {**committed, "mlp": {**committed["mlp"], "lr": 0.05}}
    assert changed(edited) == ["mlp", "report"]
    # A param that only one dataset's stages read reruns only those.
    mnist = committed["mnist"]
    edited = {**committed, "mnist": {**mnist, "mlp": {**mnist["mlp"], "lr": 0.3}}}
    assert changed(edited) == ["mnist_mlp", "mnist_report"]
    edited = {**committed, "train": {**committed["train"], "seed": 1}}  # shared by both
    assert changed(edited) == [s.rule for s in both if "train" in s.params]
    # Nothing recorded yet: every stage that reads params is out of date.
    assert [s.name for s in STAGES if bridge.params_changed(s, committed, {})] == [
        s.name for s in STAGES if s.params]


def test_snakemake_lint_passes(copy):
    r = sh("snakemake", "--lint", cwd=copy, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def registry_imports(stage) -> list[str]:
    """stages/spread.py imports its method's module by the registry's name (importlib): the
    modules of every method a spread job may run, which its params choose for the sweep."""
    if stage.script != "stages/spread.py":
        return []
    return [f"mnist_basics.{METHODS[m].module}" for m in TRAINED]


@pytest.mark.parametrize("stage", [*STAGES, *MNIST_STAGES, *SPREAD], ids=lambda s: s.address)
def test_code_deps_are_exactly_what_the_stage_imports(stage):
    """Editing a module reruns every stage that uses it, and no other (spread/dvc.yaml's
    stages too)."""
    s = stage
    seen = {f for m in registry_imports(s) for f in module_files(m)}
    todo = [ROOT / s.script, *(ROOT / f for f in seen)]
    while todo:
        for f in package_imports(todo.pop()):
            if f not in seen:
                seen.add(f)
                todo.append(ROOT / f)
    declared = {c for c in s.code if c.endswith(".py")}
    assert seen == declared


# -- Reading the workflow writes nothing -------------------------------------------------------

# Snakemake's own bookkeeping in its state folder: a log of each invocation, its lock folder,
# and the cache of file facts a dry run keeps for `--trust-io-cache`. Anything else is ours.
SNAKEMAKE_BOOKKEEPING = re.compile(r"^\.snakemake/(log|locks|iocache)(/|$)")


def tree(proj: Path) -> dict[str, str]:
    """Every file under proj but .git: relative path -> md5 (and a folder's presence)."""
    out = {}
    for p in sorted(proj.rglob("*")):
        rel = p.relative_to(proj).as_posix()
        if rel == ".git" or rel.startswith(".git/"):
            continue
        out[rel] = hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else "folder"
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(p for p in before.keys() | after.keys()
                  if before.get(p) != after.get(p) and not SNAKEMAKE_BOOKKEEPING.match(p))


@pytest.mark.slow
def test_dry_run_lint_and_report_leave_the_tree_as_it_was(finished_project, tmp_path):
    # After a run: logs, outputs, dvc.lock, everything a parse used to touch.
    project, _ = finished_project("snakemake", tmp_path / "proj")
    set_params(project, mlp={"lr": 0.05})  # and a stage out of date, so the plan is not empty
    for cmd in (("snakemake", "-n"), ("snakemake", "--lint"),
                ("snakemake", "--report", str(tmp_path / "report.html"))):
        before = tree(project)
        r = sh(*cmd, cwd=project, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert changed(before, tree(project)) == [], cmd
    assert (tmp_path / "report.html").stat().st_size > 100_000


# -- One state --------------------------------------------------------------------------------

def page_hashes(proj: Path) -> dict[str, str]:
    """The Reproducibility table of the report: file -> md5 as the page lists it."""
    html = (proj / "reports/index.html").read_text()
    table = html[html.index('<table id="hashes">'):]
    table = table[:table.index("</table>")]
    return dict(re.findall(r"<td><code>([^<]+)</code>.*?</td><td><code>([0-9a-f]{32})</code>",
                           table))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_snakemake_run_leaves_dvc_up_to_date_and_param_edits_rerun_only_dependents(
        finished_project, tmp_path, monkeypatch):
    project, archive = finished_project("snakemake", tmp_path / "proj")  # after a clean run
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(archive[0]))
    assert dvc_changed(project) == set()
    assert snakemake_plan(project) == set()

    set_params(project, mlp={"lr": 0.05})
    assert dvc_changed(project) == {"mlp", "report"}
    assert snakemake_plan(project) == {"mlp", "report"}
    r = sh(*SNAKEMAKE, cwd=project)
    assert ran(r.stdout + r.stderr) == {"mlp", "report"}
    assert dvc_changed(project) == set()
    assert snakemake_plan(project) == set()

    # The page lists what this run made, under Snakemake too: every file's hash as it is now.
    listed = page_hashes(project)
    report_inputs = BY_NAME["report"].reads.values()
    assert set(listed) == set(report_inputs)
    assert {p: md5(project / p) for p in listed} == listed
    lock = bridge.read_lock(project / "dvc.lock")
    assert lock["mlp"]["outs"][0]["md5"] == listed[lock["mlp"]["outs"][0]["path"]]

    # Code edited, then DVC reruns what uses it: Snakemake, which ran those stages last,
    # must now see DVC's outputs as up to date.
    with open(project / "mnist_basics/chapter/models.py", "a") as f:
        f.write("# an edit\n")
    users = {s.name for s in STAGES if "mnist_basics/chapter/models.py" in s.code}
    assert users == {"sgd_example", "linear", "mlp", "nn_linear"}
    assert dvc_changed(project) == users  # DVC lists the stages whose deps changed
    assert snakemake_plan(project) == users | {"report"}  # Snakemake, all it would run
    sh("dvc", "repro", cwd=project)
    assert snakemake_plan(project) == set()


@pytest.mark.slow
def test_dvc_repro_leaves_snakemake_nothing_to_do_and_param_edits_rerun_only_dependents(
        finished_project, tmp_path, monkeypatch):
    project, archive = finished_project("dvc", tmp_path / "proj")  # after a clean run
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(archive[0]))
    assert snakemake_plan(project) == set()

    set_params(project, linear={"epochs": 5})
    assert snakemake_plan(project) == readers("linear")
    out = sh("dvc", "repro", cwd=project).stdout
    assert set(re.findall(r"^Running stage '(\w+)'", out, re.M)) == readers("linear")
    assert snakemake_plan(project) == set()
    assert dvc_changed(project) == set()

    # And back to Snakemake after DVC made everything from scratch, stack included.
    clean_outputs(project)
    sh("dvc", "repro", cwd=project)
    assert snakemake_plan(project) == set()
    set_params(project, resnet18={"lr": 0.02})
    assert snakemake_plan(project) == {"resnet18", "report"}
    sh(*SNAKEMAKE, cwd=project)
    assert dvc_changed(project) == set()
