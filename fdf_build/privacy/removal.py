"""Removal: take a Flickr user's or photo's faces out of a dataset, and keep them out.

* :func:`remove_faces` first puts the request on the dataset's ``blocklist.txt`` (from then on a running build
  fetches and stages none of those photos, and no merge keeps them), then, under the dataset's lock, removes the
  faces from every split at once (a journal makes a crash roll forward to the new dataset; a crash before the
  journal leaves the old splits), renumbers, deletes the faces from the build's shards, and records what went in
  ``removed.jsonl``. :func:`removals` is what every later merge, build and rehydration leaves out.
* :func:`changing` is how every command that changes a dataset starts: it takes the dataset's lock
  (:mod:`fdf_build.lock`) and :func:`settle`-s it, finishing or rolling back whatever a killed command left.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..card import write_card
from ..dataset.archive import md5_file
from ..dataset.layout import (BLOCKLIST, LANDMARKS68, LEDGER, METAINFO, PHASH, WORK_DIR, DatasetError, holds_dataset,
                              image_numbers, load_array, split_dirs)
from ..dataset.metainfo import read_metainfo
from ..dataset.splitwriter import write_split
from ..dataset.writer import purge_shard, read_attributes, write_attributes
from ..files import append_durably, clear_leftovers, jsonl, new_staging_dir, read_jsonl, swap_in, write_json
from ..flickr import canonical_nsid
from ..lock import LOCK, dataset_lock
from ..sources.filters import Blocklist
from ..split import SPLITS
from .index import file_stamp, index_dataset, search

__all__ = ["LEDGER", "BLOCKLIST", "LOCK", "dataset_lock", "changing", "settle", "recover", "removals",
           "plan_removal", "remove_faces"]

JOURNAL = ".remove-journal.json"
#: staging folders of versions before every staging folder was named ``.staging-*``
_LEGACY_STAGING = re.compile(r"^\.(remove-staging-|extract-|(train|val)\.(?!old$))")

log = logging.getLogger(__name__)

def ledger_rows(dataset: Path) -> list[dict]:
    """The rows of ``DATASET/removed.jsonl`` (none when it is absent), each checked: a DatasetError names the
    line that is not a removal record."""
    path = Path(dataset) / LEDGER
    if not path.exists():
        return []
    rows = list(read_jsonl(path, torn_tail=True))
    for number, row in enumerate(rows, start=1):
        photo_id = row.get("photo_id")
        if not isinstance(row.get("removal"), str) or not (
                photo_id is None or (type(photo_id) is int and 0 <= photo_id < 1 << 63)):
            raise DatasetError(f"{path}: row {number} is not a removal record (a removal id, and a photo_id that is "
                               "a 64-bit integer or null)")
    return rows


def removals(dataset: Path) -> Blocklist:
    """Everything ``dataset`` must never hold again: its ``blocklist.txt`` and the photos in ``removed.jsonl``."""
    dataset = Path(dataset)
    blocked = Blocklist.from_file(dataset / BLOCKLIST) if (dataset / BLOCKLIST).is_file() else Blocklist()
    photo_ids = {row["photo_id"] for row in ledger_rows(dataset) if row.get("photo_id") is not None}
    return blocked | Blocklist(photo_ids=frozenset(photo_ids))


class LiveRemovals:
    """``removals(dataset)`` plus a blocklist file, read again whenever one of their files changed.

    What a build asks before it fetches each photo and before it stages its faces: a removal made while the
    build runs puts its owners on the dataset's blocklist first, and the build takes no photo of theirs after
    that. Three ``stat`` calls a question; safe to call from many threads.
    """

    def __init__(self, dataset: Path, blocklist: Optional[Path] = None):
        self.paths = [Path(dataset) / BLOCKLIST, Path(dataset) / LEDGER, *([Path(blocklist)] if blocklist else [])]
        self.dataset, self.blocklist = Path(dataset), blocklist
        self._stamps: Optional[tuple] = None
        self._blocked = Blocklist()
        self._lock = threading.Lock()

    def current(self) -> Blocklist:
        stamps = tuple(_stamp(p) for p in self.paths)
        with self._lock:
            if stamps != self._stamps:
                extra = Blocklist.from_file(self.blocklist) if self.blocklist else Blocklist()
                self._blocked, self._stamps = removals(self.dataset) | extra, stamps
            return self._blocked

    def blocks(self, user_nsid: Optional[str], photo_id: Optional[int]) -> bool:
        return self.current().blocks(user_nsid, photo_id)

    def __contains__(self, photo) -> bool:
        return self.blocks(photo.user_nsid, photo.photo_id)


def _stamp(path: Path) -> Optional[tuple]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


# ---------------------------------------------------------------- what killed commands leave


def _journal_staging(dataset: Path) -> Optional[str]:
    path = Path(dataset) / JOURNAL
    if not path.is_file():
        return None
    return _read_journal(dataset).get("staging")


def _read_journal(dataset: Path) -> dict:
    path = Path(dataset) / JOURNAL
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(journal, dict) or not isinstance(journal["removal"], str) or not isinstance(
                journal["ledger"], list) or not isinstance(journal["blocklist"], list):
            raise ValueError("not a removal journal")
    except (OSError, ValueError, KeyError, RecursionError) as e:
        raise DatasetError(f"{path}: a removal journal that cannot be read ({e}); nothing was changed: the "
                           "removal it records was interrupted. Delete the file and run that removal again") from None
    return journal


#: a search index's temp file untouched this long is a killed search's: a live one is written to all along
INDEX_TEMP_AGE = 600.0


def _live_index_temp(folder: Path):
    """Whether a leftover-looking name in ``folder`` is a search index being built now: searches take no lock, so
    their temp files are cleared only once they stopped changing."""

    def live(name: str) -> bool:
        if not name.startswith(f".{METAINFO}.index."):
            return False
        try:
            return time.time() - (folder / name).stat().st_mtime < INDEX_TEMP_AGE
        except FileNotFoundError:
            return True
    return live


def settle(dataset: Path) -> list[str]:
    """Finish or roll back what killed commands left in ``dataset``; the caller holds its lock (see :func:`changing`).

    A removal past its commit point is finished; a swap killed halfway is undone (the old split is back);
    staging folders and temp files anywhere a command writes (the dataset, its splits, their images and
    attributes, the build's shards) are deleted, so no copy of a removed face outlives the next command.
    Returns what was cleared, for the log.
    """
    dataset = Path(dataset)
    journal_staging = _journal_staging(dataset)
    keep = lambda name: name == journal_staging  # noqa: E731 - the staging folder a journal still needs
    cleared = clear_leftovers(dataset, swapped=SPLITS, keep=keep)
    for leftover in sorted(dataset.glob(".*")):
        if _LEGACY_STAGING.match(leftover.name) and leftover.is_dir() and leftover.name != journal_staging:
            shutil.rmtree(leftover)
            cleared.append(leftover.name)
    if journal_staging is not None or (dataset / JOURNAL).is_file():
        _roll_forward(dataset)
        cleared.append(JOURNAL)
    folders = [dataset / WORK_DIR, *sorted((dataset / WORK_DIR).glob("shard_*")),
               *sorted((dataset / WORK_DIR).glob("shard_*/faces"))]
    for split in SPLITS:
        folders += [dataset / split, dataset / split / "images", dataset / split / "attributes"]
    for folder in folders:
        if folder.is_dir() and not folder.is_symlink():
            cleared += [f"{folder.relative_to(dataset)}/{name}"
                        for name in clear_leftovers(folder, keep=_live_index_temp(folder))]
    if cleared:
        log.info("%s: cleared what an interrupted command left: %s", dataset, ", ".join(cleared))
    return cleared


@contextmanager
def changing(dataset: Path, what: str) -> Iterator[None]:
    """Hold ``dataset``'s lock and :func:`settle` it first: how every command that changes a dataset starts."""
    dataset = Path(dataset)
    dataset.mkdir(parents=True, exist_ok=True)
    with dataset_lock(dataset, what):
        settle(dataset)
        yield


def recover(dataset: Path) -> Optional[str]:
    """What a reader does first: settle the dataset if a killed removal or swap left it unfinished (under its
    lock), else nothing, without a lock (a read-only copy stays searchable)."""
    dataset = Path(dataset)
    if not (dataset / JOURNAL).is_file() and not any(p.name.endswith(".old") or p.name.startswith(".staging-")
                                                       for p in dataset.glob(".*")):
        return None
    with dataset_lock(dataset, "recovery", read_only_ok=True):
        settle(dataset)
    return None


# ---------------------------------------------------------------- removing


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
    # a dataset whose first build has not merged yet has no faces to take out, only a blocklist to keep them out
    matches = search(dataset, nsids=nsids, photo_ids=photo_ids) if stamps or not holds_dataset(dataset) else []
    for match in matches:
        drop.setdefault(match.split, []).append(int(match.image))
        entries.setdefault(match.split, {})[int(match.image)] = match.record
    return RemovalPlan(dataset, {k: sorted(v) for k, v in drop.items()}, entries, nsids, photo_ids, stamps)


def _swap_split(dataset: Path, staging: Path, split: str, new_metainfo: Optional[str] = None) -> None:
    """One split's swap; a separate function so tests can inject a crash between splits.

    ``new_metainfo``: the md5 of the new split's metainfo. A swap exchanges the two folders, so after one that
    a kill cut short of its clean-up, the staging folder holds the old split: it is deleted, not swapped back.
    """
    if not (staging / split).exists():
        return
    if new_metainfo is not None and (dataset / split / METAINFO).is_file() \
            and md5_file(dataset / split / METAINFO) == new_metainfo:
        shutil.rmtree(staging / split)
    else:
        swap_in(staging / split, dataset / split)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def remove_faces(plan: RemovalPlan, *, reason: str = "removal request") -> dict:
    """Apply ``plan``; returns {split: {old: new or None}}, also written to ``renumbering.json`` per split.

    The request goes on the dataset's blocklist first, before the lock is waited for: a build running meanwhile
    takes none of these photos from then on. Then, under the lock, a plan made before another command changed
    the dataset is made again, so its numbers are the dataset's. A failure before the commit point leaves the
    old splits (the request stays on the blocklist: running the removal again finishes it).
    """
    dataset = plan.dataset
    _block(dataset, [*plan.nsids, *map(str, plan.photo_ids)], f"removal {_now()} ({reason})")
    with changing(dataset, "fdf-build remove"):
        if plan.stamps != _metainfo_stamps(dataset):
            plan = plan_removal(dataset, nsids=plan.nsids, photo_ids=plan.photo_ids)
        mappings = _remove_locked(plan, reason)
        write_card(dataset)
        return mappings


def _remove_locked(plan: RemovalPlan, reason: str) -> dict:
    dataset = plan.dataset
    now = _now()
    staging, mappings = None, {}
    try:
        if plan.count:
            staging = new_staging_dir(dataset, "remove")
            mappings = {split: _write_kept(directory, staging / split, set(plan.drop[split]))
                        for split, directory in split_dirs(dataset) if plan.drop.get(split)}
        removal_id = uuid.uuid4().hex
        ledger = [
            {"removal": removal_id, "date": now, "reason": reason, "split": split, "old_image": old,
             "new_image": None, "user_nsid": e.user_nsid or None, "photo_id": e.photo_id,
             "photo_url": e.photo_url or e.download_url or None}
            for split, faces in plan.entries.items() for old, e in sorted(faces.items())
        ]
        # the commit point: once the journal exists, recovery finishes the removal (shards included)
        write_json(dataset / JOURNAL, {
            "removal": removal_id, "staging": staging and staging.name, "ledger": ledger, "date": now,
            "reason": reason, "blocklist": [*plan.nsids, *map(str, plan.photo_ids)],
            "splits": {split: md5_file(staging / split / METAINFO) for split in mappings},
        })
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    _roll_forward(dataset)
    if plan.count:
        index_dataset(dataset)  # renumbered splits: the next search should not pay for the index
    return mappings


def reapply_removals(dataset: Path, *, reason: str) -> int:
    """Take out again every face the dataset's removals name (after a download brought a published copy back
    over it); returns how many faces went."""
    blocked = removals(dataset)
    if not len(blocked):
        return 0
    plan = plan_removal(dataset, nsids=blocked.nsids, photo_ids=blocked.photo_ids)
    if not plan.count:
        return 0
    mappings = remove_faces(plan, reason=reason)
    return sum(new is None for mapping in mappings.values() for new in mapping.values())


#: Files of a split that a removal writes anew; any other plain file is carried over as it is.
_REWRITTEN = {"images", METAINFO, "landmarks.npy", "bounding_box.npy", LANDMARKS68, "attribution.csv", PHASH,
              "renumbering.json", "attributes", "attributes.jsonl"}


def _write_kept(directory: Path, staging: Path, gone: set[int]) -> dict:
    """Write ``directory`` without the faces numbered in ``gone`` into ``staging``; returns {old: new or None}."""
    meta = read_metainfo(directory)
    landmarks = load_array(directory, "landmarks.npy", shape=(len(meta), 7, 2))
    boxes = load_array(directory, "bounding_box.npy", shape=(len(meta), 4))
    keep = [i for i in range(len(meta)) if i not in gone]
    have = image_numbers(directory)  # a partial copy (some license archives only) stays as partial
    write_split(staging, [(directory / "images" / f"{i}.png" if i in have else None, meta[str(i)], landmarks[i],
                           boxes[i]) for i in keep])
    attributes = read_attributes(directory, len(meta))
    if attributes is not None:
        write_attributes(staging, [attributes[i] for i in keep])
    for extra in directory.iterdir():
        if extra.is_file() and extra.name not in _REWRITTEN and not extra.name.startswith((METAINFO, ".")):
            shutil.copy2(extra, staging / extra.name)
    mapping = {str(i): None for i in gone}
    mapping.update({str(old): new for new, old in enumerate(keep)})
    mapping = dict(sorted(mapping.items(), key=lambda kv: int(kv[0])))
    write_json(staging / "renumbering.json", mapping)
    return mapping


def _block(dataset: Path, entries: list[str], comment: str) -> None:
    """Append to the dataset's blocklist the entries its removals do not keep out yet (none: nothing is written;
    a second removal of an owner adds nothing)."""
    have = removals(dataset)
    new = [entry for entry in dict.fromkeys(entries) if not have.lists(entry)]
    if new:
        # locked against another removal's request appended at the same time (requests come before the dataset lock)
        append_durably(Path(dataset) / BLOCKLIST, f"# {comment}\n" + "".join(f"{entry}\n" for entry in new),
                       lock=True)


def _purge_work(dataset: Path, blocked: Blocklist) -> None:
    """Take removed faces out of the build's shards too (the split images are hard links to them).

    A shard without its completion marker is deleted whole: it holds faces no merge has checked, and a
    resumed build redoes it whole anyway.
    """
    for shard in sorted((dataset / WORK_DIR).glob("shard_*")):
        if purge_shard(shard, blocked.blocks) is None:
            shutil.rmtree(shard)


def _roll_forward(dataset: Path) -> str:
    """Finish the removal the journal records; each step is idempotent, so a killed roll-forward is repeated."""
    journal = _read_journal(dataset)
    staging = dataset / journal["staging"] if journal.get("staging") else None
    if staging is not None:
        for split in SPLITS:
            _swap_split(dataset, staging, split, journal.get("splits", {}).get(split))
    photo_ids = {row["photo_id"] for row in journal["ledger"] if row.get("photo_id") is not None}
    _purge_work(dataset, Blocklist.from_lines(journal["blocklist"]) | Blocklist(photo_ids=frozenset(photo_ids)))
    # blocklist first (normally there since the request), ledger last: the ledger line marks this removal recorded
    _block(dataset, journal["blocklist"], f"removal {journal['date']} ({journal['reason']})")
    if journal["ledger"] and not any(row["removal"] == journal["removal"] for row in ledger_rows(dataset)):
        append_durably(dataset / LEDGER, jsonl(journal["ledger"]))
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    (dataset / JOURNAL).unlink()
    return journal["removal"]
