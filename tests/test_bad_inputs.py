"""Bad inputs, each given to the program a user runs: exit 1, one line naming it, nothing lost.

Archives go through `stages/download.py`, images through `stages/stack.py`, params through
every stage that reads them, checkpoints through `python -m mnist_basics predict` and
`stages/report.py`, your own pictures through `predict`. Each case checks the exit status,
that exactly one `error:` line names the problem (no traceback), and that every file that
was there before is still there, byte for byte, with nothing added. tests/BAD_INPUTS.md
lists every case; the last test keeps that table and these cases in step.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import pickle
import runpy
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_origin

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mnist_basics.params import SECTIONS
from mnist_basics.pipeline import cli
from mnist_basics.pipeline.definition import BY_NAME, DATASETS, SPREAD_BY_NAME, STAGES_OF, Stage
from tests import harness
from tests.harness import ROOT, make_tiny_archive, make_tiny_tensors, write_params

TABLE = ROOT / "tests" / "BAD_INPUTS.md"


# -- What every case checks ------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root: relative path -> sha256 (or 'dir')."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def the_error(code: int, stderr: str) -> str:
    """Exit status 1 and exactly one `error:` line (log lines may come before it)."""
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def assert_says(line: str, *words: str) -> None:
    for w in words:
        assert w in line, f"{w!r} not in {line!r}"


def run(*cmd, cwd=ROOT, **env) -> subprocess.CompletedProcess:
    """`python <cmd>`, for what is no stage (predict); stages go through harness.run_stage."""
    return subprocess.run([sys.executable, *map(str, cmd)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


def committed() -> dict:
    """The committed params.yaml, as plain values: each case breaks one thing in it."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


# -- Archives, through stages/download.py ----------------------------------------------------
@pytest.fixture(scope="module")
def good_archive(tmp_path_factory) -> tuple[Path, str, str]:
    return make_tiny_archive(tmp_path_factory.mktemp("archive"))


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"x"):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


def repack(good: Path, dest: Path, extra=(), drop: str | None = None) -> Path:
    """The good archive's members (less those under `drop`), plus `extra` ones."""
    with tarfile.open(good) as src, tarfile.open(dest, "w:gz") as tar:
        for m in src.getmembers():
            if drop is None or not m.name.startswith(drop):
                tar.addfile(m, src.extractfile(m) if m.isfile() else None)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return dest


@dataclass
class Ctx:
    good: Path
    tmp: Path
    server: ThreadingHTTPServer

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def serve(self, path: str, body: bytes, ctype="application/x-gzip", sent=None) -> str:
        self.server.routes[path] = (ctype, body, len(body) if sent is None else sent)
        return self.url(path)

    def file(self, data: bytes) -> Path:
        path = self.tmp / "bad.tgz"
        path.write_bytes(data)
        return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HTML = b"<!DOCTYPE html><html><body>Please sign in</body></html>"
# id -> (makes the source the stage is pointed at, params.data updates, words in the message)
ARCHIVES: dict[str, tuple[Callable[[Ctx], object], dict, tuple[str, ...]]] = {
    "dotdot member": (lambda c: repack(c.good, c.tmp / "b.tgz", [member("mnist_sample/../../x")]),
                      {}, ("unsafe member", "'..' path")),
    "absolute member": (lambda c: repack(c.good, c.tmp / "b.tgz", [member("/tmp/mnist_x")]),
                        {}, ("unsafe member", "absolute path")),
    "symlink member": (lambda c: repack(c.good, c.tmp / "b.tgz", [
        member("mnist_sample/train/3/s.png", tarfile.SYMTYPE, "/etc/passwd")]),
        {}, ("unsafe member", "symbolic link")),
    "hardlink member": (lambda c: repack(c.good, c.tmp / "b.tgz", [
        member("mnist_sample/train/3/h.png", tarfile.LNKTYPE, "mnist_sample/labels.csv")]),
        {}, ("unsafe member", "hard link")),
    "device member": (lambda c: repack(c.good, c.tmp / "b.tgz", [
        member("mnist_sample/tty", tarfile.CHRTYPE)]), {}, ("unsafe member", "device file")),
    "fifo member": (lambda c: repack(c.good, c.tmp / "b.tgz", [
        member("mnist_sample/fifo", tarfile.FIFOTYPE)]), {}, ("unsafe member", "FIFO")),
    "member outside mnist_sample/": (lambda c: repack(c.good, c.tmp / "b.tgz", [
        member("other/x.png")]), {}, ("unsafe member", "outside mnist_sample/")),
    "duplicate member": (lambda c: repack(c.good, c.tmp / "b.tgz", [
        member("mnist_sample/labels.csv")]), {}, ("unsafe member", "second copy")),
    "too many members": (lambda c: c.good, {"max_members": 10}, ("data.max_members",)),
    "too many bytes": (lambda c: c.good, {"max_bytes": 1000}, ("data.max_bytes",)),
    "truncated archive": (lambda c: c.file(c.good.read_bytes()[: c.good.stat().st_size // 2]),
                          {}, ("truncated or corrupt",)),
    "not an archive": (lambda c: c.file(bytes(range(256)) * 8), {}, ("not a readable .tgz",)),
    "HTML saved as .tgz": (lambda c: c.file(HTML), {}, ("HTML page", "MNIST_SAMPLE_URL")),
    "0-byte file": (lambda c: c.file(b""), {}, ("empty (0 bytes)",)),
    "archive with no members": (lambda c: repack(c.good, c.tmp / "b.tgz", drop=""), {},
                                ("the archive is empty",)),
    "wrong checksum": (lambda c: repack(c.good, c.tmp / "b.tgz", [
        member("mnist_sample/extra.txt")]), {}, ("checksum mismatch", "data.md5")),
    "no labels.csv": (lambda c: repack(c.good, c.tmp / "b.tgz", drop="mnist_sample/labels.csv"),
                      {}, ("no mnist_sample/labels.csv",)),
    "missing file": (lambda c: c.tmp / "nowhere.tgz", {}, ("nowhere.tgz: not found",)),
    "http 404": (lambda c: c.url("/nothing-here.tgz"), {}, ("HTTP 404", "check MNIST_SAMPLE_URL")),
    "http HTML page": (lambda c: c.serve("/login", HTML, "text/html"), {}, ("HTML page",)),
    "http cut short": (lambda c: c.serve("/cut.tgz", c.good.read_bytes(), sent=1000), {},
                       ("download stopped after 1000 of",)),
    "http unreachable": (lambda c: f"http://127.0.0.1:{_free_port()}/mnist_sample.tgz", {},
                         ("cannot reach", "Connection refused")),
}


@pytest.mark.parametrize("case", list(ARCHIVES))
def test_bad_archive_through_the_download_stage(case, good_archive, server, tmp_path):
    good, md5, digest = good_archive
    make, updates, words = ARCHIVES[case]
    source = make(Ctx(good, tmp_path, server))
    params = write_params(tmp_path / "params.yaml",
                          data={"md5": md5, "content_digest": digest, **updates})
    out = tmp_path / "data" / "mnist_sample.tgz"
    out.parent.mkdir(parents=True)
    out.write_text("the previous good download")
    before = snapshot(tmp_path / "data")

    home = tmp_path / "home"  # no fastai cache to fall back on
    r = harness.run_stage("download", params=params, out=out, timeout=300,
                          env={"HOME": str(home), "MNIST_SAMPLE_URL": str(source)})
    assert_says(the_error(r.returncode, r.stderr), *words)
    assert snapshot(tmp_path / "data") == before  # no temp file left, nothing replaced
    assert not Path("/tmp/mnist_x").exists()


# -- Images, through stages/stack.py ---------------------------------------------------------
def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds a few bytes: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b""))


def pil_png(a: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(a)
    (im.convert(mode) if mode else im).save(buf, "PNG")
    return buf.getvalue()


def flip_idat_crc(data: bytes) -> bytes:
    data = bytearray(data)
    data[data.index(b"IEND") - 5] ^= 0xFF  # the last byte of the IDAT chunk's CRC
    return bytes(data)


NOISE = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
# id -> (the bad file's bytes from the good one's, words in the message)
IMAGES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated PNG": (lambda d: d[: len(d) // 2], "truncated PNG"),
    "bad CRC": (flip_idat_crc, "bad CRC in the 'IDAT' chunk"),
    "not a PNG": (lambda d: b"GIF89a this is something else", "not a PNG file"),
    "0-byte PNG": (lambda d: b"", "empty file (0 bytes)"),
    "wrong size 32x32": (lambda d: pil_png(np.zeros((32, 32), np.uint8)),
                         "image is 32x32, expected 28x28"),
    "RGB PNG": (lambda d: pil_png(NOISE, "RGB"), "8-bit RGB, expected 8-bit grayscale"),
    "RGBA PNG": (lambda d: pil_png(NOISE, "RGBA"), "8-bit RGBA, expected 8-bit grayscale"),
    "decompression bomb": (lambda d: png_header_only(100_000, 100_000),
                           "image is 100000x100000, expected 28x28"),
}


@pytest.mark.parametrize("case", list(IMAGES))
def test_bad_image_through_the_stack_stage(case, good_archive, tmp_path):
    """The last valid 7 replaced in an archive that is otherwise the good one."""
    make, why = IMAGES[case]
    archive = tmp_path / "mnist_sample.tgz"
    with tarfile.open(good_archive[0]) as src, tarfile.open(archive, "w:gz") as tar:
        members = src.getmembers()
        name = max(m.name for m in members if m.name.startswith("mnist_sample/valid/7/"))
        for m in members:
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name == name:
                data = make(data)
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
    bad = f"{archive}:{name}"
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.safetensors").write_bytes(b"previous tensors")
    (out / "counts.json").write_text("{}\n")
    before = snapshot(out)

    r = harness.run_stage("stack", archive=archive, tensors=out / "x.safetensors",
                          counts=out / "counts.json", threads=2, timeout=300)
    assert_says(the_error(r.returncode, r.stderr), f"error: {bad}: ", why)
    assert snapshot(out) == before


# -- Params, through the stages that read them -----------------------------------------------
def out_of_range(field) -> list[tuple[str, object, str]]:
    """(id, value, words) for each bound a field declares."""
    cases = []
    for m in field.metadata:
        if hasattr(m, "ge"):
            cases.append(("below minimum", m.ge - 1, f"must be at least {m.ge}"))
        if hasattr(m, "gt"):
            cases.append(("at exclusive minimum", m.gt, f"must be greater than {m.gt}"))
        if hasattr(m, "le"):
            cases.append(("above maximum", m.le + 1, f"must be at most {m.le}"))
        if hasattr(m, "lt"):
            cases.append(("at exclusive maximum", m.lt, f"must be less than {m.lt}"))
        if getattr(m, "pattern", None):
            cases.append(("pattern mismatch", "not/valid", "must match"))
        if getattr(m, "min_length", None):
            cases.append(("empty list", [], f"must list at least {m.min_length} value"))
    if get_origin(field.annotation) is Literal:
        cases.append(("not an allowed value", "tpu", "must be one of"))
    return cases


def wrong_type(field) -> object:
    t = field.annotation
    if get_origin(t) is Literal:
        return 1
    if get_origin(t) is list:
        return "12"
    if get_origin(t) in (Union, UnionType):  # such as bool | Literal["auto"]: neither
        return 12
    return {str: 12, int: "12", float: "0.1", bool: "yes"}[t]


def param_cases() -> list:
    """One case per kind of mistake for every key of every section in params.SECTIONS."""
    cases = []
    for section, model in SECTIONS.items():
        for key, field in model.model_fields.items():
            k = f"{section}.{key}"
            bad = wrong_type(field)
            cases.append(pytest.param(section, {key: bad}, (k, f"got {bad!r}"),
                                      id=f"{k}: wrong type"))
            cases.append(pytest.param(section, {key: None}, (k, "got None"),
                                      id=f"{k}: empty value"))
            cases.append(pytest.param(section, {key: "MISSING"}, (k, "is missing"),
                                      id=f"{k}: missing"))
            for what, value, words in out_of_range(field):
                cases.append(pytest.param(section, {key: value}, (k, words, f"got {value!r}"),
                                          id=f"{k}: {what}"))
        first = next(iter(model.model_fields))
        cases.append(pytest.param(section, {f"{first}s": 1}, (f"{section}.{first}s",
                                  "unknown key", "allowed keys"), id=f"{section}: unknown key"))
    return cases


def readers(section: str) -> list[Stage]:
    """The first stage that declares a section, then its dataset's page, which reads every
    section of its dataset (and is the only reader of its own). The spread's sections are
    read by the spread's page (stages/spread_report.py)."""
    if section in ("spread", "sweep"):
        return [SPREAD_BY_NAME["report"]]
    of = [STAGES_OF[d] for d in DATASETS if any(section in s.params for s in STAGES_OF[d])]
    first = next((s for s in of[0] if section in s.params and s.name != "report"), None)
    # A shared section (train, report) reaches both datasets' pages.
    pages = [s for stages in of for s in stages if s.name == "report"]
    return [*([first] if first else []), *pages]


def prepare_outputs(root: Path, stage: Stage) -> None:
    """Stand-ins for a previous run's outputs at the stage's default paths (relative to root)."""
    for path in stage.all_outputs:
        p = root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"previous {path}\n")


@pytest.fixture
def run_stage(tmp_path, monkeypatch, capsys):
    """Run a stage's command in this process (the same code as a subprocess, no start-up
    cost), in tmp_path, so that its relative paths point there: (exit status, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "leave", lambda: None)  # a stage's process exits when done: not ours
    handler = signal.getsignal(signal.SIGTERM)

    def go(stage: str | Stage, *args: str) -> tuple[int, str]:
        if not isinstance(stage, Stage):
            stage = BY_NAME[stage]
        # Its command, every path relative to tmp_path; `args` come last, so they win.
        args = (*stage.argv()[2:], *args)
        stage = Path(stage.script).stem
        monkeypatch.setattr(sys, "argv", [f"stages/{stage}.py", *args])
        try:
            runpy.run_path(str(ROOT / "stages" / f"{stage}.py"), run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code
        finally:
            signal.signal(signal.SIGTERM, handler)  # cli.run installs its own
        return code, capsys.readouterr().err

    return go


@pytest.mark.parametrize(("section", "change", "words"), param_cases())
def test_bad_param_through_each_stage_that_reads_it(section, change, words, tmp_path, run_stage):
    values = committed()
    into = values
    for part in section.split("."):  # mnist.linear is values["mnist"]["linear"]
        into = into[part]
    for key, value in change.items():
        if value == "MISSING":
            del into[key]
        else:
            into[key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(values))
    for stage in readers(section):
        prepare_outputs(tmp_path, stage)
    before = snapshot(tmp_path)
    for stage in readers(section):
        line = the_error(*run_stage(stage))
        assert_says(line, "error: params.yaml: ", *words)
        assert snapshot(tmp_path) == before, stage


FILE_CASES = {  # id -> (params.yaml text or None for no file, words)
    "YAML that does not parse": ("mlp:\n  lr: [0.1\n", ("is not valid YAML at line",)),
    "empty params file": ("", ("must be a mapping of sections",)),
    "params file is a list": ("- mlp\n", ("must be a mapping of sections",)),
    "unknown section": (None, ("unknown section 'mpl'",)),
    "section missing": (None, ("mlp: section is missing or not a mapping",)),
    "section not a mapping": (None, ("mlp: section is missing or not a mapping",)),
    "no params file": (None, ("params.yaml: not found",)),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_bad_params_file_through_a_stage(case, tmp_path, run_stage):
    text, words = FILE_CASES[case]
    values = committed()
    if case == "unknown section":
        values["mpl"] = values["mlp"]
    elif case == "section missing":
        del values["mlp"]
    elif case == "section not a mapping":
        values["mlp"] = 0.1
    if case != "no params file":
        (tmp_path / "params.yaml").write_text(text if text is not None else
                                              yaml.safe_dump(values))
    prepare_outputs(tmp_path, BY_NAME["mlp"])
    before = snapshot(tmp_path)
    assert_says(the_error(*run_stage("mlp")), "error: params.yaml", *words)
    assert snapshot(tmp_path) == before


def test_bad_param_through_a_real_process(tmp_path):
    """The same check as above in a process of its own, as an engine runs it."""
    params = write_params(tmp_path / "params.yaml", mlp={"epochs": 0})
    prepare_outputs(tmp_path, BY_NAME["mlp"])
    before = snapshot(tmp_path)
    r = harness.run_stage("mlp", params=params, cwd=tmp_path, timeout=300)
    assert the_error(r.returncode, r.stderr) == (
        f"error: {params}: mlp.epochs: must be at least 1 (got 0)")
    assert snapshot(tmp_path) == before


# -- Checkpoints, through predict and the report ---------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """models/ as stages linear and mlp write it, trained on tiny data (both in parallel)."""
    root = tmp_path_factory.mktemp("trained")
    tensors = make_tiny_tensors(root / "tiny.safetensors")
    params = write_params(root / "params.yaml", linear={"epochs": 2}, mlp={"epochs": 2})
    procs = []
    for name in ("linear", "mlp"):
        argv = BY_NAME[name].argv(under=root, params=params, tensors=tensors)
        procs.append(subprocess.Popen(argv, cwd=root, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)}))
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    return root / "models"


class Trap:
    """Unpickling this creates `marker`: proof of whether a pickle was ever executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def bad_checkpoint(case: str, models: Path, dest: Path, marker: Path) -> None:
    """Write models/mlp.safetensors in `dest` as `case` breaks it (the card stays mlp's)."""
    good = (models / "mlp.safetensors").read_bytes()
    path = dest / "mlp.safetensors"
    if case == "truncated checkpoint":
        path.write_bytes(good[: len(good) // 2])
    elif case == "pickle renamed to .safetensors":
        path.write_bytes(pickle.dumps({"0.weight": Trap(marker)}))
    elif case == "torch.save file renamed to .safetensors":
        torch.save({"0.weight": Trap(marker)}, path)
    elif case == "checkpoint of another architecture":
        path.write_bytes((models / "linear.safetensors").read_bytes())


CHECKPOINTS = {  # id -> (words from predict, words from the report)
    "truncated checkpoint": (("mlp.safetensors: not a valid safetensors file",),
                             ("mlp.safetensors: not a valid safetensors file",)),
    "pickle renamed to .safetensors": (("mlp.safetensors: not a valid safetensors file",),
                                       ("mlp.safetensors: not a valid safetensors file",)),
    "torch.save file renamed to .safetensors": (
        ("mlp.safetensors: not a valid safetensors file",),
        ("mlp.safetensors: not a valid safetensors file",)),
    "checkpoint of another architecture": (
        ("mlp.safetensors: ", "does not fit a mlp model", "rerun stage mlp"),
        ("mlp.safetensors: no tensor '0.weight'", "rerun the mlp stage")),
}


def test_the_trap_is_live(tmp_path):
    """Were a checkpoint unpickled, the marker would appear: the checks below mean something."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Trap(marker)))
    assert marker.exists()
    marker.unlink()
    torch.load(io.BytesIO(_torch_bytes(Trap(marker))), weights_only=False)
    assert marker.exists()


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_bad_checkpoint_through_predict(case, trained, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "mlp.json").write_bytes((trained / "mlp.json").read_bytes())
    marker = tmp_path / "pwned"
    bad_checkpoint(case, trained, models, marker)
    image = tmp_path / "digit.png"
    Image.fromarray(NOISE).save(image)
    before = snapshot(tmp_path)
    r = run("-m", "mnist_basics", "predict", image, "--model", "mlp", "--models-dir", models)
    line = the_error(r.returncode, r.stderr)
    assert_says(line, *CHECKPOINTS[case][0])
    assert (r.stdout, r.stderr) == ("", line + "\n")
    assert not marker.exists()  # never unpickled
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_bad_checkpoint_through_the_report(case, trained, tmp_path):
    write_params(tmp_path / "params.yaml")
    (tmp_path / "models").mkdir()
    marker = tmp_path / "pwned"
    bad_checkpoint(case, trained, tmp_path / "models", marker)
    prepare_outputs(tmp_path, BY_NAME["report"])
    before = snapshot(tmp_path)
    r = harness.run_stage("report", cwd=tmp_path, timeout=300)  # every other input is absent
    assert_says(the_error(r.returncode, r.stderr), *CHECKPOINTS[case][1])
    assert not marker.exists()
    assert snapshot(tmp_path) == before


def unsafe_loads(source: str, name: str) -> list[str]:
    """Code that could run a pickle: torch.load without weights_only=True, pickle imports,
    np.load(allow_pickle=True)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            found += [f"{name}:{node.lineno} imports {n}" for n in names
                      if n.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle")]
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        target = ast.unparse(node.func)
        safe = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value
        if target == "torch.load" and not safe:
            found.append(f"{name}:{node.lineno} torch.load without weights_only=True")
        pickled = isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value
        if target.endswith(("np.load", "numpy.load")) and pickled:
            found.append(f"{name}:{node.lineno} np.load(allow_pickle=True)")
    return found


def test_no_code_path_can_unpickle():
    files = [*(ROOT / "mnist_basics").rglob("*.py"), *(ROOT / "stages").glob("*.py")]
    assert len(files) > 10
    assert [f for p in files for f in unsafe_loads(p.read_text(), p.name)] == []
    # The scan finds what it looks for.
    assert len(unsafe_loads("import pickle\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
                            "np.load(p, allow_pickle=True)\n", "probe")) == 4
    assert unsafe_loads("torch.load(p, weights_only=True)\nnp.load(p)\n", "probe") == []


# -- Your own picture, through predict -------------------------------------------------------
def huge_png(path: Path, side: int) -> Path:
    """A real side x side black PNG (rows streamed through zlib: it never exists in memory)."""
    z = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
                     + png_chunk(b"IEND", b""))
    return path


def text_file(folder: Path) -> Path:
    (folder / "notes.png").write_text("a shopping list\n")
    return folder / "notes.png"


def one_pixel(folder: Path) -> Path:
    Image.new("L", (1, 1)).save(folder / "dot.png")
    return folder / "dot.png"


PICTURES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "missing image": (lambda d: d / "nowhere.png", ("nowhere.png: no such file",)),
    "a directory": (lambda d: d, ("is a directory, not an image",)),
    "not an image": (text_file, ("notes.png: not a PNG or JPEG image",)),
    "1x1 image": (one_pixel, ("dot.png: 1x1 pixels; each side must be 8 to 4096",)),
    "10000x10000 image": (lambda d: huge_png(d / "huge.png", 10_000),
                          ("huge.png: 10000x10000 pixels; each side must be 8 to 4096",)),
}


@pytest.mark.parametrize("case", list(PICTURES))
def test_bad_picture_through_predict(case, trained, tmp_path):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    path = PICTURES[case][0](pictures)
    before = snapshot(trained)
    r = run("-m", "mnist_basics", "predict", path, "--model", "mlp", "--models-dir", trained)
    line = the_error(r.returncode, r.stderr)
    assert_says(line, *PICTURES[case][1])
    assert (r.stdout, r.stderr) == ("", line + "\n")  # not even a library's warning
    assert snapshot(trained) == before


# -- The table -------------------------------------------------------------------------------
def test_the_table_lists_every_case():
    """tests/BAD_INPUTS.md names every case above (params: every kind of mistake)."""
    text = TABLE.read_text()
    kinds = {p.id.split(": ", 1)[1] for p in param_cases()}
    for case in [*ARCHIVES, *IMAGES, *FILE_CASES, *CHECKPOINTS, *PICTURES, *kinds]:
        assert f"| {case} |" in text, case
