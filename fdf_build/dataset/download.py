"""Downloading a published FDF256 copy: verified, resumable, idempotent, safely extracted.

Each file of a manifest is streamed to ``<name>.part`` with its md5 computed on
the way, resumed with an HTTP ``Range`` request after an interruption (and
restarted when the server ignores ``Range``), retried with backoff on
connection errors, timeouts, 5xx and 429, and renamed to its final name only
after size and md5 match. A source that cannot be reached at all (its name does
not resolve, it refuses the connection, TLS fails) is not retried: it is given
up for the rest of the run, so an offline run fails in seconds, saying why.
A verified archive is extracted safely (:func:`~fdf_build.dataset.archive.safe_extract`),
and a marker in ``TARGET/.fdf_download/`` records it, so a re-run downloads
nothing; a run that wrote nothing leaves no folder behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import socket
import ssl
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator, Optional
from urllib.parse import urlsplit

import requests

from ..deadline import deadline, expired
from ..errors import BadInput
from ..fetch import (RETRYABLE, AttemptFailed, make_session, parse_retry_after, request_failure, status_reason,
                     with_retries)
from ..files import commit, write_json
from ..lock import dataset_lock
from .archive import UnsafeArchive, md5_digest, md5_file, safe_extract
from .layout import holds_dataset, verify_dataset

log = logging.getLogger(__name__)

#: ``progress(file_name, n_bytes)`` per chunk written; ``progress(file_name, -n)`` when a restart discards n bytes.
Progress = Callable[[str, int], None]
STATE_DIR = ".fdf_download"


@dataclass(frozen=True)
class ManifestFile:
    name: str
    url: str
    md5: str
    size: Optional[int] = None
    license: Optional[str] = None
    license_url: Optional[str] = None


def _manifest_text(path: Optional[Path]) -> str:
    if path is None:
        return (resources.files("fdf_build") / "manifests" / "fdf256.json").read_text()
    return Path(path).read_text()


def manifest_note(path: Optional[Path] = None) -> str:
    """The manifest's ``note`` (what its publisher says about its host), or ""."""
    try:
        note = json.loads(_manifest_text(path)).get("note", "")
    except (ValueError, AttributeError):
        return ""
    return note if isinstance(note, str) else ""


_MANIFEST_TYPES = {"name": str, "url": str, "md5": str, "size": (int, type(None)), "license": (str, type(None)),
                   "license_url": (str, type(None))}


def load_manifest(path: Optional[Path] = None) -> list[ManifestFile]:
    """The packaged FDF256 manifest, or a ``manifest.json`` as ``fdf-build pack`` writes it.

    Every file must be a zip with a plain name: the archive is kept under that name in the dataset while it is
    downloaded, so a name like ``removed.jsonl`` would put a download where the dataset's ledger is.
    """
    where = path or "built-in manifest"
    try:
        data = json.loads(_manifest_text(path))
        files = []
        for f in data["files"]:
            fields = {k: v for k, v in f.items() if k in ManifestFile.__dataclass_fields__}
            wrong = [k for k, v in fields.items() if not isinstance(v, _MANIFEST_TYPES[k]) or v is True or v is False]
            if wrong:
                raise TypeError(f"{', '.join(wrong)} of {fields.get('name')!r} not of the right type")
            files.append(ManifestFile(**fields))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise BadInput(f"{where}: not a manifest ({type(e).__name__}: {e})") from None
    for f in files:
        if Path(f.name).name != f.name or f.name.startswith(".") or not f.name.endswith(".zip"):
            raise BadInput(f"{where}: manifest file name {f.name!r} must be a plain file name ending in .zip")
        if f.size is not None and f.size < 0:
            raise BadInput(f"{where}: {f.name}: size {f.size} is negative")
    return files


class DownloadFailed(AttemptFailed):
    def __init__(self, reason: str, detail: str, retry_after: Optional[float] = None, retryable: bool = False):
        super().__init__(f"{reason}: {detail}", retryable=retryable, retry_after=retry_after)
        self.reason, self.detail = reason, detail


class SourceUnreachable(DownloadFailed):
    """Connecting failed in a way no retry fixes soon; ``detail`` says how, in words."""


def source_of(url: str) -> str:
    """The host a URL is fetched from (``scheme://host[:port]``): what is given up when it cannot be reached."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _causes(exc: Optional[BaseException]) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests wraps urllib3's error in ``args[0]``, urllib3 the socket's in ``reason``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        reason = getattr(exc, "reason", None)
        wrapped = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = reason if isinstance(reason, BaseException) else wrapped or exc.__cause__ or exc.__context__


def unreachable_cause(exc: BaseException, timeout: float) -> Optional[str]:
    """Why connecting failed, in words, when the source cannot be reached at all; None when a retry may help
    (the server dropped the connection, a 5xx): those keep their retries."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no answer to connect within {timeout:g} s"
    for e in _causes(exc):
        if isinstance(e, socket.gaierror):
            return "name not resolved"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS failure ({e.verify_message})"
        if isinstance(e, ssl.SSLError):
            return f"TLS failure ({e.reason or e})"
        if isinstance(e, OSError) and e.errno == errno.ENETUNREACH:
            return "network unreachable"
        if isinstance(e, OSError) and e.errno == errno.EHOSTUNREACH:
            return "no route to host"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failure"
    return None


@dataclass
class FileDownloader:
    """Streams one URL to a verified file; safe to share between threads."""

    session: requests.Session
    timeout: float = 30.0
    retries: int = 5
    backoff: float = 1.0
    max_retry_after: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    #: wall-clock seconds for one file, all its sources and retries together (None: no limit); what was
    #: downloaded stays in its ``.part``, so a re-run resumes
    deadline: Optional[float] = 6 * 3600.0
    #: source -> why it could not be reached; such a source is not tried again by this downloader
    unreachable: dict[str, str] = field(default_factory=dict)

    def download(self, urls: list[str], dest: Path, *, md5: str, size: Optional[int], progress: Progress) -> str:
        """Fetch ``dest`` from the first of ``urls`` that delivers the right bytes; returns the URL used."""
        failures: list[tuple[str, str]] = []  # (where, what went wrong)
        with deadline(self.deadline) as until:
            for url in urls:
                source = source_of(url)
                if source in self.unreachable:
                    failures.append((source, f"{self.unreachable[source]} (not tried again)"))
                    continue
                if expired():
                    failures.append((url, f"not tried: the file's {self.deadline:g} s deadline had passed"))
                    continue
                if self._try(url, dest, md5=md5, size=size, progress=progress, until=until, failures=failures):
                    return url
        if len(failures) == 1:
            raise DownloadFailed(*failures[0])
        raise DownloadFailed(f"all {len(failures)} sources failed", "; ".join(f"{w}: {e}" for w, e in failures))

    def _try(self, url: str, dest: Path, *, md5: str, size: Optional[int], progress: Progress, until: float,
             failures: list) -> bool:
        """One source, with its retries (their pauses cut short at the deadline); a failure goes in ``failures``."""
        source = source_of(url)

        def pause(seconds: float) -> None:
            self.sleep(max(0.0, min(seconds, until - time.monotonic())))

        try:
            with_retries(lambda: self._attempt(url, dest, md5=md5, size=size, progress=progress),
                         retries=self.retries, backoff=self.backoff, max_retry_after=self.max_retry_after,
                         sleep=pause)
            return True
        except SourceUnreachable as e:
            self.unreachable.setdefault(source, e.detail)
            failures.append((source, e.detail))
        except DownloadFailed as e:
            failures.append((url, str(e)))
        log.debug("%s from %s: %s", dest.name, *failures[-1])  # the caller reports the file's failure, once
        return False

    def content_length(self, urls: list[str]) -> tuple[Optional[int], str]:
        """The size the first of ``urls`` to answer a HEAD request announces, or None and why not."""
        failures = []
        for url in urls:
            source = source_of(url)
            if source in self.unreachable:
                failures.append(f"{source}: {self.unreachable[source]}")
                continue
            try:
                r = self.session.head(url, allow_redirects=True, timeout=self.timeout)
            except requests.RequestException as e:
                cause = unreachable_cause(e, self.timeout)
                if cause is not None:
                    self.unreachable.setdefault(source, cause)
                failures.append(f"{source}: {cause or type(e).__name__}")
                continue
            length = r.headers.get("Content-Length", "")
            if r.status_code == 200 and length.isdigit():
                return int(length), url
            failures.append(f"{url}: HTTP {r.status_code}" if r.status_code != 200 else f"{url}: no Content-Length")
        return None, "; ".join(failures)

    def _attempt(self, url, dest: Path, *, md5, size, progress) -> None:
        if expired():
            raise DownloadFailed("deadline", f"not complete within {self.deadline:g} s; a re-run resumes")
        part = dest.with_name(dest.name + ".part")
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            part.unlink()
            progress(dest.name, -offset)
            offset = 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self._get(url, headers) as r:
                if r.status_code == 416 and offset:
                    pass  # nothing left to send: the part may already be whole; verify below
                elif r.status_code in (200, 206):
                    start = _range_start(r) if r.status_code == 206 else 0
                    if start != offset:  # the server ignored Range (or answered another one): start over
                        progress(dest.name, -offset)
                        offset = 0
                    digest = md5_digest(part) if offset else hashlib.md5(usedforsecurity=False)
                    written = offset
                    with open(part, "ab" if offset else "wb") as f:
                        for chunk in r.iter_content(1 << 16):
                            if size is not None and written + len(chunk) > size:
                                # the manifest's size is all a file may take: not one byte more is written
                                f.close()
                                part.unlink()
                                raise DownloadFailed("md5 mismatch", f"more than the manifest's {size:,} bytes sent")
                            f.write(chunk)
                            written += len(chunk)
                            digest.update(chunk)
                            progress(dest.name, len(chunk))
                    if expired():  # the watchdog cut a body without an announced end
                        raise DownloadFailed("deadline", f"not complete within {self.deadline:g} s; a re-run resumes")
                    return self._finish(part, dest, digest.hexdigest(), md5=md5, size=size)
                else:
                    reason = status_reason(r.status_code)
                    raise DownloadFailed(
                        f"HTTP {r.status_code}", url, parse_retry_after(r.headers.get("Retry-After"), time.time()),
                        retryable=reason in RETRYABLE,
                    )
        except requests.RequestException as e:
            if expired():
                raise DownloadFailed("deadline", f"not complete within {self.deadline:g} s; a re-run resumes") from None
            reason, detail = request_failure(e)
            raise DownloadFailed(reason.value, detail, retryable=reason in RETRYABLE) from None
        return self._finish(part, dest, md5_file(part), md5=md5, size=size)

    def _get(self, url: str, headers: dict) -> requests.Response:
        """``session.get``, telling a source that cannot be reached at all from a failure worth retrying."""
        try:
            return self.session.get(url, headers=headers, stream=True, timeout=self.timeout)
        except requests.RequestException as e:
            cause = unreachable_cause(e, self.timeout)
            if cause is None:
                raise
            raise SourceUnreachable(source_of(url), cause) from None

    @staticmethod
    def _finish(part: Path, dest: Path, got_md5: str, *, md5: str, size: Optional[int]) -> None:
        got_size = part.stat().st_size
        if size is not None and got_size < size:
            raise DownloadFailed("incomplete", f"{got_size:,} of {size:,} bytes", retryable=True)
        if (size is not None and got_size != size) or got_md5 != md5:
            part.unlink()  # a wrong file must not be resumed from, or kept under any name
            raise DownloadFailed("md5 mismatch", f"got {got_md5} ({got_size:,} bytes), expected {md5}")
        commit(part, dest)


def _range_start(response: requests.Response) -> int:
    value = response.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1


def sources(f: ManifestFile, *, base_url: Optional[str], mirrors: tuple[str, ...]) -> list[str]:
    """Where to fetch ``f`` from, in order: ``--base-url``'s copy (or the manifest's URL, a relative one
    resolved against ``--base-url``), then each ``--mirror``'s copy."""
    absolute = f.url.startswith(("http://", "https://"))
    if base_url:
        first = base_url.rstrip("/") + "/" + (f.name if absolute else f.url.lstrip("/"))
    elif absolute:
        first = f.url
    else:
        raise BadInput(f"{f.name}: the manifest gives a relative URL; pass --base-url")
    return [first] + [m.rstrip("/") + "/" + f.name for m in mirrors]


@dataclass
class FileOutcome:
    name: str
    status: str  # "downloaded", "verified", "extracted-before", "planned", "failed"
    detail: str = ""
    #: bytes, from the manifest or (dry run) a HEAD request; None when neither tells
    size: Optional[int] = None


@dataclass
class DownloadReport:
    files: list[FileOutcome] = field(default_factory=list)
    layout_problems: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not any(self.layout_problems.values())

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "failed"]


def select_files(manifest: list[ManifestFile], licenses: Optional[tuple[str, ...]]) -> list[ManifestFile]:
    """Metainfo always; image archives only for ``licenses`` (archive names like ``cc-by-2``) when given."""
    if licenses is None:
        return list(manifest)
    known = {f.license for f in manifest if f.license}
    unknown = set(licenses) - known
    if unknown:
        raise BadInput(f"unknown license archive(s) {sorted(unknown)}; this manifest has {sorted(known)}")
    return [f for f in manifest if f.license is None or f.license in licenses]


def download_dataset(
    target: Path,
    *,
    manifest: list[ManifestFile],
    base_url: Optional[str] = None,
    mirrors: tuple[str, ...] = (),
    licenses: Optional[tuple[str, ...]] = None,
    workers: int = 4,
    keep_archives: bool = False,
    verify_only: bool = False,
    dry_run: bool = False,
    downloader: Optional[FileDownloader] = None,
    progress: Optional[Progress] = None,
) -> DownloadReport:
    target = Path(target)
    progress = progress or (lambda name, n: None)
    files = select_files(manifest, licenses)
    for f in () if verify_only else files:  # fail on a relative URL before any work; verify-only fetches nothing
        sources(f, base_url=base_url, mirrors=mirrors)
    state = target / STATE_DIR
    if verify_only and not any((target / f.name).exists() or (state / f"{f.name}.json").is_file() for f in files):
        raise BadInput(f"{target}: no file of the manifest is there, downloaded or extracted: nothing to verify")
    into_existing = holds_dataset(target)
    report = DownloadReport()
    created = [d for d in (state, *state.parents) if not d.exists()]  # deepest first
    if not dry_run:
        state.mkdir(parents=True, exist_ok=True)
    downloader = downloader or FileDownloader(make_session(workers))

    def one(f: ManifestFile) -> FileOutcome:
        marker = state / f"{f.name}.json"
        archive = target / f.name
        if marker.is_file() and json.loads(marker.read_text()).get("md5") == f.md5:
            return FileOutcome(f.name, "extracted-before", size=f.size)
        if dry_run or verify_only:
            have = archive.is_file() and md5_file(archive) == f.md5
            status = "verified" if have else ("planned" if dry_run else "failed")
            size = archive.stat().st_size if have else f.size
            if verify_only:
                detail = "" if have else ("not downloaded" if not archive.exists() else "md5 mismatch")
                return FileOutcome(f.name, status, detail, size)
            urls = sources(f, base_url=base_url, mirrors=mirrors)
            detail = "" if have else ", ".join(urls)
            if size is None:
                size, answer = downloader.content_length(urls)
                if size is None:
                    detail += f" (HEAD: {answer})"
            return FileOutcome(f.name, status, detail, size)
        try:
            if archive.is_file() and md5_file(archive) == f.md5:
                status, detail = "verified", "already downloaded"
            else:
                archive.unlink(missing_ok=True)
                used = downloader.download(
                    sources(f, base_url=base_url, mirrors=mirrors), archive, md5=f.md5, size=f.size, progress=progress
                )
                status, detail = "downloaded", used
            size = archive.stat().st_size
            count = safe_extract(archive, target)
        except DownloadFailed as e:
            return FileOutcome(f.name, "failed", str(e), f.size)
        except (UnsafeArchive, zipfile.BadZipFile, OSError, zlib.error, NotImplementedError, EOFError) as e:
            # a corrupt or unsupported compression (deflate64) in an archive whose md5 matched: nothing moved in
            return FileOutcome(f.name, "failed", f"{type(e).__name__}: {e}", f.size)
        write_json(marker, {"md5": f.md5, "files": count})
        if not keep_archives:
            archive.unlink()
        return FileOutcome(f.name, status, detail, size)

    # into an existing dataset, under its lock: a removal must not run while its files are replaced
    lock = dataset_lock(target, "fdf-build download") if into_existing and not dry_run else nullcontext()
    try:
        with lock, ThreadPoolExecutor(max(1, workers)) as pool:
            report.files = list(pool.map(one, files))
    finally:
        for d in created:  # only folders this run made and left empty
            try:
                d.rmdir()
            except OSError:
                break
    if not dry_run and not report.failed:
        images = [f.license_url for f in files if f.license_url]
        # a metadata-only mirror has no image archives: its images come from `fdf-build rehydrate`
        wanted = None if licenses is None and images else images
        report.layout_problems = verify_dataset(target, wanted)
    return report
