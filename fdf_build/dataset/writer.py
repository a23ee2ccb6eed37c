"""Writing: shards, their merge and the FDF layout.

A build writes in two steps:

1. **Shards** (``OUT/.work/shard_NNNNN/``): each face crop as a PNG named by
   YFCC line number and face index, a ``faces.jsonl`` of their metadata, a
   ``photos.jsonl`` of every photo's outcome, and ``_stats.json`` written last,
   which marks the shard complete. A killed build redoes only shards without it.
2. **Merge**: faces of all shards, in (line number, face index) order, are
   split by author and numbered from 0 into FDF256's layout
   (``{train,val}/images/<n>.png``, ``landmarks.npy``, ``bounding_box.npy``,
   ``fdf_metainfo.json``, ``attribution.csv``). Each split is assembled in a
   temporary directory and swapped in, so readers see the old or the new split.

Every file goes through :mod:`fdf_build.files`, so no reader ever sees half a file.
What a face's metainfo entry and the attribution file hold is
:mod:`fdf_build.dataset.metainfo`'s; this module only writes them.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import cv2
import numpy as np

from ..files import atomic_write, jsonl, new_staging_dir, read_jsonl, swap_in, write_json
from ..geometry import GEOMETRY_FILE, CropGeometry
from ..records import FaceCrop, Photo, SkipReason
from ..sources.metadata import format_line, parse_line
from ..split import SPLITS, split_of
from .loaders import as_mapping, load_json, require
from .metainfo import FaceRecord
from .splitwriter import SplitWriter

STATS_NAME = "_stats.json"


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


class ShardWriter:
    """Stages one shard's faces and photo outcomes; :meth:`close` writes the completion marker last.

    Each photo row keeps the counts of what happened to it, so the shard's stats
    are derived from its rows, and a reopened shard (``retry-failed``) stays
    consistent after some rows are replaced.
    """

    def __init__(self, directory: Path, *, detector: str, crawl_date: str, reopen: bool = False):
        self.directory = Path(directory)
        self.detector, self.crawl_date = detector, crawl_date
        self._lock = threading.Lock()  # add_* are called from the pipeline's worker threads
        if reopen:
            self._faces = list(read_jsonl(self.directory / "faces.jsonl"))
            self._photos = list(read_jsonl(self.directory / "photos.jsonl"))
            return
        if self.directory.exists():
            shutil.rmtree(self.directory)  # a partial shard from a killed run: redo it whole
        (self.directory / "faces").mkdir(parents=True)
        self._faces: list[dict] = []
        self._photos: list[dict] = []

    def add_face(self, c: FaceCrop) -> None:
        self.add_faces([c])

    def add_faces(self, crops: list[FaceCrop]) -> None:
        """One photo's faces, all or none: every record and PNG is made before any is staged."""
        staged = []
        for c in crops:
            name = f"{c.photo.line_number}_{c.face_index}.png"
            record = FaceRecord.from_crop(c, detector=self.detector, crawl_date=self.crawl_date).to_json()
            record["_file"] = name
            record["_box_px"] = [int(v) for v in c.box]
            staged.append((name, encode_png(c.image), record))
        for name, png, _ in staged:
            atomic_write(self.directory / "faces" / name, png)
        with self._lock:
            self._faces.extend(record for _, _, record in staged)

    def add_photo(self, photo: Photo, url: str, status: str, counts: Counter, detail: str = "") -> None:
        row = {"line": photo.line_number, "photo_id": photo.photo_id, "url": url, "status": status,
               "detail": detail, "counts": dict(counts)}
        if status not in ("ok", SkipReason.BLOCKLISTED.value):
            row["yfcc"] = format_line(photo)  # what `retry-failed` needs to try it again
        with self._lock:
            self._photos.append(row)

    def take_photos(self, statuses: Iterable[str], *, unless: Callable[[Photo], bool] = lambda photo: False) -> list[Photo]:
        """Remove the rows (and any faces) of photos whose status is in ``statuses``; return those photos.

        Photos for which ``unless`` is true (blocklisted since) keep their rows and are not returned.
        """
        statuses = set(statuses)
        taken = [r for r in self._photos if r["status"] in statuses and not unless(parse_line(r["yfcc"], 0))]
        lines = {r["line"] for r in taken}
        self._photos = [r for r in self._photos if r["line"] not in lines]
        self._faces = [f for f in self._faces if int(f["yfcc100m_line_idx"]) not in lines]
        return [parse_line(r["yfcc"], 0) for r in taken]

    def stats(self) -> dict:
        counts = Counter()
        for row in self._photos:
            counts.update(row["counts"])
        return {
            "photos": {k: counts[k] for k in ("tried", "fetched")},
            "faces": {k: counts[k] for k in ("found", "too_small", "unmatched", "kept")},
            "skipped": {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("skip:")},
        }

    def close(self) -> dict:
        order = lambda r: (int(r["yfcc100m_line_idx"]), r["face_index"])  # noqa: E731
        atomic_write(self.directory / "faces.jsonl", jsonl(sorted(self._faces, key=order), ensure_ascii=False))
        atomic_write(self.directory / "photos.jsonl", jsonl(sorted(self._photos, key=lambda r: r["line"])))
        stats = self.stats()
        write_json(self.directory / STATS_NAME, stats)
        return stats


def completed_stats(directory: Path) -> Optional[dict]:
    """A completed shard's stats (its completion marker), None for a shard not completed; checked."""
    path = Path(directory) / STATS_NAME
    if not path.is_file():
        return None
    stats = load_json(path, "a shard's stats")
    require(isinstance(stats, dict) and all(isinstance(stats.get(k), dict) for k in ("photos", "faces", "skipped")),
            path, "not a shard's stats (photos, faces and skipped counts); delete the shard's folder to redo it")
    return stats


def write_geometry(root: Path, geometry: CropGeometry) -> None:
    """``crop_geometry.json`` at the dataset's root: how its crops were cut (see :class:`CropGeometry`)."""
    write_json(Path(root) / GEOMETRY_FILE, geometry.to_json())


def staged_records(shard_dirs: Iterable[Path]) -> Iterator[FaceRecord]:
    """Every face the shards staged, in shard order, as a record (numbered and split later, by the merge)."""
    for shard in shard_dirs:
        for entry in read_jsonl(Path(shard) / "faces.jsonl"):
            yield FaceRecord.from_json(None, entry)


def merge_shards(shard_dirs: Iterable[Path], out: Path, *, val_fraction: float,
                 exclude: Callable[[FaceRecord], bool] = lambda record: False) -> Counter:
    """Number every staged face into the FDF layout under ``out``; returns faces per split.

    One pass over the shards' faces, each face streamed into its split's staging folder
    (:class:`SplitWriter`), so memory stays flat however many faces there are; each split is then
    swapped in whole. Faces whose record ``exclude`` is true for (removed or blocklisted since they
    were staged) are left out.
    """
    out = Path(out)
    writers: dict[str, SplitWriter] = {}
    try:
        for split in SPLITS:
            writers[split] = SplitWriter(new_staging_dir(out, f".{split}.") / "split", split=split)
        for shard in shard_dirs:
            for entry in read_jsonl(shard / "faces.jsonl"):
                source, box = shard / "faces" / entry.pop("_file"), entry.pop("_box_px")
                record = FaceRecord.from_json(None, entry)
                if not exclude(record):
                    writers[split_of(record.user_nsid, val_fraction)].add(source, record, record.landmark_array(), box)
        counts = Counter()
        for split, writer in writers.items():
            writer.close()
            swap_in(writer.directory, out / split)
            writer.directory.parent.rmdir()
            counts[split] = writer.count
        return counts
    except BaseException:
        for writer in writers.values():  # a staging folder must not outlive the merge: it may hold removed faces
            writer.discard()
            shutil.rmtree(writer.directory.parent, ignore_errors=True)
        raise


def purge_shard(shard: Path, blocked: Callable[[Optional[str], Optional[int]], bool]) -> Optional[int]:
    """Delete a completed shard's faces of blocked owners or photos (``blocked(user_nsid, photo_id)``), PNGs too.

    Split images are hard links to shard PNGs, so a removal is only complete once the shards lose them as
    well; blocked photos' rows become ``blocklisted`` (without the metadata a retry would need). Returns
    the faces deleted, None for an incomplete shard (left alone). The PNGs go first, then the lists that
    name them: a purge killed halfway is found again, and finished, by the next one.
    """
    shard = Path(shard)
    if completed_stats(shard) is None:
        return None
    faces = list(read_jsonl(shard / "faces.jsonl"))
    gone = [f for f in faces if blocked((r := FaceRecord.from_json(None, f)).user_nsid, r.photo_id)]
    photos = list(read_jsonl(shard / "photos.jsonl"))
    changed = False
    for row in photos:
        if "yfcc" in row:
            photo = parse_line(row["yfcc"], 0)
            if blocked(photo.user_nsid, photo.photo_id):
                row.update(status=SkipReason.BLOCKLISTED.value, detail="removed on request")
                del row["yfcc"]
                changed = True
    if gone:
        names = {f["_file"] for f in gone}
        for name in sorted(names):
            (shard / "faces" / name).unlink(missing_ok=True)
        atomic_write(shard / "faces.jsonl", jsonl((f for f in faces if f["_file"] not in names), ensure_ascii=False))
    if changed:
        atomic_write(shard / "photos.jsonl", jsonl(photos))
    return len(gone)


def read_attributes(directory: Path, count: int) -> Optional[list]:
    """A split's per-face attributes (``attributes.jsonl``, else ``attributes/<n>.json``) in image order, or None
    when it has none; a DatasetError when they cannot be read or some face has none."""
    directory = Path(directory)
    by_image = {}
    if (directory / "attributes.jsonl").is_file():
        for row in read_jsonl(directory / "attributes.jsonl"):
            image = row.pop("image", None)
            require(type(image) is int, directory / "attributes.jsonl", f"a row without an image number: {row}"[:200])
            by_image[image] = row
    elif (directory / "attributes").is_dir():
        for path in (directory / "attributes").glob("*.json"):
            if path.stem.isdigit():
                by_image[int(path.stem)] = as_mapping(load_json(path, "a face's attributes"), path,
                                                      "a face's attributes")
    else:
        return None
    missing = sorted(set(range(count)) - set(by_image))
    require(not missing, directory, f"attributes of {len(missing)} face(s) missing (e.g. {missing[:5]}); run "
                                    "`fdf-build attributes` again, or delete attributes/ and attributes.jsonl")
    return [by_image[i] for i in range(count)]


def write_attributes(split_dir: Path, records: list[dict]) -> None:
    """``attributes/<n>.json`` per face (FFHQ-Features layout) and all of them in ``attributes.jsonl``, their keys in
    FFHQ-Features' order (``image`` first in the jsonl)."""
    folder = Path(split_dir) / "attributes"
    folder.mkdir(exist_ok=True)
    for n, record in enumerate(records):
        write_json(folder / f"{n}.json", record, sort_keys=False)
    atomic_write(Path(split_dir) / "attributes.jsonl",
                 jsonl(({"image": n, **r} for n, r in enumerate(records)), sort_keys=False))
