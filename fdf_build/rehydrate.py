"""Rehydration: recreate a dataset's face crops from Flickr, given only its metadata.

A dataset can be published without pixels (``fdf-build pack --metadata-only``):
every face's photo (static URL, or its YFCC100M line), its box in the original
photo, the crop geometry and each image's md5 are enough to cut the same crop
again. :func:`rehydrate` fetches each photo once, however many faces it has,
with the build's fetcher (rate limits, retries, placeholder detection), cuts
its faces again and writes ``<split>/images/<n>.png``.

Photos gone from Flickr (the "photo unavailable" placeholder, 404, 410) and
blocklisted ones are taken out as ``fdf-build remove`` takes faces out
(renumbered, ``removed.jsonl``): a photo its owner deleted drops out of every
copy by itself. A recut whose md5 differs from the published one (the photo
changed on Flickr) is reported, and kept or dropped.

Resumable: each photo's outcome is appended to ``DATASET/.rehydrate/photos.jsonl``
after its images are written (atomically), so a killed run re-fetches only
photos without an outcome and ends with the same bytes. Removals happen once,
at the end, from a plan written first (``.rehydrate/commit.json``), so a run
killed while removing finishes them on the next start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional
from urllib.parse import urlsplit

from .dataset.archive import image_md5s, md5_file
from .dataset.layout import IMAGE_MD5S, dataset_splits, load_metainfo, split_dirs, verify_dataset
from .dataset.loaders import as_mapping, load_json
from .dataset.published import (Geometry, PhotoJob, PublishedFace, RehydrateError, find_in_yfcc, group_by_photo,
                                load_geometry, published_faces)
from .dataset.writer import encode_png
from .decode import decode_image
from .fetch import Fetcher, FetchSettings
from .files import appending, atomic_write, jsonl, write_json
from .privacy import audit
from .card import write_card
from .privacy.index import index_dataset
from .privacy.removal import LiveRemovals, changing, plan_removal, remove_faces
from .records import RunCounts, Skip, SkipReason
from .sources.filters import Blocklist

log = logging.getLogger(__name__)

#: ``progress(stage, n)``: ``("bytes", n)`` while the YFCC file is read, ``("photos", 1)`` per photo done.
Progress = Callable[[str, int], None]
STATE_DIR = ".rehydrate"
JOURNAL = "photos.jsonl"
COMMIT = "commit.json"
#: Written last: the summary of a finished rehydration, and its list of faces not as published.
SUMMARY = "rehydrate.json"
FACES_REPORT = "rehydrate_faces.jsonl"
CHANGED = ("keep", "drop")

OK, CHANGED_PHOTO, BLOCKLISTED, NOT_IN_YFCC = "ok", "changed", SkipReason.BLOCKLISTED.value, "not_in_yfcc"
#: What Flickr says of a photo its owner deleted or made private: ``fdf-build audit``'s evidence, one rule for both.
GONE = frozenset(r.value for r in audit.GONE)
#: Outcomes a re-run does not try again; any other (5xx, timeouts, decode errors...) is retried.
FINAL = frozenset({OK, CHANGED_PHOTO} | GONE)


# ---------------------------------------------------------------- fetching and cutting


@dataclass(frozen=True, kw_only=True)
class RehydrateConfig(FetchSettings):
    dataset: Path
    yfcc: Optional[str] = None
    base_url: Optional[str] = None
    blocklist: Optional[Path] = None
    #: a recut whose md5 differs from the published one: keep it (reported) or take the face out
    changed: str = "keep"
    #: take out the faces of photos that still fail (5xx, timeouts...) instead of leaving the run unfinished
    drop_failed: bool = False
    workers: int = 16

    def __post_init__(self):
        super().__post_init__()
        if self.changed not in CHANGED:
            raise ValueError(f"changed must be one of {CHANGED}")


def _image_path(root: Path, face: PublishedFace) -> Path:
    return root / face.split / "images" / f"{face.number}.png"


def _outcome(job: PhotoJob, status: str, detail: str = "", md5s: Optional[dict] = None) -> dict:
    return {"photo_id": job.photo_id, "status": status, "detail": detail, "url": job.url, "md5": md5s or {}}


def rehydrate_photo(job: PhotoJob, fetcher: Fetcher, geometry: Geometry, root: Path,
                    base_url: Optional[str] = None) -> dict:
    """Fetch one photo, cut all its faces again and write them; the outcome row for the journal."""
    if job.url is None:
        return _outcome(job, NOT_IN_YFCC, "no static URL in the metainfo and not found in the YFCC file")
    url = base_url.rstrip("/") + urlsplit(job.url).path if base_url else job.url
    data = fetcher(url)
    image = data if isinstance(data, Skip) else decode_image(data)
    if isinstance(image, Skip):
        return _outcome(job, image.reason.value, image.detail)
    md5s, changed = {}, 0
    for face in job.faces:
        png = encode_png(geometry.recut(image, face.box))
        digest = hashlib.md5(png, usedforsecurity=False).hexdigest()
        atomic_write(_image_path(root, face), png)
        md5s[f"{face.split}/{face.number}"] = digest
        changed += face.md5 is not None and digest != face.md5
    if changed:
        detail = f"{changed} of {len(job.faces)} face(s) differ from the published md5"
        return _outcome(job, CHANGED_PHOTO, detail, md5s)
    return _outcome(job, OK, md5s=md5s)


def _already_there(job: PhotoJob, root: Path) -> Optional[dict]:
    """An outcome for a photo whose images are all there with their published md5 (a partial download)."""
    md5s = {}
    for face in job.faces:
        path = _image_path(root, face)
        if face.md5 is None or not path.is_file():
            return None
        digest = md5_file(path)
        if digest != face.md5:
            return None
        md5s[f"{face.split}/{face.number}"] = digest
    return _outcome(job, OK, "already there", md5s)


def _bounded(pool: ThreadPoolExecutor, fn, items: Iterable, limit: int) -> Iterator:
    """``fn(item)`` results as they complete, with at most ``limit`` items in flight (not all submitted up front)."""
    pending = set()
    for item in items:
        pending.add(pool.submit(fn, item))
        if len(pending) >= limit:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (f.result() for f in done)
    for future in pending:
        yield future.result()


class Journal:
    """Each photo's outcome, appended as photos finish; reopened by a re-run to skip what is done.

    Tied to the metainfo it was made for: another metainfo (a new download) starts it afresh.
    """

    def __init__(self, state: Path, fingerprint: str):
        self.path = state / JOURNAL
        self.rows: dict[int, dict] = {}
        stamp = state / "metainfo.sha256"
        if stamp.is_file() and stamp.read_text().strip() == fingerprint and self.path.is_file():
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except (ValueError, RecursionError):
                        break  # the line a killed run was writing
                    if not isinstance(row, dict) or type(row.get("photo_id")) is not int:
                        break  # not a row of ours: what follows is redone
                    self.rows[row["photo_id"]] = row
        else:
            state.mkdir(parents=True, exist_ok=True)
            self.path.unlink(missing_ok=True)
            atomic_write(stamp, fingerprint + "\n")
        # rewrite what was read, so a torn last line cannot end up in the middle of the file
        atomic_write(self.path, jsonl(self.rows.values()))
        self._appending = contextlib.ExitStack()
        self._file = self._appending.enter_context(appending(self.path))

    def done(self, job: PhotoJob, root: Path) -> bool:
        row = self.rows.get(job.photo_id)
        if row is None or row["status"] not in FINAL:
            return False
        return row["status"] in GONE or all(_image_path(root, f).is_file() for f in job.faces)

    def add(self, row: dict) -> None:
        self.rows[row["photo_id"]] = row
        self._file.write(jsonl([row]))
        self._file.flush()

    def close(self) -> None:
        self._appending.close()  # fsynced on the way out


def _fingerprint(dataset: Path) -> str:
    digest = hashlib.sha256()
    for split, directory in split_dirs(dataset):
        for name in ("fdf_metainfo.json", IMAGE_MD5S):
            if (directory / name).is_file():
                digest.update(f"{split}/{name}\0".encode())
                with open(directory / name, "rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- the run


@dataclass
class RehydrateSummary(RunCounts):
    """What a rehydration fetched, recut and took out (``DATASET/rehydrate.json``)."""

    RANKED = ("outcomes",)
    #: photos by outcome other than ok: photo_removed, http_404, blocklisted, changed, http_5xx...
    outcomes: Counter = field(default_factory=Counter)
    splits: dict = field(default_factory=dict)
    complete: bool = False


def _is_blocked(job: PhotoJob, blocklist: Blocklist) -> bool:
    return any(blocklist.blocks(f.user_nsid, job.photo_id) for f in job.faces)


def rehydrate(config: RehydrateConfig, progress: Optional[Progress] = None) -> RehydrateSummary:
    """Fetch and recut every face of ``config.dataset`` that has no image yet, then take out what cannot stay."""
    root = Path(config.dataset)
    dataset_splits(root)
    with changing(root, "fdf-build rehydrate"):  # what a killed command left is finished first
        return _rehydrate_locked(config, root, progress or (lambda stage, n: None))


def _rehydrate_locked(config: RehydrateConfig, root: Path, progress: Progress) -> RehydrateSummary:
    state = root / STATE_DIR
    if (state / COMMIT).is_file():
        return _commit(root, dict(as_mapping(load_json(state / COMMIT, "a rehydration plan"), state / COMMIT,
                                             "a rehydration plan")))  # the fetching is done; finish the removals
    if (root / SUMMARY).is_file() and not state.exists() and not any(verify_dataset(root).values()):
        done = RehydrateSummary.from_dict(dict(as_mapping(load_json(root / SUMMARY, "a rehydration summary"),
                                                          root / SUMMARY, "a rehydration summary")))
        # a finished run, read back: nothing is fetched now, it was all done before
        done.photos["resumed"] += done.photos.pop("fetched", 0) + done.photos.pop("already_there", 0)
        return done
    geometry = load_geometry(root)
    jobs = group_by_photo(published_faces(root))
    for split, directory in split_dirs(root):
        (directory / "images").mkdir(exist_ok=True)
    journal = Journal(state, _fingerprint(root))
    # the dataset's removals and the user's blocklist, read again before each photo is fetched
    live = LiveRemovals(root, config.blocklist)
    blocklist = live.current()
    summary = RehydrateSummary()
    try:
        todo = []
        for job in jobs.values():
            if _is_blocked(job, blocklist):
                continue
            if journal.done(job, root):
                summary.photos["resumed"] += 1
            elif (row := _already_there(job, root)) is not None:
                journal.add(row)
                summary.photos["already_there"] += 1
            else:
                todo.append(job)
        unlocated = [job for job in todo if job.url is None]
        if unlocated and config.yfcc:
            find_in_yfcc(unlocated, config.yfcc, flickr_size=geometry.flickr_size,
                         on_bytes=lambda n: progress("bytes", n))
        elif unlocated:
            log.warning("%d photo(s) have no static URL in the metainfo; pass --yfcc to find them", len(unlocated))
        progress("photos", len(jobs) - len(todo))
        fetcher = config.fetcher()

        def work(job: PhotoJob) -> dict:
            if _is_blocked(job, live.current()):
                return _outcome(job, BLOCKLISTED, "removed while the rehydration ran")
            return rehydrate_photo(job, fetcher, geometry, root, config.base_url)

        with ThreadPoolExecutor(config.workers, thread_name_prefix="rehydrate") as pool:
            for row in _bounded(pool, work, todo, 4 * config.workers):
                journal.add(row)
                summary.photos["fetched" if row["status"] in (OK, CHANGED_PHOTO) else "not_fetched"] += 1
                progress("photos", 1)
    finally:
        journal.close()
    plan = _plan(root, config, jobs, journal.rows, live.current(), summary)
    if not plan["complete"]:
        return RehydrateSummary.from_dict(plan["summary"])
    write_json(state / COMMIT, plan)
    return _commit(root, plan)


def _plan(root: Path, config: RehydrateConfig, jobs: dict[int, PhotoJob], rows: dict[int, dict],
          blocklist: Blocklist, summary: RehydrateSummary) -> dict:
    """What the finished dataset keeps and what goes (and why), with the numbers each face will have."""
    removals: dict[str, list[int]] = {"gone": [], "blocklisted": [], "changed": [], "failed": []}
    report, dropped = [], set()
    faces = summary.faces
    summary.photos["published"] = len(jobs)
    for job in jobs.values():
        row = rows.get(job.photo_id)
        status = BLOCKLISTED if _is_blocked(job, blocklist) else (row["status"] if row else "not_tried")
        if status != OK:
            summary.outcomes[status] += 1
        faces["published"] += len(job.faces)
        if status == BLOCKLISTED:
            group = "blocklisted"
        elif status in GONE:
            group = "gone"
        elif status == CHANGED_PHOTO:
            group = "changed" if config.changed == "drop" else None
        elif status == OK:
            group = None
        else:  # a photo not located in the YFCC file is not failed: --drop-failed keeps it until --yfcc finds it
            group = "failed" if config.drop_failed and status != NOT_IN_YFCC else "unfinished"
        if group in removals:
            removals[group].append(job.photo_id)
            dropped.update((f.split, f.number) for f in job.faces)
        for face in job.faces:
            got = (row or {}).get("md5", {}).get(f"{face.split}/{face.number}")
            if group is None:
                kind = "identical" if got == face.md5 else ("unverified" if face.md5 is None else "changed_kept")
            else:
                kind = {"changed": "changed_dropped", "failed": "failed_dropped"}.get(group, group)
            faces[kind] += 1
            if kind not in ("identical", "unverified"):
                report.append({"split": face.split, "published_image": face.number, "photo_id": face.photo_id,
                               "photo_url": face.page_url, "download_url": face.url, "outcome": status,
                               "kept": group is None, "detail": (row or {}).get("detail", "")})
    numbers: dict[str, dict[int, int]] = {}
    for face in sorted((f for job in jobs.values() for f in job.faces), key=lambda f: (f.split, f.number)):
        if (face.split, face.number) not in dropped:
            split_numbers = numbers.setdefault(face.split, {})
            split_numbers[face.number] = len(split_numbers)
    for row in report:
        row["image"] = numbers.get(row["split"], {}).get(row["published_image"])
    summary.splits = {split: len(numbers.get(split, {})) for split, _ in split_dirs(root)}
    summary.complete = faces["unfinished"] == 0
    return {"complete": summary.complete, "removals": removals, "report": report, "summary": summary.to_dict()}


#: Only photos their owners took away join the dataset's blocklist; a changed or unreachable photo may come back.
BLOCKS = ("gone", "blocklisted")


def _commit(root: Path, plan: dict) -> RehydrateSummary:
    """Take out the faces the plan drops, through the removal machinery; idempotent, so a re-run can repeat it.

    One removal for all of them: a removal keeps every other face's image, and
    faces of gone photos have none, so they cannot wait for a later one. Why each
    face went is in the report (``rehydrate_faces.jsonl``); the ledger names the run.
    """
    removals = plan["removals"]
    removal = plan_removal(root, photo_ids=sorted({p for ids in removals.values() for p in ids}))
    if removal.count:
        blocked = sorted({p for group in BLOCKS for p in removals[group]})
        why = ", ".join(f"{len(ids)} {group}" for group, ids in removals.items() if ids)
        remove_faces(dataclasses.replace(removal, photo_ids=tuple(blocked)),
                             reason=f"rehydrate: photos {why} (see {FACES_REPORT})")
    summary = RehydrateSummary.from_dict(plan["summary"])
    for split, directory in split_dirs(root):
        count = len(load_metainfo(directory))
        if count != summary.splits.get(split):
            raise RehydrateError(f"{directory}: {count} faces after removal, expected {summary.splits.get(split)}")
        _write_md5s(directory, count)
    index_dataset(root)
    atomic_write(root / FACES_REPORT, jsonl(plan["report"]))
    write_json(root / SUMMARY, summary.to_dict())
    write_card(root)
    shutil.rmtree(root / STATE_DIR)
    return summary


def _write_md5s(directory: Path, count: int) -> None:
    """The split's ``images.md5`` for the images it now has (numbers change when faces are taken out)."""
    atomic_write(directory / IMAGE_MD5S, image_md5s(directory, range(count)))
