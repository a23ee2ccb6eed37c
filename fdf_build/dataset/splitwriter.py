"""Writing one split of the FDF layout face by face, in memory that does not grow with its faces.

FDF256's files want things only the end knows: ``fdf_metainfo.json`` has its keys in string order
(``"0", "1", "10", "100", ...``, as ``json.dumps(sort_keys=True)`` writes them), the ``.npy`` headers
hold the number of faces, and ``attribution.csv`` has one row per photo listing all its faces. So
each face's pieces go to unnamed scratch files as it comes (its metainfo entry, its array rows, its
photo's row once the photo's faces end) with 8 bytes of offset kept per face, and :meth:`close`
assembles the files from them. The bytes are those of a ``json.dumps``/``np.save``/``csv`` of the
whole split held in memory; at 1.5M faces that would take ~15 GiB.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
from array import array
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np

from ..dedup import MISSING, to_uint64
from ..files import link_or_copy, replacing, scratch
from ..records import KEYPOINT_NAMES
from .layout import LANDMARKS68, PHASH
from .metainfo import ATTRIBUTION_FIELDS, CATEGORIES, METAINFO, FaceRecord, attribution_key, attribution_row, \
    points_array

ATTRIBUTION = "attribution.csv"
_LANDMARKS = (len(KEYPOINT_NAMES), 2), np.float32
_BOXES = (4,), np.int64
_LANDMARKS68 = (68, 2), np.float32
_PHASH = (2,), np.uint64  # the crop's pHash, its photo's


def string_order(n: int) -> Iterator[int]:
    """``0..n-1`` in the order of their decimal strings (``sorted(map(str, range(n)))``) without making them."""
    if n > 0:
        yield 0

    def below(prefix: int) -> Iterator[int]:
        if prefix < n:
            yield prefix
            for digit in range(10):
                yield from below(prefix * 10 + digit)

    for first in range(1, 10):
        yield from below(first)


class SplitWriter:
    """Faces in, numbered 0..N-1 in the order :meth:`add` gets them; :meth:`close` writes the split's files.

    ``directory`` must not exist (it is a staging folder, swapped in by the caller). Records get the
    ``category`` of ``split`` (default: the directory's name when it is ``train`` or ``val``).
    Images are hard-linked where possible, so numbering costs no disk space.
    """

    def __init__(self, directory: Path, *, split: Optional[str] = None):
        self.directory = Path(directory)
        self.split = split or (self.directory.name if self.directory.name in CATEGORIES else None)
        self.count = 0
        (self.directory / "images").mkdir(parents=True)
        self._entries, self._offsets = scratch(self.directory), array("q", [0])
        self._landmarks, self._boxes = scratch(self.directory), scratch(self.directory)
        self._landmarks68 = None  # made at the first face that has them: then every face writes a row
        self._phash = None  # the same, for the perceptual hashes
        self._rows = io.TextIOWrapper(scratch(self.directory), encoding="utf-8", newline="")
        self._csv = csv.DictWriter(self._rows, fieldnames=ATTRIBUTION_FIELDS, lineterminator="\n")
        self._photo, self._row = None, None  # the photo whose faces are coming, its row (None: written already)
        self._written: set = set()  # photos whose row is written; one that comes back adds its faces after
        self._late: dict = {}

    def add(self, source: Optional[Path], record: Union[FaceRecord, dict], landmarks: np.ndarray, box) -> None:
        """Face number :attr:`count`: its PNG (None where the split has no image of it, as in a partial
        download), metainfo record, ``(7, 2)`` landmarks in [0, 1] (NaN for missing) and ``(4,)`` box in
        crop pixels."""
        n = self.count
        if not isinstance(record, FaceRecord):
            record = FaceRecord.from_json(None, record, split=self.split)
        if self.split is not None and record.category != CATEGORIES[self.split]:
            record = dataclasses.replace(record, category=CATEGORIES[self.split])
        if source is not None:
            link_or_copy(source, self.directory / "images" / f"{n}.png")
        self._entries.write(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True).encode("utf-8"))
        self._offsets.append(self._entries.tell())
        self._landmarks.write(_row(landmarks, *_LANDMARKS))
        self._boxes.write(_row(box, *_BOXES))
        if record.landmark68 is not None and self._landmarks68 is None:
            self._landmarks68 = scratch(self.directory)
            self._landmarks68.write(_row(np.nan, *_LANDMARKS68) * n)
        if self._landmarks68 is not None:
            self._landmarks68.write(_row(points_array(record.landmark68, n=68), *_LANDMARKS68))
        if record.phash and self._phash is None:
            self._phash = scratch(self.directory)
            self._phash.write(_row(MISSING, *_PHASH) * n)
        if self._phash is not None:
            self._phash.write(_row(to_uint64([record.phash, record.photo_phash]), *_PHASH))
        self._attribute(n, record)
        self.count += 1

    def _attribute(self, n: int, record: FaceRecord) -> None:
        key = attribution_key(record)
        if n == 0 or key != self._photo:
            self._end_photo()
            self._photo = key
            self._row = None if key in self._written else {**attribution_row(record), "images": []}
        if self._row is None:
            self._late.setdefault(key, []).append(str(n))
        else:
            self._row["images"].append(str(n))

    def _end_photo(self) -> None:
        if self._row is not None:
            self._written.add(self._photo)
            self._csv.writerow({**self._row, "images": " ".join(self._row["images"])})
            self._row = None

    def close(self) -> None:
        """Write the split's files, then drop the scratch files."""
        try:
            self._write_metainfo()
            self._write_array("landmarks.npy", self._landmarks, *_LANDMARKS)
            self._write_array("bounding_box.npy", self._boxes, *_BOXES)
            if self._landmarks68 is not None:
                self._write_array(LANDMARKS68, self._landmarks68, *_LANDMARKS68)
            if self._phash is not None:
                self._write_array(PHASH, self._phash, *_PHASH)
            self._write_attribution()
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the scratch files without writing the split (the caller removes the folder)."""
        for f in (self._entries, self._landmarks, self._boxes, self._landmarks68, self._phash, self._rows):
            if f is not None:
                f.close()

    def __enter__(self) -> "SplitWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close() if kind is None else self.discard()

    def _write_metainfo(self) -> None:
        self._entries.flush()
        with replacing(self.directory / METAINFO) as tmp, open(tmp, "wb") as out:
            out.write(b"{")
            for i, n in enumerate(string_order(self.count)):
                start = self._offsets[n]
                self._entries.seek(start)
                out.write(b'%s"%d": %s' % (b", " if i else b"", n, self._entries.read(self._offsets[n + 1] - start)))
            out.write(b"}")

    def _write_array(self, name: str, rows, shape: tuple, dtype) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                  "shape": (self.count, *shape)}
        rows.flush()
        rows.seek(0)
        with replacing(self.directory / name) as tmp, open(tmp, "wb") as out:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(rows, out, 1 << 20)

    def _write_attribution(self) -> None:
        self._end_photo()
        self._rows.flush()
        self._rows.seek(0)
        with replacing(self.directory / ATTRIBUTION) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=ATTRIBUTION_FIELDS, lineterminator="\n")
            writer.writeheader()
            if not self._late:
                shutil.copyfileobj(self._rows, out, 1 << 20)
                return
            # a photo whose faces came in two runs (the same photo id on two lines): its row lists them all
            late = {str(key) if isinstance(key, int) else ("", key): images for key, images in self._late.items()}
            for row in csv.DictReader(self._rows, fieldnames=ATTRIBUTION_FIELDS):
                key = row["photo_id"] or ("", row["photo_url"])
                if key in late:
                    row["images"] = " ".join([row["images"], *late[key]])
                writer.writerow(row)


def _row(values, shape: tuple, dtype) -> bytes:
    """One face's row of an array file, as ``array[n] = values`` would store it."""
    return np.broadcast_to(np.asarray(values, dtype=dtype), shape).tobytes()


def write_split(directory: Path, faces: Iterable[tuple[Path, Union[FaceRecord, dict], np.ndarray, np.ndarray]], *,
                split: Optional[str] = None) -> int:
    """Write one split into the new ``directory`` from (source PNG, record, landmarks, box) per face; the count."""
    with SplitWriter(directory, split=split) as writer:
        for face in faces:
            writer.add(*face)
    return writer.count
