"""What a DVC or Snakemake user reads: a status that speaks of what the project builds, tables
that fit a terminal, both revisions of every curve, the first experiment on a machine with no
git identity, and Snakemake's report timing each rule as the page does. (A fresh clone's
clean `dvc status` after `make run` is in test_fresh_clone.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mnist_basics.pipeline import scope
from mnist_basics.pipeline.definition import MNIST_STAGES, STAGES, history, steps
from mnist_basics.registry import METHODS
from tests.harness import (
    ROOT,
    SNAKEMAKE,
    engine_env,
    git_commit,
    make_project,
    set_params,
    sh,
)
from tests.test_report import Page
from tests.test_report_browser import offline_browser

UP_TO_DATE = "Data and pipelines are up to date."


# -- Which dvc.yaml files DVC sees (pipeline/scope.py) ----------------------------------------
def test_dvcignore_hides_the_dvc_yaml_of_each_dataset_left_out():
    text = "# mine\n.snakemake_timestamp\n"
    hidden = scope.render(text, ["mnist_sample"])
    assert hidden.startswith(text) and "\n/mnist/dvc.yaml\n" in hidden
    shown = scope.render(hidden, ["mnist_sample", "mnist"])
    assert shown.startswith(text) and "/mnist/dvc.yaml" not in shown
    assert scope.render(shown, ["mnist_sample"]) == hidden  # the block is rewritten in place
    assert scope.render(hidden, ["mnist_sample"]) == hidden
    # The committed file is as params.yaml's `datasets` has it.
    assert (ROOT / ".dvcignore").read_text() == scope.render(
        (ROOT / ".dvcignore").read_text(), scope.listed(ROOT / "params.yaml"))


@pytest.mark.slow
def test_dvc_sees_the_full_mnist_once_it_is_listed_or_built(tmp_path):
    proj = make_project(tmp_path / "proj", lock=True)

    def status() -> str:
        return sh("dvc", "status", cwd=proj).stdout

    assert "mnist/dvc.yaml:" not in status()
    r = sh("dvc", "repro", "mnist/dvc.yaml", cwd=proj, check=False)
    assert r.returncode != 0 and "mnist/dvc.yaml' is dvc-ignored" in r.stderr

    # `make mnist-dvc`: the dataset named is shown, whatever `datasets` lists.
    dvcfiles = sh("python", "-m", "mnist_basics", "dvcfiles", "mnist", cwd=proj).stdout.split()
    assert dvcfiles == ["mnist/dvc.yaml"]
    assert {f"mnist/dvc.yaml:{s.name}:" for s in MNIST_STAGES} <= set(status().splitlines())
    # `make repro` and `make run` show what `datasets` lists, and hide the rest again.
    assert sh("python", "-m", "mnist_basics", "dvcfiles", cwd=proj).stdout.split() == [
        "dvc.yaml"]
    assert "mnist/dvc.yaml:" not in status()
    set_params(proj, datasets=["mnist_sample", "mnist"])
    sh("python", "-m", "mnist_basics", "dvcfiles", cwd=proj)
    assert "mnist/dvc.yaml:download:" in status()
    r = sh("python", "-m", "mnist_basics", "dvcfiles", "fashion", cwd=proj, check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: dvcfiles: no dataset 'fashion'")


# -- The tables and plots after one experiment ------------------------------------------------
@pytest.fixture(scope="module")
def experiment(finished_experiment, tmp_path_factory) -> tuple[Path, dict]:
    """A finished tiny run, committed, then `dvc exp run -n faster -S mlp.lr=0.1`."""
    proj, env, output = finished_experiment(tmp_path_factory.mktemp("views") / "proj")
    assert re.findall(r"Running stage '(\w+)'", output) == ["mlp", "report"]
    return proj, env


def columns(table: dict) -> set[str]:
    """`dvc metrics show --json`'s keys, flattened as its table's columns."""
    out: set[str] = set()

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out.add(prefix)

    for files in table.values():
        for content in files["data"].values():
            walk("", content["data"])
    return out


@pytest.mark.slow
def test_metrics_are_one_small_table_and_a_diff_shows_only_what_changed(experiment):
    proj, env = experiment
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=proj, env=env).stdout)
    # The same few keys in every method's file: with the Path, at most 15 columns.
    assert columns(shown) == {"accuracy", "rmse_accuracy", "train_loss", "valid_loss",
                              "epochs"}
    (files,) = (rev["data"] for rev in shown.values())  # the workspace's
    assert sorted(files) == sorted(f"metrics/{m}.json" for m in METHODS)
    diff = json.loads(sh("dvc", "metrics", "diff", "HEAD", "faster", "--json", "--all",
                         cwd=proj, env=env).stdout)
    changed = {path for path, keys in diff.items()
               if any(v.get("diff") not in (0, None) for v in keys.values())}
    assert changed == {"metrics/mlp.json"}


EXPERIMENTS = re.compile(r"^experiments:.*\n\t(.+)$", re.M)  # the Makefile's recipe


@pytest.mark.slow
def test_exp_show_names_the_experiments_change_and_fits_a_terminal(experiment):
    proj, env = experiment
    header = sh("dvc", "exp", "show", "--only-changed", "--csv", cwd=proj, env=env
                ).stdout.splitlines()[0].split(",")
    own = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}
    changed = [c for c in header if c not in own]
    assert "mlp.lr" in changed and "metrics/mlp.json:valid_loss" in changed
    assert len(changed) <= 15, changed
    assert not any("timing" in c for c in changed)  # no wall-clock file is a dependency
    assert {c.split(":")[0] for c in changed if "/" in c} <= {
        p for s in STAGES if s.name == "mlp" for p in s.all_outputs}

    # `make experiments`, the README's way to compare them: readable in 120 columns.
    recipe = EXPERIMENTS.search((ROOT / "Makefile").read_text()).group(1).replace("$$", "$")
    out = sh("sh", "-c", recipe, cwd=proj, env={**env, "COLUMNS": "120"}).stdout
    lines = out.splitlines()
    assert "…" not in out and max(map(len, lines)) <= 120
    assert any("[faster]" in line and "0.1" in line for line in lines)
    assert "mlp.lr" in out and "valid_loss" in out
    assert "make experiments" in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_plots_diff_draws_both_revisions_of_every_curve(experiment, tmp_path):
    proj, env = experiment
    shown = json.loads(sh("dvc", "plots", "diff", "HEAD", "faster", "--json", cwd=proj,
                          env=env).stdout)["data"]
    for path in [*(history(m) for m in METHODS), steps()]:
        (plot,) = shown[path]
        assert plot["type"] == "vega" and plot["revisions"] == ["HEAD", "faster"], path
        spec = json.dumps(plot["content"])
        assert '"rev": "HEAD"' in spec and '"rev": "faster"' in spec, path
    # And as a page, as the README shows it.
    sh("dvc", "plots", "diff", "HEAD", "faster", "-o", str(tmp_path / "plots"), cwd=proj,
       env=env)
    assert (tmp_path / "plots/index.html").stat().st_size > 0


# -- The first experiment without a git identity ----------------------------------------------
README_GIT = re.compile(r"^(git config user\.(?:name|email) .+?)\s*(?:#.*)?$", re.M)


@pytest.mark.slow
def test_the_readme_says_what_to_set_before_the_first_experiment(finished_project, tmp_path):
    proj, archive = finished_project("snakemake", tmp_path / "proj")
    # As in a clone after `make run`: the run committed, then its page (and so dvc.lock) made
    # again, so the experiment starts from a workspace with changes, which DVC stashes.
    git_commit(proj, "the chapter's run")
    sh(*SNAKEMAKE, "--forcerun", "report", cwd=proj,
       env=engine_env(MNIST_SAMPLE_URL=str(archive[0])))
    assert sh("git", "status", "--porcelain", "--untracked-files=no", cwd=proj).stdout
    home = tmp_path / "home"
    home.mkdir()
    env = engine_env(MNIST_SAMPLE_URL=str(archive[0]), HOME=str(home), GIT_CONFIG_NOSYSTEM="1",
                     XDG_CONFIG_HOME=str(home))
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL"):
        env.pop(key, None)
    assert sh("git", "config", "user.name", cwd=proj, env=env, check=False).returncode == 1
    r = sh("dvc", "exp", "run", "-S", "report.lang=et", cwd=proj, env=env, check=False)
    assert r.returncode != 0 and "Git user name and email must be configured" in r.stderr

    commands = README_GIT.findall((ROOT / "README.md").read_text())
    assert [c.split()[2] for c in commands] == ["user.name", "user.email"]
    for command in commands:
        sh("sh", "-c", command, cwd=proj, env=env)
    sh("dvc", "exp", "run", "-S", "report.lang=et", cwd=proj, env=env)
    assert '<html lang="et"' in (proj / "reports/index.html").read_text()


# -- Snakemake's report ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_snakemakes_report_times_each_rule_as_the_page_does(finished_project, tmp_path):
    proj, _ = finished_project("snakemake", tmp_path / "proj")
    report = tmp_path / "report.html"
    sh("snakemake", "--report", str(report), cwd=proj)
    html = report.read_text()
    at = html.index("runtimes_spec = ") + len("runtimes_spec = ")
    runtimes = {v["rule"]: v["runtime"]
                for v in json.JSONDecoder().raw_decode(html, at)[0]["data"]["values"]}
    assert set(runtimes) == {s.rule for s in STAGES}
    # The page's seconds are each stage's whole process, as Snakemake times its job: the same
    # interval on two clocks, apart by the shell that starts the stage.
    page = Page((proj / "reports/index.html").read_text())
    shown = {row[0]: float(row[1]) for row in page.tables["wall-times"][1:]}
    for m in METHODS:
        assert abs(shown[m] - runtimes[m]) <= max(1.0, 0.25 * runtimes[m]), (m, shown, runtimes)

    with offline_browser(tmp_path, 1400, 1000) as context:
        page = context.new_page()
        page.goto(report.as_uri(), wait_until="load")
        page.get_by_text("Statistics").first.click()
        page.wait_for_selector(".vega-embed", timeout=30_000)
        charts = page.eval_on_selector_all(
            ".vega-embed", "els => els.map(e => e.getBoundingClientRect().height)")
        page.screenshot(path=str(tmp_path / "snakemake-statistics.png"), full_page=True)
    assert len(charts) == 2 and all(h > 100 for h in charts)  # runtime and end date, by rule
