"""Time the whole pipeline under both engines, stage by stage, and check it against its targets.

    MNIST_SAMPLE_URL=/path/to/mnist_sample.tgz python bench/run.py   # 3 runs, bench/results.json
    python bench/run.py --runs 5 --out /tmp/results.json
    python bench/run.py --cores 1 2 4      # then one clean Snakemake run per --cores value
    python bench/run.py --quick --archive tiny.tgz --out /tmp/r.json  # smoke test, any archive

Everything runs in a scratch copy of the project (a fresh git repo in a temp folder, no
outputs, the real params), so the checkout's own outputs and DVC cache are never touched.
Each run, in order:

1. Snakemake from nothing (outputs, .snakemake, dvc.lock and DVC's cache all removed) to the
   report: `snakemake --cores 4 --resources gpu=1`; then the same command again (no-op); then
   again after halving `mlp.lr` (incremental: only mlp and report should rerun).
2. Each stage on its own, one after another, as `python -X importtime stages/<name>.py ...`:
   the process's wall time and peak RSS (os.wait4, children included) from outside, the time
   spent importing (the top-level entries of -X importtime, lazy imports included) and the
   stage's own `seconds` from its timing file.
3. `dvc repro` from nothing, a no-op `dvc repro`, and `dvc repro` after the same mlp.lr edit.

Every figure in results.json's "figures" is the median over the runs; "runs" keeps each one.
The archive comes from --archive, else MNIST_SAMPLE_URL, else ~/.fastai/archive. `--quick`
is for tests: one run, short training (figures meaningless), and the archive is accepted by
its md5, so a tiny synthetic archive will do. The load average is recorded before and after:
on a shared machine, take final figures when it is low.
"""

from __future__ import annotations

import argparse
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
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mnist_basics.pipeline import METHODS, STAGES, metrics, timing  # noqa: E402

SNAKEMAKE = ("snakemake", "--cores", "4", "--resources", "gpu=1")
OUTPUT_DIRS = ("data", "models", "metrics")  # where stages write: never copied
GENERATED = ("dvc.lock", "reports/index.html", "reports/accuracy.csv")
# Short training for --quick (on a tiny archive: resnet18 needs batches smaller than it).
QUICK_PARAMS = {"linear": {"epochs": 2}, "mlp": {"epochs": 2},
                "resnet18": {"epochs": 1, "batch_size": 8}}
GIB = 1024**3

# name -> (figure path in "figures", limit, unit): `make bench` prints each as met/missed.
TARGETS = {
    "clean snakemake run, download to report": ("snakemake.clean_s", 40, "s"),
    "resnet18 stage, 1 epoch plus validation": ("stages.resnet18.train_seconds", 20, "s"),
    "no-op run, snakemake": ("snakemake.noop_s", 3, "s"),
    "no-op run, dvc": ("dvc.noop_s", 3, "s"),
    "incremental run after an mlp.lr edit, snakemake": ("snakemake.incremental_s", 12, "s"),
    "incremental run after an mlp.lr edit, dvc": ("dvc.incremental_s", 12, "s"),
    "peak RSS of any stage": ("peak_rss_gib", 1.5, "GiB"),
}


# -- Running things --------------------------------------------------------------------------
def engine_env(archive: Path) -> dict[str, str]:
    """This venv first on PATH (stage commands say `python`), the archive, no thread cap."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "MNIST_SAMPLE_URL": str(archive)}
    env.pop("OMP_NUM_THREADS", None)
    return env


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


def sh(*cmd: str, cwd: Path, env: dict | None = None) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


# -- The scratch project ---------------------------------------------------------------------
def default_archive() -> Path | None:
    url = os.environ.get("MNIST_SAMPLE_URL", "")
    candidates = [Path(urlparse(url).path if url.startswith("file://") else url)] if url else []
    candidates.append(Path.home() / ".fastai/archive/mnist_sample.tgz")
    return next((p for p in candidates if p.is_file()), None)


def update_params(proj: Path, sections: dict[str, dict]) -> None:
    path = proj / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def make_scratch(dest: Path, archive: Path, quick: bool) -> Path:
    """Copy the project's tracked and new files (no outputs) into a fresh git repo at dest."""
    files = sh("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=ROOT)
    for rel in filter(None, files.split("\0")):
        if rel.split("/")[0] in OUTPUT_DIRS or rel in GENERATED or not (ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    if quick:
        import hashlib

        md5 = hashlib.md5(archive.read_bytes()).hexdigest()
        update_params(dest, {"data": {"md5": md5}, **QUICK_PARAMS})
    git = ("git", "-c", "user.name=bench", "-c", "user.email=bench@example.com")
    sh("git", "init", "-q", cwd=dest)
    sh(*git, "add", "-A", cwd=dest)
    sh(*git, "commit", "-qm", "scratch copy", cwd=dest)
    return dest


def clean(proj: Path) -> None:
    """No outputs, no engine state: DVC's cache and run-cache too, so it really recomputes."""
    for d in (*OUTPUT_DIRS, ".snakemake", "logs", "benchmarks", ".dvc/cache", ".dvc/tmp"):
        shutil.rmtree(proj / d, ignore_errors=True)
    for f in GENERATED:
        (proj / f).unlink(missing_ok=True)


# -- One run ---------------------------------------------------------------------------------
def snakemake_ran(log: str) -> list[str]:
    return sorted(set(re.findall(r"^(?:local)?rule (\w+):$", log, re.M)) - {"all"})


def dvc_ran(log: str) -> list[str]:
    return sorted(set(re.findall(r"^Running stage '(\w+)'", log, re.M)))


def import_seconds(stderr: str) -> float:
    """Total of -X importtime's top-level entries (cumulative microseconds), in seconds."""
    total = 0
    for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \| (\s*)\S", stderr, re.M):
        if not m.group(2):  # not indented: imported by the program itself, not a module
            total += int(m.group(1))
    return total / 1e6


def stage_timing(proj: Path) -> dict[str, dict]:
    return {m: json.loads((proj / timing(m)).read_text()) for m in METHODS}


def engine_runs(proj: Path, env: dict, cmd: tuple[str, ...], ran, lr_edit: float) -> dict:
    """Clean, no-op and incremental runs of one engine; params are restored afterwards."""
    clean(proj)
    params = (proj / "params.yaml").read_text()
    first = timed(cmd, proj, env)
    noop = timed(cmd, proj, env)
    update_params(proj, {"mlp": {"lr": lr_edit}})
    try:
        incremental = timed(cmd, proj, env)
    finally:
        (proj / "params.yaml").write_text(params)
    return {
        "clean_s": first["seconds"],
        "clean_ran": ran(first["stdout"] + first["stderr"]),
        "noop_s": noop["seconds"],
        "noop_ran": ran(noop["stdout"] + noop["stderr"]),
        "incremental_s": incremental["seconds"],
        "incremental_ran": ran(incremental["stdout"] + incremental["stderr"]),
    }


def each_stage(proj: Path, env: dict) -> dict[str, dict]:
    """Every stage alone, in pipeline order, with its wall time, imports and peak RSS."""
    clean(proj)
    out = {}
    for s in STAGES:
        cmd = [sys.executable, "-X", "importtime", *shlex.split(s.cmd)[1:]]
        r = timed(cmd, proj, env)
        out[s.name] = {"wall_s": r["seconds"], "import_s": import_seconds(r["stderr"]),
                       "peak_rss_mib": r["max_rss"] / 2**20}
    for m, t in stage_timing(proj).items():
        out[m].update(seconds=t["seconds"], train_seconds=t["train_seconds"],
                      images_per_second=t["images_per_second"],
                      epoch_seconds_mean=statistics.mean(t["epoch_seconds"]),
                      epochs=len(t["epoch_seconds"]), threads=t["threads"],
                      # what the speed was bought with: the validation accuracy it reached
                      accuracy=json.loads((proj / metrics(m)).read_text())["accuracy"])
    return out


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
        clean(proj)
        load = os.getloadavg()[0]
        r = timed(("snakemake", "--cores", str(n), "--resources", "gpu=1"), proj, env)
        t = stage_timing(proj)["resnet18"]
        out[str(n)] = {"clean_s": round(r["seconds"], 3), "resnet18_threads": t["threads"],
                       "resnet18_seconds": t["seconds"], "load_before": load}
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
    t = json.loads(sh(sys.executable, "-c", probe, cwd=ROOT, env=env))
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
    lines = [f"{a:50s} {b:>12s} {c:>12s}  {d}" for a, b, c, d in rows]
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
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: one run, short training, the archive accepted by its md5")
    ap.add_argument("--keep", action="store_true", help="keep the scratch project (path printed)")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    archive = args.archive or default_archive()
    if archive is None or not archive.is_file():
        ap.error("no archive: pass --archive or set MNIST_SAMPLE_URL to a local mnist_sample.tgz")
    archive = archive.resolve()

    scratch = Path(tempfile.mkdtemp(prefix="mnist-basics-bench-"))
    try:
        proj = make_scratch(scratch / "proj", archive, args.quick)
        env = engine_env(archive)
        started = time.time()
        done = []
        for i in range(runs):
            done.append(one_run(proj, env))
            print(f"run {i + 1}/{runs}: snakemake clean {done[-1]['snakemake']['clean_s']:.1f} s,"
                  f" dvc clean {done[-1]['dvc']['clean_s']:.1f} s", file=sys.stderr, flush=True)
        cores = by_cores(proj, env, args.cores)
    finally:
        if args.keep:
            print(f"scratch project kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    figures = median(done)
    if cores:  # one run each, after the others
        figures["snakemake_clean_by_cores"] = cores
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
        "targets": verdicts(figures),
        "figures": figures,
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
