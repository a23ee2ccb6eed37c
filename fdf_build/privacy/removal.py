"""Removal: take a Flickr user's or photo's faces out of a dataset, and keep them out.

* :func:`remove_faces` removes faces from every split at once, atomically
  across splits (a journal makes a crash roll forward to the new dataset; a
  crash before the journal leaves the old one), renumbers, records what went in
  ``removed.jsonl`` and the dataset's ``blocklist.txt``, and deletes the faces
  from the build's shards; :func:`removals` is what every later merge leaves out.
  One removal runs at a time (:func:`dataset_lock`).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import logging
import os
import shutil
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from ..card import write_card
from ..dataset.layout import LANDMARKS68, METAINFO, PHASH, WORK_DIR, split_dirs
from ..dataset.metainfo import metainfo_records
from ..dataset.splitwriter import write_split
from ..dataset.writer import purge_shard, write_attributes
from ..errors import BadInput, Stopped
from ..files import FILE_MODE, append_durably, jsonl, new_staging_dir, swap_in, write_json
from ..flickr import canonical_nsid
from ..sources.filters import Blocklist
from ..split import SPLITS
from .index import file_stamp, index_dataset, search

LEDGER = "removed.jsonl"
BLOCKLIST = "blocklist.txt"
JOURNAL = ".remove-journal.json"

log = logging.getLogger(__name__)

LOCK = ".privacy.lock"
_lock_guard = threading.Lock()
_thread_locks: dict[str, threading.RLock] = {}
_held: dict[str, tuple[int, int]] = {}  # lock path -> (file descriptor, depth)


@contextmanager
def dataset_lock(dataset: Path):
    """Hold the dataset's exclusive lock (``DATASET/.privacy.lock``): one removal, audit --apply or merge at a time.

    ``flock`` keeps other processes out, a per-dataset ``RLock`` other threads of this one; the holder may
    take it again (a removal inside ``apply_audit``). A second taker waits, and says it waits.
    """
    path = Path(dataset).resolve() / LOCK
    key = str(path)
    with _lock_guard:
        thread_lock = _thread_locks.setdefault(key, threading.RLock())
    with thread_lock:
        fd, depth = _held.get(key, (None, 0))
        if fd is None:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            except OSError as e:
                raise Stopped(f"{dataset}: cannot be changed ({e.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("%s: another removal, audit --apply or build merge holds %s; waiting", dataset, path)
                fcntl.flock(fd, fcntl.LOCK_EX)
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            _held[key] = (fd, depth)
            if depth == 0:
                del _held[key]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def removals(dataset: Path) -> Blocklist:
    """Everything ``dataset`` must never hold again: its ``blocklist.txt`` and the photos in ``removed.jsonl``."""
    dataset = Path(dataset)
    blocked = Blocklist.from_file(dataset / BLOCKLIST) if (dataset / BLOCKLIST).is_file() else Blocklist()
    ledger = dataset / LEDGER
    if ledger.is_file():
        with open(ledger, encoding="utf-8") as f:
            photo_ids = {row["photo_id"] for row in map(json.loads, filter(str.strip, f)) if row.get("photo_id")}
        blocked = blocked | Blocklist(photo_ids=frozenset(photo_ids))
    return blocked


def _metainfo_stamps(dataset: Path) -> dict:
    return {split: file_stamp(directory / METAINFO) for split, directory in split_dirs(dataset)}


@dataclass
class RemovalPlan:
    dataset: Path
    drop: dict  # split -> sorted list of old image numbers to remove
    entries: dict  # split -> {old number: FaceRecord} of the removed faces
    nsids: tuple = ()  # what was asked for: these go on the dataset's blocklist
    photo_ids: tuple = ()
    stamps: dict = field(default_factory=dict)  # the metainfo files the numbers refer to

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.drop.values())


def plan_removal(dataset: Path, *, nsids: Iterable[str] = (), photo_ids: Iterable[int] = ()) -> RemovalPlan:
    dataset = Path(dataset)
    recover(dataset)
    nsids, photo_ids = tuple(sorted({canonical_nsid(n) for n in nsids})), tuple(sorted({int(p) for p in photo_ids}))
    stamps = _metainfo_stamps(dataset)
    drop, entries = {}, {}
    for match in search(dataset, nsids=nsids, photo_ids=photo_ids):
        drop.setdefault(match.split, []).append(int(match.image))
        entries.setdefault(match.split, {})[int(match.image)] = match.record
    return RemovalPlan(dataset, {k: sorted(v) for k, v in drop.items()}, entries, nsids, photo_ids, stamps)


def _swap_split(dataset: Path, staging: Path, split: str) -> None:
    """One split's swap; a separate function so tests can inject a crash between splits."""
    if (staging / split).exists():
        swap_in(staging / split, dataset / split)


def remove_faces(plan: RemovalPlan, *, reason: str = "removal request") -> dict:
    """Apply ``plan``; returns {split: {old: new or None}}, also written to ``renumbering.json`` per split.

    Runs under the dataset's lock; a plan made before another removal changed the dataset is made
    again first, so its numbers are the dataset's. A failure before the commit point leaves the old
    dataset and no staging directory.
    """
    dataset = plan.dataset
    with dataset_lock(dataset):
        recover(dataset)
        if plan.stamps != _metainfo_stamps(dataset):
            plan = plan_removal(dataset, nsids=plan.nsids, photo_ids=plan.photo_ids)
        mappings = _remove_locked(plan, reason)
        write_card(dataset)
        return mappings


def _remove_locked(plan: RemovalPlan, reason: str) -> dict:
    dataset = plan.dataset
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    blocked = [*plan.nsids, *map(str, plan.photo_ids)]
    if not plan.count:
        # nothing to take out now, but the request must still keep these out of every later build
        if blocked:
            _append_blocklist(dataset, blocked, f"blocked {now} ({reason}); no faces were in the dataset")
            _purge_work(dataset, Blocklist.from_lines(blocked))
        return {}
    staging = new_staging_dir(dataset, ".remove-staging-")
    try:
        mappings = {split: _write_kept(directory, staging / split, set(plan.drop[split]))
                    for split, directory in split_dirs(dataset) if plan.drop.get(split)}
        removal_id = uuid.uuid4().hex
        ledger = [
            {"removal": removal_id, "date": now, "reason": reason, "split": split, "old_image": old,
             "new_image": None, "user_nsid": e.user_nsid or None, "photo_id": e.photo_id,
             "photo_url": e.photo_url or e.download_url or None}
            for split, faces in plan.entries.items() for old, e in sorted(faces.items())
        ]
        # the commit point: once the journal exists, recovery finishes the removal
        write_json(dataset / JOURNAL, {
            "removal": removal_id, "staging": staging.name, "ledger": ledger, "date": now, "reason": reason,
            "blocklist": blocked,
        })
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _roll_forward(dataset)
    index_dataset(dataset)  # renumbered splits: the next search should not pay for the index
    return mappings


#: Files of a split that a removal writes anew; any other plain file is carried over as it is.
_REWRITTEN = {"images", METAINFO, "landmarks.npy", "bounding_box.npy", LANDMARKS68, "attribution.csv", PHASH,
              "renumbering.json", "attributes", "attributes.jsonl"}


def _write_kept(directory: Path, staging: Path, gone: set[int]) -> dict:
    """Write ``directory`` without the faces numbered in ``gone`` into ``staging``; returns {old: new or None}."""
    meta = metainfo_records(directory)
    landmarks = np.load(directory / "landmarks.npy")
    boxes = np.load(directory / "bounding_box.npy")
    keep = [i for i in range(len(meta)) if i not in gone]
    write_split(staging, [(directory / "images" / f"{i}.png", meta[str(i)], landmarks[i], boxes[i]) for i in keep])
    attributes = _read_attributes(directory, len(meta))
    if attributes is not None:
        write_attributes(staging, [attributes[i] for i in keep])
    for extra in directory.iterdir():
        if extra.is_file() and extra.name not in _REWRITTEN and not extra.name.startswith(METAINFO):
            shutil.copy2(extra, staging / extra.name)
    mapping = {str(i): None for i in gone}
    mapping.update({str(old): new for new, old in enumerate(keep)})
    mapping = dict(sorted(mapping.items(), key=lambda kv: int(kv[0])))
    write_json(staging / "renumbering.json", mapping)
    return mapping


def _read_attributes(directory: Path, count: int) -> Optional[list]:
    """A split's per-face attributes (``attributes.jsonl``, else ``attributes/<n>.json``) in image order, or None."""
    by_image = {}
    if (directory / "attributes.jsonl").is_file():
        with open(directory / "attributes.jsonl", encoding="utf-8") as f:
            for row in map(json.loads, filter(str.strip, f)):
                by_image[int(row.pop("image"))] = row
    elif (directory / "attributes").is_dir():
        for path in (directory / "attributes").glob("*.json"):
            if path.stem.isdigit():
                by_image[int(path.stem)] = json.loads(path.read_text(encoding="utf-8"))
    else:
        return None
    missing = sorted(set(range(count)) - set(by_image))
    if missing:
        raise BadInput(f"{directory}: attributes of {len(missing)} face(s) missing (e.g. {missing[:5]}); "
                       "run `fdf-build attributes` again, or delete attributes/ and attributes.jsonl")
    return [by_image[i] for i in range(count)]


def recover(dataset: Path) -> Optional[str]:
    """Finish a removal a crash interrupted, or discard one that had not reached its commit point."""
    dataset = Path(dataset)
    if not (dataset / JOURNAL).is_file() and not any(dataset.glob(".remove-staging-*")):
        return None  # nothing to do: no lock needed (a read-only copy stays searchable)
    with dataset_lock(dataset):
        if (dataset / JOURNAL).is_file():
            return _roll_forward(dataset)
        for leftover in dataset.glob(".remove-staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    return None


def _append_blocklist(dataset: Path, entries: list[str], comment: str) -> None:
    """Add the entries the blocklist does not hold yet (a second removal of an owner adds nothing)."""
    listed = Blocklist.from_file(dataset / BLOCKLIST) if (dataset / BLOCKLIST).is_file() else Blocklist()
    new = [entry for entry in entries if not listed.lists(entry)]
    if new:
        append_durably(dataset / BLOCKLIST, f"# {comment}\n" + "".join(f"{entry}\n" for entry in new))


def _purge_work(dataset: Path, blocked: Blocklist) -> None:
    """Take removed faces out of the build's shards too (the split images are hard links to them)."""
    for shard in sorted((dataset / WORK_DIR).glob("shard_*")):
        purge_shard(shard, blocked.blocks)


def _roll_forward(dataset: Path) -> str:
    journal = json.loads((dataset / JOURNAL).read_text())
    staging = dataset / journal["staging"]
    for split in SPLITS:
        _swap_split(dataset, staging, split)
    photo_ids = {row["photo_id"] for row in journal["ledger"] if row.get("photo_id") is not None}
    _purge_work(dataset, Blocklist.from_lines(journal["blocklist"]) | Blocklist(photo_ids=frozenset(photo_ids)))
    ledger_path = dataset / LEDGER
    done = ledger_path.is_file() and f'"removal": "{journal["removal"]}"' in ledger_path.read_text()
    if not done:
        # blocklist first, ledger last, each on disk before the next: the ledger line marks this removal
        # recorded, and a crash in between only repeats blocklist lines, which is harmless
        _append_blocklist(dataset, journal["blocklist"], f"removed {journal['date']} ({journal['reason']})")
        append_durably(ledger_path, jsonl(journal["ledger"]))
    shutil.rmtree(staging, ignore_errors=True)
    (dataset / JOURNAL).unlink()
    return journal["removal"]
