"""Fetch fastai's MNIST_SAMPLE archive, verify it, and extract it safely (stage `download`).

    python stages/download.py                      # from params.yaml data.url
    MNIST_SAMPLE_URL=/path/to/mnist_sample.tgz python stages/download.py   # offline

Where the archive comes from, first match wins:
1. MNIST_SAMPLE_URL, when set: a plain path, a file:// URL or an http(s) URL. It is only an
   environment variable, so pointing it elsewhere never changes the stage in DVC's eyes.
2. fastai's own cache, ~/.fastai/archive/mnist_sample.tgz, when it is there and valid (no
   network). An invalid copy is skipped with a log line.
3. params.yaml `data.url` (fastai's S3 bucket), streamed with `requests`.

An archive is accepted when its md5 is `data.md5` (the official file) or when its extracted
tree has `data.content_digest` (see `content_digest`; this accepts faithful re-packs).

Extraction is defensive: every member is checked before anything is written (regular files
and folders only, all under `mnist_sample/`, no links, devices, absolute or `..` paths, at
most `data.max_members` entries and `data.max_bytes` bytes), then extracted with tarfile's
"data" filter into a temporary folder beside the output. Only a complete, verified tree is
renamed into place, so a failure leaves the previous output untouched and no temp folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from mnist_basics import PipelineError
from mnist_basics.artifacts import replace_dir, temp_dir
from mnist_basics.params import Data

log = logging.getLogger(__name__)

ENV = "MNIST_SAMPLE_URL"
TOP = "mnist_sample"  # the archive's one top-level folder
CLASS_DIRS = ("train/3", "train/7", "valid/3", "valid/7")
LABELS = "labels.csv"
TIMEOUT = (10, 60)  # seconds to connect, and at most between two chunks of the body
CHUNK = 1 << 16
OFFLINE_HINT = (
    f"to work offline, set {ENV} to a copy of mnist_sample.tgz (a path or file:// URL) "
    "or put one at ~/.fastai/archive/mnist_sample.tgz"
)


def fastai_archive() -> Path:
    """Where fastai's `untar_data(URLs.MNIST_SAMPLE)` keeps the archive it downloaded."""
    return Path.home() / ".fastai" / "archive" / "mnist_sample.tgz"


# -- Checksums -------------------------------------------------------------------------------


def md5sum(path: str | Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def content_digest(folder: str | Path) -> str:
    """sha256 of `<sha256 of file>  <relative path>\\n` for every regular file, sorted by path.

    The same lines `sha256sum` prints, so it is independent of how the archive was packed
    (order, timestamps, owners, gzip level) and can be checked by hand, in mnist_sample/:
    `find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs sha256sum | sha256sum`.
    """
    folder = Path(folder)
    rels = []
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                rels.append(path.relative_to(folder).as_posix())
    h = hashlib.sha256()
    for rel in sorted(rels):
        digest = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
        h.update(f"{digest}  {rel}\n".encode())
    return h.hexdigest()


# -- Sources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One place the archive may come from, and the knob that names it (for messages)."""

    location: str  # a path or URL
    knob: str  # what the user edits to change it

    @property
    def is_http(self) -> bool:
        return self.location.startswith(("http://", "https://"))


def local_path(source: Source) -> Path:
    """The file a plain path or file:// URL points to."""
    loc = source.location
    if not loc.startswith("file:"):
        return Path(loc).expanduser()
    url = urlparse(loc)
    if url.netloc not in ("", "localhost"):
        raise PipelineError(f"{loc}: a file:// URL must name a local file; check {source.knob}")
    return Path(unquote(url.path))


def _reason(err: Exception) -> str:
    """The short cause inside requests' long exception text, e.g. 'Connection refused'."""
    found = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", str(err))
    return found[-1].strip() if found else type(err).__name__


def fetch(source: Source, dest: Path, max_bytes: int) -> None:
    """Stream an http(s) URL into `dest`, with a progress bar on a terminal."""
    import requests
    from tqdm import tqdm

    url = source.location
    log.info("downloading %s", url)
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT) as resp:
            if resp.status_code != 200:
                raise PipelineError(
                    f"{url}: HTTP {resp.status_code} {resp.reason}; check {source.knob}"
                )
            if resp.headers.get("Content-Type", "").startswith("text/html"):
                raise PipelineError(
                    f"{url}: got an HTML page, not a .tgz archive (a proxy or login page?); "
                    f"check {source.knob}"
                )
            # Content-Encoding would make requests decode the body, so its length won't match.
            length = resp.headers.get("Content-Length", "")
            expected = None
            if length.isdigit() and "Content-Encoding" not in resp.headers:
                expected = int(length)
            if expected and expected > max_bytes:
                raise PipelineError(
                    f"{url}: {expected} bytes is more than data.max_bytes ({max_bytes}); "
                    f"check {source.knob}"
                )
            got = 0
            with open(dest, "wb") as f, tqdm(
                total=expected, desc="mnist_sample.tgz", unit="B", unit_scale=True,
                leave=False, disable=not sys.stderr.isatty(),
            ) as bar:
                try:
                    for chunk in resp.iter_content(CHUNK):
                        got += len(chunk)
                        if got > max_bytes:
                            raise PipelineError(
                                f"{url}: more than data.max_bytes ({max_bytes}) bytes; "
                                f"check {source.knob}"
                            )
                        f.write(chunk)
                        bar.update(len(chunk))
                except (requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ConnectionError):
                    got = max(got, resp.raw.tell())  # the bytes of a chunk cut short count too
                    raise PipelineError(
                        f"{url}: download stopped after {got} of {expected or '?'} bytes; "
                        "try again"
                    ) from None
            if expected is not None and got != expected:
                raise PipelineError(
                    f"{url}: download stopped after {got} of {expected} bytes; try again"
                )
    except requests.exceptions.Timeout:
        raise PipelineError(
            f"cannot reach {url} (timed out); {OFFLINE_HINT}"
        ) from None
    except requests.exceptions.ConnectionError as e:
        raise PipelineError(f"cannot reach {url} ({_reason(e)}); {OFFLINE_HINT}") from None
    except requests.exceptions.RequestException as e:
        raise PipelineError(f"{url}: {type(e).__name__}: {_reason(e)}; {OFFLINE_HINT}") from None


# -- Checking and extracting -----------------------------------------------------------------


def _refuse_html(archive: Path, name: str, knob: str) -> None:
    """A saved error or login page is the most common 'archive' that isn't one."""
    with open(archive, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        raise PipelineError(
            f"{name}: is an HTML page, not a .tgz archive (a proxy or login page?); check {knob}"
        )


def check_members(tar: tarfile.TarFile, data: Data, name: str) -> list[tarfile.TarInfo]:
    """Every member, once each is known to be safe to extract; raises on the first that isn't."""
    members, total = [], 0
    for m in _iter_members(tar, name):
        if len(members) >= data.max_members:
            raise PipelineError(
                f"{name}: more than data.max_members ({data.max_members}) entries; "
                "not the MNIST_SAMPLE archive, refusing to extract"
            )
        path = PurePosixPath(m.name)
        what = None
        if m.issym() or m.islnk():
            what = f"a {'symbolic' if m.issym() else 'hard'} link to {m.linkname!r}"
        elif not (m.isfile() or m.isdir()):
            what = "a device file or FIFO"
        elif m.name.startswith("/") or path.is_absolute():
            what = "an absolute path"
        elif ".." in path.parts:
            what = "a '..' path"
        elif not path.parts or path.parts[0] != TOP or (m.isfile() and len(path.parts) < 2):
            what = f"outside {TOP}/"
        if what:
            raise PipelineError(
                f"{name}: unsafe member {m.name!r} ({what}); refusing to extract, "
                "use the official archive"
            )
        total += m.size if m.isfile() else 0
        if total > data.max_bytes:
            raise PipelineError(
                f"{name}: more than data.max_bytes ({data.max_bytes}) bytes once extracted; "
                "not the MNIST_SAMPLE archive, refusing to extract"
            )
        members.append(m)
    if not members:
        raise PipelineError(f"{name}: the archive is empty; fetch a fresh copy")
    return members


def _iter_members(tar: tarfile.TarFile, name: str) -> Iterator[tarfile.TarInfo]:
    try:
        yield from tar
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise PipelineError(
            f"{name}: truncated or corrupt archive ({e}); fetch a fresh copy"
        ) from None


def extract(archive: Path, dest: Path, data: Data, name: str, knob: str) -> Path:
    """Check and extract `archive` into the empty folder `dest`; returns dest/mnist_sample."""
    if archive.stat().st_size == 0:
        raise PipelineError(f"{name}: the archive is empty (0 bytes); fetch a fresh copy")
    _refuse_html(archive, name, knob)
    try:
        tar = tarfile.open(archive, "r:*")  # gzip as published; any tar a re-pack may use
    except (tarfile.TarError, EOFError, zlib.error, OSError):
        raise PipelineError(
            f"{name}: not a readable .tgz archive; fetch a fresh copy or check {knob}"
        ) from None
    with tar:
        members = check_members(tar, data, name)
        try:
            tar.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as e:  # our checks should have caught it first
            raise PipelineError(f"{name}: unsafe member ({e}); refusing to extract") from None
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise PipelineError(
                f"{name}: truncated or corrupt archive ({e}); fetch a fresh copy"
            ) from None
        except OSError as e:
            raise PipelineError(f"{name}: cannot extract into {dest}: {e.strerror or e}") from None
    return dest / TOP


def check_layout(root: Path, name: str, knob: str = "the source") -> dict[str, int]:
    """PNGs per class folder; raises unless the tree looks like MNIST_SAMPLE."""
    hint = f"not the MNIST_SAMPLE archive? check {knob}"
    if not (root / LABELS).is_file():
        raise PipelineError(f"{name}: no {TOP}/{LABELS}; {hint}")
    counts = {}
    for d in CLASS_DIRS:
        folder = root / d
        n = sum(1 for p in folder.glob("*.png") if p.is_file()) if folder.is_dir() else 0
        if n == 0:
            raise PipelineError(f"{name}: no PNGs in {TOP}/{d}/; {hint}")
        counts[d] = n
    return counts


def verify(archive: Path, root: Path, data: Data, name: str) -> str:
    """Which check accepted the archive: 'md5' or 'content digest'; raises if neither."""
    md5 = md5sum(archive)
    if md5 == data.md5:
        return "md5"
    digest = content_digest(root)
    if digest == data.content_digest:
        return "content digest"
    raise PipelineError(
        f"{name}: checksum mismatch: md5 {md5} is not data.md5 and content digest "
        f"{digest} is not data.content_digest; fetch a fresh copy (or, if the data really "
        "changed, update both in params.yaml)"
    )


# -- The stage -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Downloaded:
    source: str  # the path or URL the archive came from
    verified_by: str  # "md5" or "content digest"
    counts: dict[str, int]  # PNGs per class folder, e.g. {"train/3": 6131, ...}


def sources(data: Data) -> list[Source]:
    """Where to look, in order (see the module docstring)."""
    override = os.environ.get(ENV, "").strip()
    if override:
        return [Source(override, ENV)]
    out = []
    cache = fastai_archive()
    if cache.is_file():
        out.append(Source(str(cache), "the fastai cache"))
    out.append(Source(data.url, "data.url in params.yaml"))
    return out


def _install(source: Source, out: Path, data: Data) -> Downloaded:
    work = temp_dir(out)  # removes what a killed earlier run left there
    try:
        if source.is_http:
            archive = work / "archive.tgz"
            fetch(source, archive, data.max_bytes)
            name = source.location
        else:
            archive = local_path(source)
            name = str(archive)
            if not archive.is_file():
                raise PipelineError(
                    f"{name}: not found; point {source.knob} at a copy of mnist_sample.tgz"
                )
            log.info("using %s (from %s)", archive, source.knob)
        extracted = work / "extracted"
        extracted.mkdir()
        root = extract(archive, extracted, data, name, source.knob)
        counts = check_layout(root, name, source.knob)
        verified_by = verify(archive, root, data, name)
        replace_dir(root, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Downloaded(source.location, verified_by, counts)


def download(data: Data, out: str | Path) -> Downloaded:
    """Put a verified MNIST_SAMPLE tree at `out` (train/{3,7}, valid/{3,7}, labels.csv)."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PipelineError(f"cannot write {out}: {e.strerror or e}") from None
    todo = sources(data)
    for source in todo[:-1]:  # only the fastai cache comes before a last resort
        try:
            return _report(_install(source, out, data), out)
        except PipelineError as e:
            log.info("ignoring %s: %s", source.knob, e)
    return _report(_install(todo[-1], out, data), out)


def _report(result: Downloaded, out: Path) -> Downloaded:
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    log.info("wrote %s (%s; verified by %s)", out, counts, result.verified_by)
    return result
