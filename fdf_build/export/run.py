"""Exporting a dataset: plan its shards, write those not written yet, and the manifest last.

The output (a directory or an fsspec URL, :class:`~fdf_build.storage.Storage`) holds, while an export runs,
``.export/settings.json`` (what decides its bytes, and the dataset's fingerprint) and one record per finished
shard in ``.export/``, written after the shard itself; ``manifest.json`` is written last and lists every
shard with its faces, size and md5. A killed export resumes from the shards whose record is there: shards
are written whole or not at all, each planned from the dataset alone, so a resumed export ends with the
same bytes as an uninterrupted one.

The export only reads the dataset, holding its lock (a removal waits for it). If the dataset changed since
the export in the output started (a removal renumbers it), the export starts over and deletes what it wrote
before: re-running an export after ``fdf-build remove`` takes the removed faces out of it too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from ..dataset.layout import DatasetError, dataset_splits
from ..errors import BadInput
from ..lock import dataset_lock
from ..split import SPLITS
from ..storage import Storage
from . import parquet, stylegan, webdataset
from .samples import SplitReader

log = logging.getLogger(__name__)

FORMATS = {"webdataset": webdataset, "parquet": parquet, "stylegan": stylegan}
STATE = ".export"
SETTINGS = f"{STATE}/settings.json"
MANIFEST = "manifest.json"
DEFAULT_SHARD_SIZE = 5_000
#: every name an export writes: a shard (``train/train-00000.tar``, ``train.zip``), its state, its manifest
_OURS = re.compile(r"^(\.export/.*|manifest\.json|(train|val)/(train|val)-\d{5}\.(tar|parquet)"
                   r"|(train|val)(\+val)?\.zip)$")


class ExportError(BadInput):
    """An export that cannot be made as asked (another export's settings in ``--out``, a label a face lacks...)."""


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    dataset: Path
    out: str
    format: str
    #: splits to export, in FDF order; None: every split the dataset has
    splits: Optional[tuple[str, ...]] = None
    #: faces per shard (WebDataset, Parquet), unless ``shard_bytes`` is given
    shard_size: int = DEFAULT_SHARD_SIZE
    #: a shard closes before its file would pass this many bytes (but for a first face larger than that)
    shard_bytes: Optional[int] = None
    row_group_size: int = parquet.ROW_GROUP_SIZE
    #: StyleGAN's dataset.json labels (:data:`stylegan.LABELS`); None: no labels
    label: Optional[str] = None
    #: shards written at once
    workers: int = 4

    def __post_init__(self):
        checks = [
            (self.format in FORMATS, f"format must be one of {tuple(FORMATS)}"),
            (self.splits is None or (self.splits and set(self.splits) <= set(SPLITS)),
             f"splits must be among {SPLITS}"),
            (self.shard_size >= 1, "shard size must be >= 1"),
            (self.shard_bytes is None or self.shard_bytes >= 1, "shard bytes must be >= 1"),
            (self.row_group_size >= 1, "row group size must be >= 1"),
            (self.label is None or self.label in stylegan.LABELS, f"label must be one of {tuple(stylegan.LABELS)}"),
            (self.label is None or self.format == "stylegan", "labels are StyleGAN's (dataset.json)"),
            (self.workers >= 1, "workers must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def settings(self, splits: tuple[str, ...]) -> dict:
        """What decides the output's bytes (not where it goes, nor how fast it is written)."""
        out = {"format": self.format, "splits": list(splits)}
        if self.format == "stylegan":
            return {**out, "label": self.label}
        sharding = {"shard_bytes": self.shard_bytes} if self.shard_bytes else {"shard_size": self.shard_size}
        rows = {"row_group_size": self.row_group_size} if self.format == "parquet" else {}
        return {**out, **sharding, **rows}


@dataclass(frozen=True)
class Shard:
    """One output file and the faces it holds: ``(split, first, stop)`` ranges of image numbers."""

    name: str
    ranges: tuple[tuple[str, int, int], ...]

    @property
    def count(self) -> int:
        return sum(stop - first for _, first, stop in self.ranges)


@dataclass
class ExportSummary:
    url: str
    faces: dict = field(default_factory=dict)
    shards: dict = field(default_factory=lambda: {"written": 0, "resumed": 0})
    #: why the export started over (the dataset changed), if it did
    restarted: Optional[str] = None

    @property
    def manifest(self) -> str:
        return f"{self.url}/{MANIFEST}"


def plan(config: ExportConfig, readers: dict[str, SplitReader]) -> list[Shard]:
    """The shards, from the dataset alone (so a resumed export cuts them where the first run did)."""
    module = FORMATS[config.format]
    if config.format == "stylegan":
        return [Shard(name, tuple((s, 0, len(readers[s])) for s in held))
                for name, held in stylegan.zips(tuple(readers), config.label)]
    shards = []
    for split, reader in readers.items():
        starts, size = [0], 0
        for n in range(len(reader)):
            if config.shard_bytes:
                payload = module.stored_size(reader.sizes(n))
                cut = n > starts[-1] and size + payload > config.shard_bytes - module.TRAILER
                size = payload if cut else size + payload
            else:
                cut = n - starts[-1] == config.shard_size
            if cut:
                starts.append(n)
        bounds = starts + [len(reader)]
        shards += [Shard(f"{split}/{split}-{i:05d}.{module.EXTENSION}", ((split, first, stop),))
                   for i, (first, stop) in enumerate(zip(bounds, bounds[1:])) if stop > first]
    return shards


def fingerprint(readers: dict[str, SplitReader]) -> str:
    """What the dataset is now: its splits' metadata and attributes (a removal or a rebuild changes them)."""
    from ..dataset.archive import md5_digest

    digest = hashlib.md5(usedforsecurity=False)
    for split, reader in readers.items():
        for name in ("fdf_metainfo.json", "landmarks.npy", "bounding_box.npy", "landmarks68.npy", "attributes.jsonl"):
            path = reader.directory / name
            digest.update(f"{split}/{name}:{md5_digest(path).hexdigest() if path.is_file() else '-'}\n".encode())
    return digest.hexdigest()


def _check_labels(label: str, readers: dict[str, SplitReader]) -> None:
    """Before anything is written: StyleGAN takes a label for every face or for none."""
    for split, reader in readers.items():
        lacking = sum(stylegan.LABELS[label].of(reader.record(n)) is None for n in range(len(reader)))
        if lacking:
            raise ExportError(f"{lacking:,} of {len(reader):,} {split} faces have no {label}: "
                              f"run `fdf-build attributes {reader.directory.parent}` first")


def _record_name(shard: Shard) -> str:
    return f"{STATE}/{shard.name.replace('/', '__')}.json"


def _start(config: ExportConfig, storage: Storage, state: dict, summary: ExportSummary, restart: bool) -> dict:
    """Finished shards' records, when ``storage`` holds this export already; otherwise an emptied output."""
    found = None
    for name in (SETTINGS, MANIFEST):
        if storage.exists(name):
            found = json.loads(storage.read_bytes(name))
            break
    # a killed run's temp files (local outputs; a store keeps no unfinished object)
    storage.remove(n for n in storage.list() if re.search(r"(^|/)\.[^/]+\.tmp$", n))
    if found is not None and not restart:
        if found["settings"] != state["settings"]:
            raise ExportError(f"{config.out} holds an export with other settings ({found['settings']}); "
                              "use a new --out, or --restart to replace it")
        if found["dataset"] == state["dataset"]:
            done = {}
            for record in (found.get("shards") or [json.loads(storage.read_bytes(n))
                                                    for n in storage.list(STATE) if n != SETTINGS]):
                done[record["name"]] = record
            return done
        summary.restarted = "the dataset changed since this export was made (a removal?)"
        log.warning("%s: %s; exporting it again from the start", config.out, summary.restarted)
    storage.remove(n for n in storage.list() if _OURS.match(n))
    storage.write_bytes(SETTINGS, json.dumps(state, sort_keys=True))
    return {}


def _samples(shard: Shard, readers: dict[str, SplitReader], progress: Callable[[str, int], None]) -> Iterator:
    for split, first, stop in shard.ranges:
        for n in range(first, stop):
            yield readers[split].sample(n)
            progress("exported", 1)


def _write(config: ExportConfig, storage: Storage, shard: Shard, readers, progress) -> dict:
    module = FORMATS[config.format]
    options = {"row_group_size": config.row_group_size} if config.format == "parquet" else \
        {"label": config.label} if config.format == "stylegan" else {}
    with storage.open_write(shard.name) as sink:
        count = module.write_shard(_samples(shard, readers, progress), sink, **options)
    record = {"name": shard.name, "faces": count, "size": sink.size, "md5": sink.md5,
              "splits": sorted({split for split, _, _ in shard.ranges}, key=SPLITS.index)}
    storage.write_bytes(_record_name(shard), json.dumps(record, sort_keys=True))
    return record


def run_export(config: ExportConfig, progress: Optional[Callable[[str, int], None]] = None, *,
               restart: bool = False) -> ExportSummary:
    """Export ``config.dataset`` to ``config.out``; ``restart`` discards an earlier export there first.

    The dataset's lock is held while it is read (:mod:`fdf_build.lock`), so no removal changes it meanwhile.
    """
    with dataset_lock(config.dataset, "fdf-build export", read_only_ok=True):
        return _export_locked(config, progress or (lambda stage, n: None), restart)


def _export_locked(config: ExportConfig, progress: Callable[[str, int], None], restart: bool) -> ExportSummary:
    present = dict(dataset_splits(config.dataset))
    splits = tuple(s for s in SPLITS if s in (config.splits or present))
    missing = [s for s in splits if s not in present]
    if missing:
        raise DatasetError(f"{config.dataset}: no {'/'.join(missing)} split with fdf_metainfo.json")
    readers = {s: SplitReader(present[s], s) for s in splits}
    if config.label:
        _check_labels(config.label, readers)
    shards = plan(config, readers)
    storage = Storage(config.out)
    state = {"settings": config.settings(splits), "dataset": fingerprint(readers)}
    summary = ExportSummary(url=storage.url, faces={s: len(r) for s, r in readers.items()})
    done = _start(config, storage, state, summary, restart)
    todo = [s for s in shards if s.name not in done]
    summary.shards["resumed"] = len(shards) - len(todo)
    progress("exported", sum(done[s.name]["faces"] for s in shards if s.name in done))
    with ThreadPoolExecutor(config.workers, thread_name_prefix="export") as pool:
        for record in pool.map(lambda s: _write(config, storage, s, readers, progress), todo):
            done[record["name"]] = record
            summary.shards["written"] += 1
    manifest = {**state, "faces": summary.faces, "shards": [done[s.name] for s in shards]}
    storage.write_bytes(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    storage.remove(n for n in storage.list(STATE))
    return summary
