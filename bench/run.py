"""Time the whole pipeline under both engines, stage by stage, and check it against its targets.

    MNIST_SAMPLE_URL=/path/to/mnist_sample.tgz python bench/run.py   # 3 runs, bench/results.json
    python bench/run.py --runs 5 --out /tmp/results.json
    python bench/run.py --cores 1 2 4      # then one clean Snakemake run per --cores value
    python bench/run.py --spread 1         # the seed spread at --cores 1 only (default: 1 2)
    python bench/run.py --quick --archive tiny.tgz --out /tmp/r.json  # smoke test, any archive

Everything runs in a scratch copy of the project (a fresh git repo in a temp folder, no
outputs, the real params: `tests/harness.py`'s `make_project`, which the tests use too), so
the checkout's own outputs and DVC cache are never touched.
Each run, in order:

1. Snakemake from nothing (outputs, .snakemake, dvc.lock and DVC's cache all removed) to the
   report: `snakemake --cores 4 --resources gpu=1`; then the same command again (no-op); then
   again after halving `mlp.lr` (incremental: only mlp and report should rerun).
2. Each stage on its own, one after another, as `python -X importtime stages/<name>.py ...`:
   the process's wall time and peak RSS (os.wait4, children included) from outside, the time
   spent importing (the top-level entries of -X importtime, lazy imports included) and the
   stage's own `seconds` from its timing file.
3. `dvc repro` from nothing, a no-op `dvc repro`, and `dvc repro` after the same mlp.lr edit.

After the runs, `snakemake spread` (every job of spread/dvc.yaml: each trained method per
seed, the sweep, the page) once per --spread value of --cores, the chapter's outputs in place
and the spread's removed each time: its wall time and the speed-up over the first value.
Then the full MNIST (`--mnist`, the default when MNIST_URL or fastai's cache has
mnist_png.tgz): `snakemake mnist` from nothing (the chapter's outputs in place), then each of
its stages alone with its wall time and peak RSS, as in 2.

Every figure in results.json's "figures" is the median over the runs; "runs" keeps each one.
The archive comes from --archive, else MNIST_SAMPLE_URL, else ~/.fastai/archive. `--quick`
is for tests: one run, short training (figures meaningless), and the archive is accepted by
its md5, so a tiny synthetic archive will do. The load average is recorded before and after:
on a shared machine, take final figures when it is low.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import side_by_side  # noqa: E402
from mnist_basics.pipeline.definition import (  # noqa: E402
    METHODS,
    MNIST_STAGES,
    SPREAD_RUNS,
    STAGES,
    STAGES_OF,
    SWEEP_RUNS,
    metrics,
    spread_jobs,
    timing,
)
from tests.harness import (  # noqa: E402
    FAST_PARAMS,
    SNAKEMAKE,
    clean_outputs,
    engine_env,
    local_archive,
    make_project,
    ran,
    set_params,
    sh,
)

# name -> (figure path in "figures", limit, unit): `make bench` prints each as met/missed.
# How fast the training itself may be is judged beside fastai on the same machine
# (side_by_side.TARGETS), not in seconds that only hold on one CPU.
TARGETS = {
    "no-op run, snakemake": ("snakemake.noop_s", 1.5, "s"),
    "no-op run, dvc": ("dvc.noop_s", 1.5, "s"),
    "incremental run after an mlp.lr edit, snakemake": ("snakemake.incremental_s", 12, "s"),
    "incremental run after an mlp.lr edit, dvc": ("dvc.incremental_s", 12, "s"),
    "peak RSS of any stage": ("peak_rss_gib", 1.5, "GiB"),
    "full MNIST: peak RSS of any stage": ("mnist.peak_rss_gib", 2.5, "GiB"),
}


# -- Running things --------------------------------------------------------------------------
def timed(cmd: list[str] | tuple[str, ...], cwd: Path, env: dict) -> dict:
    """Run `cmd`; its wall seconds, peak RSS in bytes (itself or any child) and output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # rusage: the max RSS over the process tree
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}) in {cwd}:\n"
                           f"{stdout[-3000:]}\n{stderr[-3000:]}")
    return {"seconds": seconds, "max_rss": usage.ru_maxrss * 1024, "stdout": stdout,
            "stderr": stderr}


# -- The scratch project ---------------------------------------------------------------------
def scratch_project(dest: Path, archive: Path, quick: bool) -> Path:
    """make_project at `dest`; with `quick`, short training and `archive` accepted by its md5
    (a tiny archive trains in seconds, and resnet18 needs batches smaller than it)."""
    if not quick:
        return make_project(dest)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    return make_project(dest, params={"data": {"md5": md5}, **FAST_PARAMS})  # a 9-job spread


# -- One run ---------------------------------------------------------------------------------
def snakemake_ran(log: str) -> list[str]:
    return sorted(ran(log))


def dvc_ran(log: str) -> list[str]:
    return sorted(set(re.findall(r"^Running stage '(\w+)'", log, re.M)))


def import_seconds(stderr: str) -> float:
    """Total of -X importtime's top-level entries (cumulative microseconds), in seconds."""
    total = 0
    for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \| (\s*)\S", stderr, re.M):
        if not m.group(2):  # not indented: imported by the program itself, not a module
            total += int(m.group(1))
    return total / 1e6


def stage_timing(proj: Path, dataset: str = "mnist_sample") -> dict[str, dict]:
    return {m: json.loads((proj / timing(m, dataset)).read_text()) for m in METHODS}


def engine_runs(proj: Path, env: dict, cmd: tuple[str, ...], stages_ran,
                lr_edit: float) -> dict:
    """Clean, no-op and incremental runs of one engine; params are restored afterwards."""
    clean_outputs(proj)
    params = (proj / "params.yaml").read_text()
    first = timed(cmd, proj, env)
    noop = timed(cmd, proj, env)
    set_params(proj, mlp={"lr": lr_edit})
    try:
        incremental = timed(cmd, proj, env)
    finally:
        (proj / "params.yaml").write_text(params)
    return {
        "clean_s": first["seconds"],
        "clean_ran": stages_ran(first["stdout"] + first["stderr"]),
        "noop_s": noop["seconds"],
        "noop_ran": stages_ran(noop["stdout"] + noop["stderr"]),
        "incremental_s": incremental["seconds"],
        "incremental_ran": stages_ran(incremental["stdout"] + incremental["stderr"]),
    }


def each_stage(proj: Path, env: dict, dataset: str = "mnist_sample") -> dict[str, dict]:
    """Every stage of a dataset alone, in pipeline order, with its wall time, imports and
    peak RSS (the chapter's: from nothing; another dataset's: the chapter's outputs in place)."""
    if dataset == "mnist_sample":
        clean_outputs(proj)
    out = {}
    for s in STAGES_OF[dataset]:
        python, *script = s.argv(root=proj)  # every path its default, in the project
        cmd = [python, "-X", "importtime", *script]
        r = timed(cmd, proj, env)
        out[s.name] = {"wall_s": r["seconds"], "import_s": import_seconds(r["stderr"]),
                       "peak_rss_mib": r["max_rss"] / 2**20}
    for m, t in stage_timing(proj, dataset).items():
        out[m].update(seconds=t["seconds"], train_seconds=t["train_seconds"],
                      images_per_second=t["images_per_second"],
                      epoch_seconds_mean=statistics.mean(t["epoch_seconds"]),
                      epochs=len(t["epoch_seconds"]), threads=t["threads"],
                      # what the speed was bought with: the validation accuracy it reached
                      accuracy=json.loads((proj / metrics(m, dataset)).read_text())["accuracy"])
    return out


def full_mnist(proj: Path, env: dict) -> dict:
    """`snakemake mnist` from nothing (the chapter's outputs in place, which its page reads),
    then each of its stages alone: the whole run's seconds, and each stage's figures."""
    timed(SNAKEMAKE, proj, env)  # the chapter, if an earlier step left it incomplete
    for s in MNIST_STAGES:
        for p in s.all_outputs:
            (proj / p).unlink(missing_ok=True)
    load = os.getloadavg()[0]
    run = timed(("snakemake", "mnist", *SNAKEMAKE[1:]), proj, env)
    stages = each_stage(proj, env, "mnist")
    return {"clean_s": round(run["seconds"], 3), "load_before": load, "stages": stages,
            "peak_rss_gib": max(s["peak_rss_mib"] for s in stages.values()) / 1024}


def one_run(proj: Path, env: dict) -> dict:
    lr = yaml.safe_load((proj / "params.yaml").read_text())["mlp"]["lr"]
    run: dict = {"load_before": os.getloadavg()[0]}
    run["snakemake"] = engine_runs(proj, env, SNAKEMAKE, snakemake_ran, lr / 2)
    run["snakemake_timing"] = stage_timing(proj)  # as trained inside the clean Snakemake run
    run["stages"] = each_stage(proj, env)
    run["dvc"] = engine_runs(proj, env, ("dvc", "repro"), dvc_ran, lr / 2)
    run["peak_rss_gib"] = max(s["peak_rss_mib"] for s in run["stages"].values()) / 1024
    run["load_after"] = os.getloadavg()[0]
    return run


def by_cores(proj: Path, env: dict, cores: list[int]) -> dict[str, dict]:
    """A clean Snakemake run with each --cores value: its time and resnet18's threads."""
    out = {}
    for n in cores:
        clean_outputs(proj)
        load = os.getloadavg()[0]
        r = timed(("snakemake", "--cores", str(n), "--resources", "gpu=1"), proj, env)
        t = stage_timing(proj)["resnet18"]
        out[str(n)] = {"clean_s": round(r["seconds"], 3), "resnet18_threads": t["threads"],
                       "resnet18_seconds": t["seconds"], "load_before": load}
    return out


def spread_by_cores(proj: Path, env: dict, cores: list[int]) -> dict[str, dict]:
    """`snakemake spread` with each --cores value, the chapter done and the spread's runs gone:
    its wall time, its jobs, and the speed-up over the first value."""
    out: dict[str, dict] = {}
    if not cores:
        return out
    timed(SNAKEMAKE, proj, env)  # the chapter, which the spread's jobs read
    jobs = spread_jobs(yaml.safe_load((proj / "params.yaml").read_text()))
    for n in cores:
        for folder in (SPREAD_RUNS, SWEEP_RUNS):
            shutil.rmtree(proj / folder, ignore_errors=True)
        load = os.getloadavg()[0]
        r = timed(("snakemake", "spread", "--cores", str(n), "--resources", "gpu=1"), proj, env)
        out[str(n)] = {"seconds": round(r["seconds"], 3), "jobs": len(jobs),
                       "load_before": load}
    first = out[str(cores[0])]["seconds"]
    for v in out.values():
        v["speedup"] = round(first / v["seconds"], 3)
    return out


# -- Summaries -------------------------------------------------------------------------------
def median(runs: list):
    """The element-wise median of equally shaped runs (lists of names: the first run's)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: median([r[k] for r in runs]) for k in first}
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    return round(statistics.median(runs), 6)


def lookup(figures: dict, path: str):
    for key in path.split("."):
        figures = figures[key]
    return figures


def verdicts(figures: dict) -> dict[str, dict]:
    out = {}
    for name, (path, limit, unit) in TARGETS.items():
        if path.startswith("mnist.") and "mnist" not in figures:
            continue  # not measured this time (--quick, or no mnist_png.tgz)
        value = lookup(figures, path)
        out[name] = {"value": round(value, 3), "limit": limit, "unit": unit, "met": value <= limit}
    return out


def machine() -> dict:
    """CPU, core count and the torch thread settings a stage starts with, and the versions."""
    cpu = platform.processor() or ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"^model name\s*:\s*(.*)$", text, re.M).group(1)
        flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M).group(1).split()
    except (OSError, AttributeError):
        flags = []
    probe = ("import json, torch; print(json.dumps({'torch': torch.__version__, "
             "'num_threads': torch.get_num_threads(), "
             "'num_interop_threads': torch.get_num_interop_threads(), "
             "'mkldnn_bf16': torch.backends.mkldnn.is_available()}))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    t = json.loads(sh(sys.executable, "-c", probe, cwd=ROOT, env=env).stdout)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": "amx_bf16" in flags,
        "python": platform.python_version(),
        "torch": t["torch"],
        "torch_threads_default": t["num_threads"],
        "torch_interop_threads_default": t["num_interop_threads"],
        # What each stage sets torch to: 1, or every core it is given (Snakemake: its threads).
        "stage_threads": {s.name: "every core" if s.multicore else 1 for s in STAGES},
        "platform": platform.platform(),
    }


def table(results: dict) -> str:
    f = results["figures"]
    rows = [("target", "figure", "limit", "")]
    for name, v in results["targets"].items():
        rows.append((name, f"{v['value']:.2f} {v['unit']}", f"<= {v['limit']} {v['unit']}",
                     "met" if v["met"] else "MISSED"))
    lines = [f"{a:64s} {b:>9s} {c:>10s}  {d}" for a, b, c, d in rows]
    if results.get("side_by_side"):
        lines += ["", *side_by_side.table(results["side_by_side"])]
    else:
        lines += ["", "side by side with fastai: not measured (`make fastai-venv`, then "
                  "`make bench`)"]
    lines += ["", f"{'stage':12s} {'wall s':>7s} {'import s':>8s} {'main s':>7s} "
              f"{'peak RSS MiB':>12s} {'epoch s':>8s} {'img/s':>9s} {'accuracy':>8s}"]
    for name, s in f["stages"].items():
        main = f"{s['seconds']:7.2f}" if "seconds" in s else f"{'':7s}"
        epoch = f"{s['epoch_seconds_mean']:8.3f}" if "epoch_seconds_mean" in s else f"{'':8s}"
        ips = f"{s['images_per_second']:9.0f}" if "images_per_second" in s else f"{'':9s}"
        acc = f"{s['accuracy']:8.4f}" if "accuracy" in s else ""
        lines.append(f"{name:12s} {s['wall_s']:7.2f} {s['import_s']:8.2f} {main} "
                     f"{s['peak_rss_mib']:12.0f} {epoch} {ips} {acc}".rstrip())
    for engine in ("snakemake", "dvc"):
        e = f[engine]
        reran = ", ".join(e["incremental_ran"])
        lines.append(f"{engine}: clean {e['clean_s']:.1f} s, no-op {e['noop_s']:.2f} s, "
                     f"mlp.lr edit {e['incremental_s']:.1f} s (reran {reran})")
    if f.get("mnist"):
        mn = f["mnist"]
        lines.append(f"full MNIST: snakemake mnist from nothing {mn['clean_s']:.1f} s; each "
                     "stage alone (wall s, peak RSS MiB, accuracy): " + ", ".join(
                         f"{n} {s['wall_s']:.1f} s {s['peak_rss_mib']:.0f}"
                         + (f" {s['accuracy']:.4f}" if "accuracy" in s else "")
                         for n, s in mn["stages"].items()))
    if f.get("spread_by_cores"):
        by = f["spread_by_cores"]
        jobs = next(iter(by.values()))["jobs"]
        lines.append(f"snakemake spread ({jobs} jobs) by --cores (one run each): " + ", ".join(
            f"{n}: {v['seconds']:.1f} s (x{v['speedup']:.2f})" for n, v in by.items()))
    if "snakemake_clean_by_cores" in f:
        by = f["snakemake_clean_by_cores"]
        lines.append("snakemake clean by --cores (one run each): " + ", ".join(
            f"{n}: {v['clean_s']:.1f} s (resnet18 {v['resnet18_threads']} threads)"
            for n, v in by.items()))
    m = results["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
                 f"({m['torch_threads_default']} threads, {m['torch_interop_threads_default']} "
                 f"interop), python {m['python']}")
    load = results["load"]
    lines.append(f"load average (1 min) at the start of each run {load['before']}, "
                 f"at the end {load['after']}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--runs", type=int, default=None, help="runs to take medians of (default 3)")
    ap.add_argument("--archive", type=Path, default=None,
                    help="mnist_sample.tgz (default: MNIST_SAMPLE_URL, else ~/.fastai/archive)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results.json")
    ap.add_argument("--cores", type=int, nargs="*", default=[],
                    help="after the runs, time one clean Snakemake run with each --cores value")
    ap.add_argument("--spread", type=int, nargs="*", default=None,
                    help="after the runs, time `snakemake spread` with each --cores value "
                         "(default: 1 2; none with --quick)")
    ap.add_argument("--mnist", action=argparse.BooleanOptionalAction, default=None,
                    help="after the runs, time the full MNIST (default: when MNIST_URL or "
                         "fastai's cache has mnist_png.tgz, and not --quick)")
    ap.add_argument("--fastai", type=Path, default=None, metavar="PYTHON",
                    help="the python of an environment with fastai, to run the book's notebook "
                         "beside the pipeline (default: .venv-fastai's, unless --quick)")
    ap.add_argument("--no-fastai", action="store_true", help="skip the side-by-side rounds")
    ap.add_argument("--fastai-rounds", type=int, default=None,
                    help="alternating rounds of each side-by-side comparison (default: --runs)")
    ap.add_argument("--fastai-mnist-rounds", type=int, default=None,
                    help="those of the full MNIST's, ~10 minutes each (default: --fastai-rounds)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: one run, short training, the archive accepted by its md5")
    ap.add_argument("--keep", action="store_true", help="keep the scratch project (path printed)")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    archive = args.archive or local_archive()
    if archive is None or not archive.is_file():
        ap.error("no archive: pass --archive or set MNIST_SAMPLE_URL to a local mnist_sample.tgz")
    archive = archive.resolve()
    # absolute(), not resolve(): a venv's python is a symlink that must stay the venv's.
    fastai = (args.fastai or (None if args.quick else side_by_side.FASTAI_PYTHON))
    fastai = fastai.absolute() if fastai else None
    if args.no_fastai:
        fastai = None
    elif fastai is not None and not fastai.is_file():
        if args.fastai:
            ap.error(f"--fastai: no python at {fastai}")
        print(f"no {fastai}: the side-by-side rounds with fastai are skipped "
              "(`make fastai-venv` builds it)", file=sys.stderr)
        fastai = None

    scratch = Path(tempfile.mkdtemp(prefix="mnist-basics-bench-"))
    try:
        proj = scratch_project(scratch / "proj", archive, args.quick)
        # The copy's own package (as harness.sh runs it), not the checkout's.
        digits = local_archive("MNIST_URL", "mnist_png.tgz")
        mnist = args.mnist if args.mnist is not None else digits is not None and not args.quick
        if mnist and digits is None:
            ap.error("--mnist: set MNIST_URL to a local mnist_png.tgz")
        env = engine_env(MNIST_SAMPLE_URL=str(archive), PYTHONPATH=str(proj),
                         **({"MNIST_URL": str(digits)} if digits else {}))
        started = time.time()
        done = []
        for i in range(runs):
            done.append(one_run(proj, env))
            print(f"run {i + 1}/{runs}: snakemake clean {done[-1]['snakemake']['clean_s']:.1f} s,"
                  f" dvc clean {done[-1]['dvc']['clean_s']:.1f} s", file=sys.stderr, flush=True)
        cores = by_cores(proj, env, args.cores)
        spread_cores = [1, 2] if args.spread is None and not args.quick else args.spread or []
        spread = spread_by_cores(proj, env, spread_cores)
        full = full_mnist(proj, env) if mnist else None
        side = side_by_side.summary(side_by_side.rounds(
            timed, proj, env, fastai, archive, digits, args.fastai_rounds or runs,
            log=lambda m: print(m, file=sys.stderr, flush=True),
            n_mnist=args.fastai_mnist_rounds,
        )) if fastai else {}
    finally:
        if args.keep:
            print(f"scratch project kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    figures = median(done)
    if cores:  # one run each, after the others
        figures["snakemake_clean_by_cores"] = cores
    if spread:
        figures["spread_by_cores"] = spread
    if full:  # one run, after the others
        figures["mnist"] = full
    results = {
        "command": "python bench/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "quick": args.quick,
        "runs": runs,
        "archive": archive.name,
        "load": {"before": [r["load_before"] for r in done],
                 "after": [r["load_after"] for r in done],
                 "note": "1-minute load average when each run started and ended"},
        "machine": machine(),
        "gpu": "not measured: no GPU machine was available",
        "targets": verdicts(figures) | side_by_side.verdicts(side),
        "figures": figures,
        "side_by_side": side,
        "each_run": done,
    }
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if "history" in previous:  # notes on earlier figures (before/after an optimisation) stay
        results["history"] = previous["history"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
