"""What the tests and `make bench` share: data to run on, stages as commands, project copies.

- `local_archive`: the real mnist_sample.tgz, from MNIST_SAMPLE_URL or fastai's cache;
- `make_tiny_tensors` / `make_tiny_archive`: small, learnable stand-ins for the real data;
- `run_stage`: one stage as a subprocess, its argv from the pipeline definition
  (`Stage.argv`), every path pointed where the caller says;
- `make_project`: a copy of this project (no outputs) in a fresh git repo, to run whole
  engines in without ever touching the checkout; `engine_env` and `sh` run commands there.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import urlparse

import yaml

from mnist_basics.pipeline.bridge import gpu_token
from mnist_basics.pipeline.definition import BY_DATASET, DATASETS, SAMPLE

ROOT = Path(__file__).resolve().parent.parent


def module_files(module: str) -> list[str]:
    """`mnist_basics.chapter.train` -> its file, after each package __init__.py above it
    (importing a module runs those too), relative to the project root."""
    parts = module.split(".")
    files = ["/".join([*parts[:depth], "__init__.py"]) for depth in range(1, len(parts))]
    rel = "/".join(parts)
    return [*files, f"{rel}/__init__.py" if (ROOT / rel).is_dir() else f"{rel}.py"]


def package_imports(path: Path) -> set[str]:
    """The package's files that a file imports directly, anywhere in it (lazy imports too):
    `from mnist_basics.pipeline import cli` is pipeline/__init__.py and pipeline/cli.py."""
    import ast

    def ours(name: str | None) -> bool:
        return (name or "").split(".")[0] == "mnist_basics"

    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {a.name for a in node.names if ours(a.name)}
        elif isinstance(node, ast.ImportFrom) and ours(node.module):
            modules.add(node.module)
            folder = ROOT / node.module.replace(".", "/")
            modules |= {f"{node.module}.{a.name}" for a in node.names
                        if (folder / f"{a.name}.py").exists() or (folder / a.name).is_dir()}
    return {f for m in modules for f in module_files(m)}
VENV_BIN = Path(sys.executable).parent
OUTPUT_DIRS = ("data", "models", "metrics")  # where the stages write; never copied
GENERATED = ("dvc.lock", "reports/index.html", "reports/accuracy.csv", "spread/dvc.lock",
             "reports/spread.html", "reports/spread.csv", "reports/sweep.csv", "mnist/dvc.lock",
             "reports/mnist.html", "reports/mnist_accuracy.csv")
# The committed record of the real data's runs.
LOCKS = ("dvc.lock", "spread/dvc.lock", "mnist/dvc.lock")
ENGINE_STATE = (".snakemake", "logs", ".dvc/cache", ".dvc/tmp")
SNAKEMAKE = ("snakemake", "--cores", "4", "--resources", "gpu=1")
ENGINES = {"dvc": ("dvc", "repro"), "snakemake": SNAKEMAKE}  # each engine's whole run
GPU_HERE = bool(gpu_token("auto"))  # training stages take turns on a GPU, where there is one
REAL_MODELS = ("pixel_mean", "linear", "mlp")  # trained on the real data in tests: seconds each
# A whole run in seconds: project copies test the machinery, not the accuracy.
FAST_PARAMS = {"linear": {"epochs": 3}, "mlp": {"epochs": 3},
               "resnet18": {"epochs": 1, "batch_size": 8},
               # two seeds and two values: a spread of 9 jobs
               "spread": {"seeds": [0, 1]}, "sweep": {"values": [0.1, 0.3], "seeds": [0]},
               "mnist": {"linear": {"epochs": 2}, "mlp": {"epochs": 2},
                         "resnet18": {"epochs": 1, "batch_size": 8}}}


# -- Data ------------------------------------------------------------------------------------
def local_archive(env: str = "MNIST_SAMPLE_URL", name: str = "mnist_sample.tgz") -> Path | None:
    """The real mnist_sample.tgz (or another archive): `env` (a path or file:// URL), or
    fastai's cache."""
    url = os.environ.get(env, "")
    candidates = []
    if url:
        candidates.append(Path(urlparse(url).path if url.startswith("file://") else url))
    candidates.append(Path.home() / ".fastai/archive" / name)
    return next((p for p in candidates if p.is_file()), None)


def make_tiny_tensors(path: Path, n_train: int = 96, n_valid: int = 48, seed: int = 0) -> Path:
    """Write a small, learnable stand-in for data/mnist_sample.safetensors.

    A "3" is a bright right-hand arc and a "7" a top bar with a diagonal, plus noise: easy
    enough for every model to learn in a few steps, shaped exactly like the real tensors.
    """
    import torch

    from mnist_basics.artifacts import save_tensors

    g = torch.Generator().manual_seed(seed)
    three = torch.zeros(28, 28)
    three[4:24, 16:22] = 1.0
    three[4:7, 8:22] = three[13:15, 10:22] = three[21:24, 8:22] = 1.0
    seven = torch.zeros(28, 28)
    seven[4:7, 6:22] = 1.0
    for i in range(7, 25):
        seven[i, max(0, 21 - (i - 7) // 2 - 2) : 21 - (i - 7) // 2 + 1] = 1.0

    def split(n):
        y = (torch.arange(n) % 2 == 0).to(torch.uint8)  # 1 = a 3, 0 = a 7
        base = torch.where(y.bool()[:, None, None], three, seven)
        x = (base * 200 + torch.rand(n, 28, 28, generator=g) * 55).clamp(0, 255)
        return x.to(torch.uint8), y

    tx, ty = split(n_train)
    vx, vy = split(n_valid)
    save_tensors(path, {"train_x": tx, "train_y": ty, "valid_x": vx, "valid_y": vy})
    return path


def content_digest(folder: Path) -> str:
    """The archive's content digest, written out independently of mnist_basics.download."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    lines = "".join(
        f"{hashlib.sha256((folder / f).read_bytes()).hexdigest()}  {f}\n" for f in files
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def make_tiny_tree(root: Path, n_train: int = 24, n_valid: int = 12, seed: int = 0) -> Path:
    """A tiny mnist_sample/ folder of real PNG files (the tiny_tensors digits), with labels.csv."""
    from PIL import Image
    from safetensors.torch import load_file

    t = load_file(make_tiny_tensors(root / "tiny.safetensors", n_train, n_valid, seed))
    (root / "tiny.safetensors").unlink()
    top = root / "mnist_sample"
    rows = ["name,label"]
    for split in ("train", "valid"):
        for i, (x, y) in enumerate(zip(t[f"{split}_x"], t[f"{split}_y"], strict=True)):
            cls = "3" if y else "7"
            name = f"{split}/{cls}/{1000 + i}.png"
            (top / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x.numpy(), mode="L").save(top / name)
            rows.append(f"{name},{0 if y else 1}")
    (top / "labels.csv").write_text("\n".join(rows) + "\n")
    return top


def make_tiny_archive(root: Path, **kw) -> tuple[Path, str, str]:
    """A tiny, well-formed mnist_sample.tgz: returns (path, md5, content digest)."""
    top = make_tiny_tree(root / "tree", **kw)
    path = root / "mnist_sample.tgz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(top, arcname="mnist_sample")
    return path, hashlib.md5(path.read_bytes()).hexdigest(), content_digest(top)


# -- One stage -------------------------------------------------------------------------------
def updated(values: dict, updates: dict) -> dict:
    """`values` with `updates` merged in, nested sections (`mnist: {mlp: ...}`) key by key; a
    list or a value replaces what was there."""
    out = dict(values)
    for key, new in updates.items():
        old = out.get(key)
        out[key] = updated(old, new) if isinstance(old, dict) and isinstance(new, dict) else new
    return out


def write_results(metrics: Path, classes: Path, results: dict) -> None:
    """A method's results as its stage splits them: the accuracy and losses in its metrics,
    each class's accuracy (`accuracy_3`, `rmse_accuracy_3`) beside them."""
    from mnist_basics.artifacts import write_json

    write_json(metrics, {k: v for k, v in sorted(results.items()) if "accuracy_" not in k})
    write_json(classes, {k: v for k, v in sorted(results.items()) if "accuracy_" in k})


def write_params(path: Path, **sections: dict) -> Path:
    """The project's params.yaml with some values replaced: write_params(p, mlp={"epochs": 2})."""
    values = updated(yaml.safe_load((ROOT / "params.yaml").read_text()), sections)
    path.write_text(yaml.safe_dump(values))
    return path


def run_stage(name: str, *, under: Path | None = None, params: Path | None = None,
              threads: int | None = 1, cwd: Path | None = None, env: dict | None = None,
              timeout: int = 600, dataset: str = SAMPLE,
              **paths: Path) -> subprocess.CompletedProcess:
    """Run stages/<name>.py as its engines do, with this checkout's package: the chapter's
    stage, or another `dataset`'s copy of it.

    Paths given by flag name win; every other path of the stage lies `under` a folder (none:
    the defaults, relative to `cwd`). `threads` is what an engine would grant (None: no cap).
    """
    argv = BY_DATASET[dataset][name].argv(under=under, params=params, **paths)
    run_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    run_env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        run_env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.run(argv, cwd=cwd or (under.parent if under else ROOT), env=run_env,
                          capture_output=True, text=True, timeout=timeout)


# -- A copy of the project, for whole engines ------------------------------------------------
def train_all(names, root: Path, tensors: Path, params: Path) -> Path:
    """Each named stage on `tensors`, side by side, writing under `root` (pixel_mean reads no
    params): root/models, as the stages write it."""
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str):
        return run_stage(name, under=root, tensors=tensors,
                         params=None if name == "pixel_mean" else params)

    with ThreadPoolExecutor(len(names)) as pool:
        for name, r in zip(names, pool.map(one, names), strict=True):
            assert r.returncode == 0, f"{name}: {r.stderr[-2000:]}"
    return root / "models"


def engine_env(**extra: str) -> dict:
    """The environment the engines run in: this venv first on PATH, no thread cap."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", **extra}
    env.pop("OMP_NUM_THREADS", None)
    return env


def sh(*cmd, cwd=ROOT, env=None, check=True, timeout=600) -> subprocess.CompletedProcess:
    # Stage scripts in a project copy import the copy's package, not the one installed here.
    env = {**(env or engine_env()), "PYTHONPATH": str(cwd)}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def set_params(proj: Path, **sections: dict) -> None:
    """Update params.yaml in `proj`: set_params(p, mlp={"epochs": 2})."""
    path = proj / "params.yaml"
    params = updated(yaml.safe_load(path.read_text()), sections)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def git_commit(proj: Path, message: str = "copy") -> None:
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@example.com")
    sh(*git, "add", "-A", cwd=proj)
    sh(*git, "commit", "-qm", message, cwd=proj)


def make_project(dest: Path, *, params: dict | None = None, lock: bool = False,
                 clone: bool = False) -> Path:
    """Copy this project's tracked and new files into a fresh git repo at `dest`.

    No outputs, and no dvc.lock files unless `lock` (the committed record of the real data's
    runs); with `clone`, every file as a git clone has it, those too and the outputs kept in
    git.
    params.yaml is updated with `params`, such as the md5 of a tiny archive to accept.
    """
    files = sh("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z").stdout
    for rel in filter(None, files.split("\0")):
        skip = not clone and (rel.split("/")[0] in OUTPUT_DIRS or (
            rel in GENERATED and not (lock and rel in LOCKS)))
        if skip or not (ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    for rel in files.split("\0"):  # the outputs' folders, with their .gitignore files
        if rel.split("/")[0] in OUTPUT_DIRS and rel.endswith(".gitignore"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    if params:
        set_params(dest, **params)
    sh("git", "init", "-q", cwd=dest)
    git_commit(dest)
    return dest


def borrow_venv(proj: Path) -> None:
    """Give a project copy this checkout's venv, so that `make run` and friends work there.

    Each of its entries is linked, all but make's install stamp, which is made fresh: make
    sees the venv made already and never reinstalls into it (that would point its editable
    install at the copy).
    """
    venv = proj / ".venv"
    venv.mkdir()
    for entry in VENV_BIN.parent.iterdir():
        if entry.name != ".installed":
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()


def tiny_project(dest: Path, archive: tuple[Path, str, str], params: dict | None = None,
                 digits: tuple[Path, str, str] | None = None) -> Path:
    """make_project, set to accept a tiny archive (by md5 and content digest), fast params;
    with `digits`, a tiny ten-digit archive for the full MNIST's stages too."""
    _, md5, digest = archive
    accept = {"data": {"md5": md5, "content_digest": digest}}
    if digits is not None:
        accept["mnist"] = {"data": {"md5": digits[1], "content_digest": digits[2]}}
    return make_project(dest, params=updated(updated(accept, FAST_PARAMS), params or {}))


def clean_outputs(proj: Path) -> None:
    """No outputs and no engine state: DVC's cache too, so that a run really recomputes."""
    for d in (*OUTPUT_DIRS, *ENGINE_STATE):
        shutil.rmtree(proj / d, ignore_errors=True)
    for f in GENERATED:
        (proj / f).unlink(missing_ok=True)


def dvc_changed(proj: Path, env: dict | None = None, *targets: str) -> set[str]:
    """The stages `dvc status` reports as changed: the chapter's (dvc.yaml), or those of
    `targets` (`spread/dvc.yaml`, or both files)."""
    out = sh("dvc", "status", *(targets or ["dvc.yaml"]), cwd=proj, env=env).stdout
    if "Data and pipelines are up to date." in out:
        return set()
    return {line[:-1] for line in out.splitlines() if re.match(r"^[\w/.]+(:[\w@.-]+)?:$", line)}


def ran(log: str) -> set[str]:
    """The stages a Snakemake log or plan shows as jobs (not the target rules)."""
    targets = {"all", "chapter", "spread", *(d for d in DATASETS if d != SAMPLE)}
    return set(re.findall(r"^(?:local)?rule (\w+):$", log, re.M)) - targets


def snakemake_plan(proj: Path, env: dict | None = None, *targets: str) -> set[str] | str:
    """The rules a Snakemake dry run would run, or its error when it refuses to plan."""
    r = sh(SNAKEMAKE[0], *targets, *SNAKEMAKE[1:], "--dry-run", cwd=proj, env=env, check=False)
    if r.returncode != 0:
        return r.stdout + r.stderr
    return ran(r.stdout)
