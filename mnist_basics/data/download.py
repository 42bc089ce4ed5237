"""Fetch fastai's MNIST_SAMPLE archive and verify it (stage `download`).

    python stages/download.py                      # from params.yaml data.url
    MNIST_SAMPLE_URL=/path/to/mnist_sample.tgz python stages/download.py   # offline

The full MNIST (`data.MNIST`: fastai's mnist_png.tgz) comes the same way, with its own
names: MNIST_URL, ~/.fastai/archive/mnist_png.tgz, params.yaml `mnist.data`, all ten digits
under `mnist_png/` and no labels file. Every function takes the `layout` to check against;
the defaults are MNIST_SAMPLE's.

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
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from mnist_basics import PipelineError
from mnist_basics.artifacts import atomic_path
from mnist_basics.data.stack import (
    MNIST_SAMPLE,
    class_dir,
    members,
    open_archive,
    reading,
)
from mnist_basics.params import Data
from mnist_basics.registry import DATASETS, Layout

log = logging.getLogger(__name__)

TIMEOUT = (10, 60)  # seconds to connect, and at most between two chunks of the body
CHUNK = 1 << 16


def offline_hint(layout: Layout = MNIST_SAMPLE) -> str:
    return (f"to work offline, set {layout.env} to a copy of {layout.archive} "
            f"(a path or file:// URL) or put one at ~/.fastai/archive/{layout.archive}")


ENV = MNIST_SAMPLE.env
OFFLINE_HINT = offline_hint()


def fastai_archive(layout: Layout = MNIST_SAMPLE) -> Path:
    """Where fastai's `untar_data(URLs.MNIST_SAMPLE)` keeps the archive it downloaded."""
    return Path.home() / ".fastai" / "archive" / layout.archive


# -- Checksums -------------------------------------------------------------------------------


def md5sum(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


def content_digest(files: Mapping[str, bytes]) -> str:
    """sha256 of `<sha256 of file>  <path under mnist_sample/>\n` per file, sorted by path
    (the full MNIST's paths are under mnist_png/).

    The same lines `sha256sum` prints, so it is independent of how the archive was packed
    (order, timestamps, owners, gzip level) and can be checked by hand in an extracted copy:
    `cd mnist_sample && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs sha256sum |
    sha256sum`.
    """
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{hashlib.sha256(files[rel]).hexdigest()}  {rel}\n".encode())
    return h.hexdigest()


def canonical_archive(files: Mapping[str, bytes], layout: Layout = MNIST_SAMPLE) -> bytes:
    """The files as a .tgz whose bytes depend on their paths and contents alone.

    Regular files only (tar makes the folders on extraction), sorted by path under
    mnist_sample/ (`layout.top`), each mode 0644, owned by 0:0 with no user or group name,
    dated 1970; gzip at a fixed level with no name and a zero timestamp in its header.
    """
    out = io.BytesIO()
    write_canonical(files, out, layout)
    return out.getvalue()


def write_canonical(files: Mapping[str, bytes], fileobj: BinaryIO,
                    layout: Layout = MNIST_SAMPLE) -> None:
    """`canonical_archive`'s bytes, written to `fileobj` as the tar is made: the full
    MNIST's 70,000 members would make a 70 MB tar in memory before it is compressed."""
    with gzip.GzipFile(filename="", mode="wb", fileobj=fileobj, compresslevel=6, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(files):
            info = tarfile.TarInfo(f"{layout.top}/{rel}")
            info.size, info.mode, info.mtime = len(files[rel]), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[rel]))


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


def fetch(source: Source, dest: Path, max_bytes: int, layout: Layout = MNIST_SAMPLE) -> None:
    """Stream an http(s) URL into `dest`, with a progress bar on a terminal."""
    import requests
    from tqdm import tqdm

    url, cap = source.location, f"{layout.data_section}.max_bytes"
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
                    f"{url}: {expected} bytes is more than {cap} ({max_bytes}); "
                    f"check {source.knob}"
                )
            got = 0
            with open(dest, "wb") as f, tqdm(
                total=expected, desc=layout.archive, unit="B", unit_scale=True,
                leave=False, disable=not sys.stderr.isatty(),
            ) as bar:
                try:
                    for chunk in resp.iter_content(CHUNK):
                        got += len(chunk)
                        if got > max_bytes:
                            raise PipelineError(
                                f"{url}: more than {cap} ({max_bytes}) bytes; "
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
            f"cannot reach {url} (timed out); {offline_hint(layout)}"
        ) from None
    except requests.exceptions.ConnectionError as e:
        raise PipelineError(
            f"cannot reach {url} ({_reason(e)}); {offline_hint(layout)}") from None
    except requests.exceptions.RequestException as e:
        raise PipelineError(
            f"{url}: {type(e).__name__}: {_reason(e)}; {offline_hint(layout)}") from None


# -- Checking --------------------------------------------------------------------------------


def _refuse_html(blob: bytes, name: str, knob: str) -> None:
    """A saved error or login page is the most common 'archive' that isn't one."""
    head = blob[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        raise PipelineError(
            f"{name}: is an HTML page, not a .tgz archive (a proxy or login page?); check {knob}"
        )


def check_members(tar: tarfile.TarFile, data: Data, name: str, layout: Layout = MNIST_SAMPLE,
                  knob: str = "the source") -> dict[str, bytes]:
    """Every regular file, by its path under mnist_sample/ (`layout.top`); raises on the
    first bad member."""
    files: dict[str, bytes] = {}
    count = total = 0
    top, section = layout.top, layout.data_section
    for m in members(tar):  # each header is checked before its bytes are read
        count += 1
        if count > data.max_members:
            raise PipelineError(
                f"{name}: more than {section}.max_members ({data.max_members}) entries; "
                f"not the {layout.title} archive, refusing it"
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
        elif not path.parts or path.parts[0] != top or (m.isfile() and not rel):
            first = path.parts[0] if path.parts else ""
            other = next((o for o in DATASETS.values() if o.top == first != top), None)
            if other:  # a whole other dataset, most likely: say so rather than "unsafe"
                raise PipelineError(
                    f"{name}: {m.name!r} is from the {other.title} archive ({other.top}/), "
                    f"not the {layout.title} one ({top}/); check {knob}"
                )
            what = f"outside {top}/"
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
                f"{name}: more than {section}.max_bytes ({data.max_bytes}) bytes once unpacked; "
                f"not the {layout.title} archive, refusing it"
            )
        if m.isfile():
            files[rel] = tar.extractfile(m).read()
    if not count:
        raise PipelineError(f"{name}: the archive is empty; fetch a fresh copy")
    return files


def check_layout(files: Mapping[str, bytes], name: str, knob: str = "the source",
                 layout: Layout = MNIST_SAMPLE) -> dict[str, int]:
    """PNGs per class folder; raises unless the files look like MNIST_SAMPLE (`layout`)."""
    top, hint = layout.top, f"not the {layout.title} archive? check {knob}"
    if layout.labels_file is not None and layout.labels_file not in files:
        raise PipelineError(f"{name}: no {top}/{layout.labels_file}; {hint}")
    counts = dict.fromkeys(layout.class_dirs, 0)
    for rel in files:  # the PNGs the stack stage will read
        folder = class_dir(f"{top}/{rel}", layout)
        if folder is not None:
            counts[folder] += 1
    for d, n in counts.items():
        if n == 0:
            raise PipelineError(f"{name}: no PNGs in {top}/{d}/; {hint}")
    return counts


@dataclass(frozen=True)
class Verified:
    verified_by: str  # "md5" or "content digest"
    counts: dict[str, int]  # PNGs per class folder
    files: dict[str, bytes]  # every regular file, by its path under the layout's top folder


def check_archive(blob: bytes, data: Data, name: str, knob: str,
                  layout: Layout = MNIST_SAMPLE) -> Verified:
    """The archive's files, once it passes every check; raises on the first that fails."""
    if not blob:
        raise PipelineError(f"{name}: the archive is empty (0 bytes); fetch a fresh copy")
    _refuse_html(blob, name, knob)
    with open_archive(blob, name, f"fetch a fresh copy or check {knob}") as tar, reading(name):
        files = check_members(tar, data, name, layout, knob)
    counts = check_layout(files, name, knob, layout)
    md5 = md5sum(blob)
    if md5 == data.md5:
        return Verified("md5", counts, files)
    digest = content_digest(files)
    if digest == data.content_digest:
        return Verified("content digest", counts, files)
    section = layout.data_section
    raise PipelineError(
        f"{name}: checksum mismatch: md5 {md5} is not {section}.md5 and content digest "
        f"{digest} is not {section}.content_digest; fetch a fresh copy (or, if the data really "
        "changed, update both in params.yaml)"
    )


# -- The stage -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Downloaded:
    source: str  # the path or URL the archive came from
    verified_by: str  # "md5" or "content digest"
    counts: dict[str, int]  # PNGs per class folder, e.g. {"train/3": 6131, ...}


def sources(data: Data, layout: Layout = MNIST_SAMPLE) -> list[Source]:
    """Where to look, in order (see the module docstring)."""
    override = os.environ.get(layout.env, "").strip()
    if override:
        return [Source(override, layout.env)]
    out = []
    cache = fastai_archive(layout)
    if cache.is_file():
        out.append(Source(str(cache), "the fastai cache"))
    out.append(Source(data.url, f"{layout.data_section}.url in params.yaml"))
    return out


def _read_local(source: Source, max_bytes: int, layout: Layout) -> tuple[str, bytes]:
    """(the file's path, for messages; its bytes)."""
    archive = local_path(source)
    name = str(archive)
    if not archive.is_file():
        raise PipelineError(f"{name}: not found; point {source.knob} at a copy of {layout.archive}")
    log.info("using %s (from %s)", archive, source.knob)
    try:
        size = archive.stat().st_size
        if size > max_bytes:
            raise PipelineError(
                f"{name}: {size} bytes is more than {layout.data_section}.max_bytes "
                f"({max_bytes}); check {source.knob}"
            )
        return name, archive.read_bytes()
    except OSError as e:
        raise PipelineError(f"{name}: cannot read ({e.strerror or e})") from None


def _install(source: Source, out: Path, data: Data, layout: Layout) -> Downloaded:
    if source.is_http:
        name = source.location
        with atomic_path(out) as tmp:  # the download's own bytes never reach `out`
            fetch(source, tmp, data.max_bytes, layout)
            checked = check_archive(tmp.read_bytes(), data, name, source.knob, layout)
            with open(tmp, "wb") as f:
                write_canonical(checked.files, f, layout)
    else:
        name, blob = _read_local(source, data.max_bytes, layout)
        checked = check_archive(blob, data, name, source.knob, layout)
        del blob  # the full MNIST's 15 MB, no longer needed while the re-pack is written
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            write_canonical(checked.files, f, layout)
    return Downloaded(source.location, checked.verified_by, checked.counts)


def download(data: Data, out: str | Path, layout: Layout = MNIST_SAMPLE) -> Downloaded:
    """Put a verified copy of mnist_sample.tgz (`layout.archive`) at `out`."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PipelineError(f"cannot write {out}: {e.strerror or e}") from None
    todo = sources(data, layout)
    for source in todo[:-1]:  # only the fastai cache comes before a last resort
        try:
            return _report(_install(source, out, data, layout), out)
        except PipelineError as e:
            log.info("ignoring %s: %s", source.knob, e)
    return _report(_install(todo[-1], out, data, layout), out)


def _report(result: Downloaded, out: Path) -> Downloaded:
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    log.info("wrote %s (%s; verified by %s)", out, counts, result.verified_by)
    return result
