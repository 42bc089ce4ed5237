"""bench/run.py: its parsing and summaries, and one whole --quick run on a tiny archive.

Timings are recorded, never asserted: only what the benchmark reports about the runs is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys

import pytest

from mnist_basics.pipeline.definition import METHODS, STAGES
from tests.harness import GENERATED, OUTPUT_DIRS, ROOT, engine_env

_spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench/run.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_import_seconds_sums_only_the_top_level_entries():
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        100 |     torch._C\n"
        "import time:      2000 |    1500000 |   torch\n"
        "import time:      3000 |    1800000 | mnist_basics.chapter.models\n"
        "12:00:00 mnist_basics: epoch 1/1: ...\n"
        "import time:        29 |     450000 | torch._inductor.config\n"
    )
    assert bench.import_seconds(stderr) == pytest.approx(2.25)


def test_which_stages_ran_is_read_from_each_engines_log():
    snakemake_log = "rule mlp:\n    input: x\nlocalrule all:\nrule report:\n"
    assert bench.snakemake_ran(snakemake_log) == ["mlp", "report"]
    dvc_log = ("'download' didn't change, skipping\nRunning stage 'mlp':\n> python stages/mlp.py\n"
               "Running stage 'report':\n")
    assert bench.dvc_ran(dvc_log) == ["mlp", "report"]


def test_median_is_taken_figure_by_figure():
    runs = [{"a": 1.0, "b": {"c": 5, "ran": ["mlp"]}, "ok": True},
            {"a": 3.0, "b": {"c": 1, "ran": ["mlp"]}, "ok": True},
            {"a": 2.0, "b": {"c": 3, "ran": ["mlp"]}, "ok": True}]
    assert bench.median(runs) == {"a": 2.0, "b": {"c": 3, "ran": ["mlp"]}, "ok": True}


def test_targets_are_judged_against_their_limits():
    figures = {"snakemake": {"clean_s": 41.0, "noop_s": 1.0, "incremental_s": 12.0},
               "dvc": {"noop_s": 1.6, "incremental_s": 9.0},
               "stages": {"resnet18": {"train_seconds": 19.0}}, "peak_rss_gib": 1.2}
    met = {name: v["met"] for name, v in bench.verdicts(figures).items()}
    assert met == {
        "no-op run, snakemake": True,
        "no-op run, dvc": False,
        "incremental run after an mlp.lr edit, snakemake": True,
        "incremental run after an mlp.lr edit, dvc": True,
        "peak RSS of any stage": True,
    }


def test_side_by_side_compares_medians_and_keeps_the_ranges():
    def rnd(ours, fastai):
        return {"ours": ours, "fastai": fastai, "fastai_accuracy": 0.99}

    each = {"chapter": [dict(rnd(30.0, 100.0), fastai_parts={"mlp": 5.0}),
                        dict(rnd(50.0, 90.0), fastai_parts={"mlp": 7.0}),
                        dict(rnd(40.0, 60.0), fastai_parts={"mlp": 6.0})],
            "resnet18": [rnd(24.0, 70.0), rnd(26.0, 72.0), rnd(25.0, 80.0)]}
    side = bench.side_by_side.summary(each)
    assert side["chapter"]["ours_s"] == 40.0 and side["chapter"]["fastai_s"] == 90.0
    assert side["chapter"]["ours_range"] == [30.0, 50.0]
    assert side["chapter"]["fastai_range"] == [60.0, 100.0]
    assert side["chapter"]["ratio"] == pytest.approx(40 / 90, abs=1e-3)
    assert side["chapter"]["fastai_parts"] == {"mlp": 6.0} and side["chapter"]["rounds"] == 3
    assert side["resnet18"]["ratio"] == pytest.approx(25 / 72, abs=1e-3)
    verdicts = bench.side_by_side.verdicts(side)
    # The chapter at 0.44x (limit 0.6) is met, resnet18 at 0.347x (limit 0.35) too;
    # the full MNIST was not measured, so it is not judged.
    assert {name: v["met"] for name, v in verdicts.items()} == {
        "the chapter: clean snakemake run / the notebook with fastai": True,
        "resnet18: the stage / fastai's fit_one_cycle(1, 0.1)": True,
    }
    each["resnet18"][1]["ours"] = 26.0
    each["resnet18"][2]["ours"] = 26.0  # median 26 / 72 = 0.361
    assert not bench.side_by_side.verdicts(bench.side_by_side.summary(each))[
        "resnet18: the stage / fastai's fit_one_cycle(1, 0.1)"]["met"]
    table = "\n".join(bench.side_by_side.table(side))
    assert "40.0 ( 30.0- 50.0)" in table and "0.44" in table


def checkout_state() -> dict[str, str]:
    """Every output file in this checkout: path -> sha256."""
    folders = [ROOT / d for d in (*OUTPUT_DIRS, "reports")]
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in folders if d.is_dir() for p in sorted(d.rglob("*")) if p.is_file()
            } | {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest()
                 for f in GENERATED if (ROOT / f).is_file()}


@pytest.mark.slow
def test_quick_run_measures_both_engines_in_a_scratch_copy(tmp_path, tiny_archive):
    out = tmp_path / "results.json"
    archive, _, _ = tiny_archive
    cmd = [sys.executable, "bench/run.py", "--quick", "--archive", str(archive),
           "--out", str(out), "--cores", "1", "--spread", "2"]
    before = checkout_state()
    r = subprocess.run(cmd, cwd=ROOT, env=engine_env(), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert checkout_state() == before  # every run happened in the scratch copy
    results = json.loads(out.read_text())

    stages = [s.name for s in STAGES]
    for engine in ("snakemake", "dvc"):
        e = results["figures"][engine]
        assert e["clean_ran"] == sorted(stages)
        assert e["noop_ran"] == []
        assert e["incremental_ran"] == ["mlp", "report"]
        assert e["clean_s"] > e["noop_s"] > 0
    for name in stages:
        s = results["figures"]["stages"][name]
        assert s["wall_s"] > s["import_s"] > 0
        assert s["peak_rss_mib"] > 0
    for m in METHODS:
        assert results["figures"]["stages"][m]["seconds"] > 0
        assert 0 <= results["figures"]["stages"][m]["accuracy"] <= 1
    assert results["figures"]["snakemake_clean_by_cores"]["1"]["resnet18_threads"] == 1
    spread = results["figures"]["spread_by_cores"]["2"]  # harness.FAST_PARAMS: 9 jobs
    assert spread["jobs"] == 9 and spread["seconds"] > 0 and spread["speedup"] == 1
    assert "snakemake spread (9 jobs) by --cores" in r.stdout
    # --quick leaves the full MNIST out, and with it its targets.
    assert set(results["targets"]) == {name for name, (path, *_) in bench.TARGETS.items()
                                       if not path.startswith("mnist.")}
    assert results["gpu"].startswith("not measured")
    # --quick runs no notebook beside the pipeline unless --fastai names a python for it.
    assert results["side_by_side"] == {}
    assert "side by side with fastai: not measured" in r.stdout
    assert results["machine"]["cores"] >= 1 and results["machine"]["torch"]
    assert len(results["load"]["before"]) == results["runs"] == 1
    # The table names every target with its verdict.
    for name, v in results["targets"].items():
        assert name in r.stdout and ("met" if v["met"] else "MISSED") in r.stdout
