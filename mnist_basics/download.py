"""Fetch fastai's MNIST_SAMPLE archive and verify it (stage `download`).

    python stages/download.py                      # from params.yaml data.url
    MNIST_SAMPLE_URL=/path/to/mnist_sample.tgz python stages/download.py   # offline

Where the archive comes from, first match wins:
1. MNIST_SAMPLE_URL, when set: a plain path, a file:// URL or an http(s) URL. It is only an
   environment variable, so pointing it elsewhere never changes the stage in DVC's eyes.
2. fastai's own cache, ~/.fastai/archive/mnist_sample.tgz, when it is there and valid (no
   network). An invalid copy is skipped with a log line.
3. params.yaml `data.url` (fastai's S3 bucket), streamed with `requests`.

An archive is accepted when its md5 is `data.md5` (the official file) or when its files
have `data.content_digest` (see `content_digest`; this accepts faithful re-packs).

The archive is read in memory and never extracted: the stack stage reads its PNGs straight
from it, so DVC caches one file rather than 14,434. What is written is a canonical re-pack
of the verified files (`canonical_archive`): whichever faithful copy it came from, the
official file or a re-pack, the output has the same bytes, so the md5 that dvc.lock records
for it holds for everyone. Every member is still vetted, because
the next stage trusts what this one accepted: regular files and folders only, all under
`mnist_sample/`, no links, devices, absolute or `..` paths or duplicates, at most
`data.max_members` entries and `data.max_bytes` bytes once unpacked, and the expected class
folders. Only a verified archive is written, atomically, so a failure leaves the previous
output untouched.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import re
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from mnist_basics import PipelineError
from mnist_basics.artifacts import atomic_path
from mnist_basics.data import CLASS_DIRS, LABELS, TOP, class_dir, open_archive, reading
from mnist_basics.params import Data

log = logging.getLogger(__name__)

ENV = "MNIST_SAMPLE_URL"
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


def md5sum(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


def content_digest(files: Mapping[str, bytes]) -> str:
    """sha256 of `<sha256 of file>  <path under mnist_sample/>\n` per file, sorted by path.

    The same lines `sha256sum` prints, so it is independent of how the archive was packed
    (order, timestamps, owners, gzip level) and can be checked by hand in an extracted copy:
    `cd mnist_sample && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs sha256sum |
    sha256sum`.
    """
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{hashlib.sha256(files[rel]).hexdigest()}  {rel}\n".encode())
    return h.hexdigest()


def canonical_archive(files: Mapping[str, bytes]) -> bytes:
    """The files as a .tgz whose bytes depend on their paths and contents alone.

    Regular files only (tar makes the folders on extraction), sorted by path under
    mnist_sample/, each mode 0644, owned by 0:0 with no user or group name, dated 1970; gzip
    at a fixed level with no name and a zero timestamp in its header.
    """
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(files):
            info = tarfile.TarInfo(f"{TOP}/{rel}")
            info.size, info.mode, info.mtime = len(files[rel]), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[rel]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=6, mtime=0) as gz:
        gz.write(tar_bytes.getvalue())
    return out.getvalue()


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


# -- Checking --------------------------------------------------------------------------------


def _refuse_html(blob: bytes, name: str, knob: str) -> None:
    """A saved error or login page is the most common 'archive' that isn't one."""
    head = blob[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        raise PipelineError(
            f"{name}: is an HTML page, not a .tgz archive (a proxy or login page?); check {knob}"
        )


def check_members(tar: tarfile.TarFile, data: Data, name: str) -> dict[str, bytes]:
    """Every regular file, by its path under mnist_sample/; raises on the first bad member."""
    files: dict[str, bytes] = {}
    count = total = 0
    for m in tar:  # each header is checked before its bytes are read
        count += 1
        if count > data.max_members:
            raise PipelineError(
                f"{name}: more than data.max_members ({data.max_members}) entries; "
                "not the MNIST_SAMPLE archive, refusing it"
            )
        path = PurePosixPath(m.name)
        rel = PurePosixPath(*path.parts[1:]).as_posix() if len(path.parts) > 1 else ""
        what = None
        if m.issym() or m.islnk():
            what = f"a {'symbolic' if m.issym() else 'hard'} link to {m.linkname!r}"
        elif not (m.isfile() or m.isdir()):
            what = "a device file or FIFO"
        elif m.name.startswith("/") or path.is_absolute():
            what = "an absolute path"
        elif ".." in path.parts:
            what = "a '..' path"
        elif not path.parts or path.parts[0] != TOP or (m.isfile() and not rel):
            what = f"outside {TOP}/"
        elif m.isfile() and rel in files:
            what = "a second copy of an earlier member"
        if what:
            raise PipelineError(
                f"{name}: unsafe member {m.name!r} ({what}); refusing the archive, "
                "use the official one"
            )
        total += m.size if m.isfile() else 0
        if total > data.max_bytes:
            raise PipelineError(
                f"{name}: more than data.max_bytes ({data.max_bytes}) bytes once unpacked; "
                "not the MNIST_SAMPLE archive, refusing it"
            )
        if m.isfile():
            files[rel] = tar.extractfile(m).read()
    if not count:
        raise PipelineError(f"{name}: the archive is empty; fetch a fresh copy")
    return files


def check_layout(files: Mapping[str, bytes], name: str, knob: str = "the source") -> dict[str, int]:
    """PNGs per class folder; raises unless the files look like MNIST_SAMPLE."""
    hint = f"not the MNIST_SAMPLE archive? check {knob}"
    if LABELS not in files:
        raise PipelineError(f"{name}: no {TOP}/{LABELS}; {hint}")
    counts = dict.fromkeys(CLASS_DIRS, 0)
    for rel in files:  # the PNGs the stack stage will read
        folder = class_dir(f"{TOP}/{rel}")
        if folder is not None:
            counts[folder] += 1
    for d, n in counts.items():
        if n == 0:
            raise PipelineError(f"{name}: no PNGs in {TOP}/{d}/; {hint}")
    return counts


@dataclass(frozen=True)
class Verified:
    verified_by: str  # "md5" or "content digest"
    counts: dict[str, int]  # PNGs per class folder
    files: dict[str, bytes]  # every regular file, by its path under mnist_sample/


def check_archive(blob: bytes, data: Data, name: str, knob: str) -> Verified:
    """The archive's files, once it passes every check; raises on the first that fails."""
    if not blob:
        raise PipelineError(f"{name}: the archive is empty (0 bytes); fetch a fresh copy")
    _refuse_html(blob, name, knob)
    with open_archive(blob, name, f"fetch a fresh copy or check {knob}") as tar, reading(name):
        files = check_members(tar, data, name)
    counts = check_layout(files, name, knob)
    md5 = md5sum(blob)
    if md5 == data.md5:
        return Verified("md5", counts, files)
    digest = content_digest(files)
    if digest == data.content_digest:
        return Verified("content digest", counts, files)
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


def _read_local(source: Source, max_bytes: int) -> tuple[str, bytes]:
    """(the file's path, for messages; its bytes)."""
    archive = local_path(source)
    name = str(archive)
    if not archive.is_file():
        raise PipelineError(f"{name}: not found; point {source.knob} at a copy of mnist_sample.tgz")
    log.info("using %s (from %s)", archive, source.knob)
    try:
        size = archive.stat().st_size
        if size > max_bytes:
            raise PipelineError(
                f"{name}: {size} bytes is more than data.max_bytes ({max_bytes}); "
                f"check {source.knob}"
            )
        return name, archive.read_bytes()
    except OSError as e:
        raise PipelineError(f"{name}: cannot read ({e.strerror or e})") from None


def _install(source: Source, out: Path, data: Data) -> Downloaded:
    if source.is_http:
        name = source.location
        with atomic_path(out) as tmp:  # the download's own bytes never reach `out`
            fetch(source, tmp, data.max_bytes)
            checked = check_archive(tmp.read_bytes(), data, name, source.knob)
            tmp.write_bytes(canonical_archive(checked.files))
    else:
        name, blob = _read_local(source, data.max_bytes)
        checked = check_archive(blob, data, name, source.knob)
        with atomic_path(out) as tmp:
            tmp.write_bytes(canonical_archive(checked.files))
    return Downloaded(source.location, checked.verified_by, checked.counts)


def download(data: Data, out: str | Path) -> Downloaded:
    """Put a verified copy of mnist_sample.tgz at `out`."""
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
