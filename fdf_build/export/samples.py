"""The samples of an export: one face of the FDF layout with everything recorded about it, read on demand.

A split is read once (metainfo, arrays, attributes); a face's PNG only when its sample is made, so a shard's
samples stream through the writers without the dataset ever being in memory.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from numpy.typing import NDArray

from ..dataset.archive import own_file
from ..dataset.layout import LANDMARKS68, DatasetError, load_array, load_metainfo
from ..files import read_jsonl

ATTRIBUTES = "attributes.jsonl"


@dataclass(frozen=True)
class Sample:
    """One face, as every format stores it.

    ``record`` is the face's JSON: its ``fdf_metainfo.json`` entry unchanged (FDF's keys and ours: license,
    author, URLs...), plus ``key``, ``split``, ``image`` (its number in the split), ``box`` (``bounding_box.npy``'s
    row: face box x0, y0, x1, y1 in crop pixels) and, where ``fdf-build attributes`` ran, ``attributes`` (the
    face's FFHQ-Features record). ``landmarks`` is ``landmarks.npy``'s ``(7, 2) float32`` row, in [0, 1] of the
    crop, NaN where missing; ``landmarks68`` the ``(68, 2)`` row of builds made with ``--landmarks``.
    """

    key: str
    png: bytes
    record: dict
    landmarks: NDArray[np.float32]
    landmarks68: Optional[NDArray[np.float32]]

    @property
    def split(self) -> str:
        return self.record["split"]

    @property
    def number(self) -> int:
        return self.record["image"]


def sample_key(split: str, number: int) -> str:
    """``train_00000012``: unique across splits, sorting in dataset order, without a dot (WebDataset cuts keys
    at the first dot of a name)."""
    return f"{split}_{number:08d}"


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def record_json(record: dict) -> bytes:
    """A sample's JSON as every format writes it: keys sorted, UTF-8, so the same face gives the same bytes."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")


class SplitReader:
    """One split of a dataset in the FDF layout, for exporting: ``reader.sample(n)`` is face ``n``."""

    def __init__(self, split_dir: Path, split: str):
        self.directory, self.split = Path(split_dir), split
        self.metainfo = load_metainfo(self.directory)
        self.landmarks = load_array(self.directory, "landmarks.npy").astype(np.float32)
        self.boxes = load_array(self.directory, "bounding_box.npy")
        self.landmarks68 = (load_array(self.directory, LANDMARKS68).astype(np.float32)
                            if (self.directory / LANDMARKS68).is_file() else None)
        self.attributes = self._attributes()
        n = len(self.metainfo)
        if sorted(self.metainfo, key=lambda k: int(k) if k.isdigit() else -1) != [str(i) for i in range(n)] \
                or len(self.landmarks) != n or len(self.boxes) != n:
            raise DatasetError(f"{self.directory}: metainfo, landmarks.npy and bounding_box.npy disagree "
                               f"(`fdf-build verify {self.directory.parent}` says how)")

    def _attributes(self) -> Optional[list[dict]]:
        path = self.directory / ATTRIBUTES
        if not path.is_file():
            return None
        try:
            rows = {int(row.pop("image")): row for row in read_jsonl(path)}
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{path}: not a valid {ATTRIBUTES} ({e})") from None
        if sorted(rows) != list(range(len(self.metainfo))):
            raise DatasetError(f"{path}: {len(rows)} records for {len(self.metainfo)} faces; "
                               f"run `fdf-build attributes {self.directory.parent}` again")
        return [rows[n] for n in range(len(rows))]

    def __len__(self) -> int:
        return len(self.metainfo)

    def image_path(self, number: int) -> Path:
        return self.directory / "images" / f"{number}.png"

    def record(self, number: int) -> dict:
        record = {**self.metainfo[str(number)], "key": sample_key(self.split, number), "split": self.split,
                  "image": number, "box": [int(v) for v in self.boxes[number]]}
        if self.attributes is not None:
            record["attributes"] = self.attributes[number]
        return record

    def sizes(self, number: int) -> list[int]:
        """The sizes of a sample's PNG, JSON and arrays, without reading its PNG (for ``--shard-bytes``)."""
        try:
            png = self.image_path(number).stat().st_size
        except FileNotFoundError:
            raise DatasetError(f"{self.image_path(number)}: missing (`fdf-build verify` checks the whole dataset)") \
                from None
        arrays = [len(npy_bytes(self.landmarks[number]))]
        if self.landmarks68 is not None:
            arrays.append(len(npy_bytes(self.landmarks68[number])))
        return [png, len(record_json(self.record(number))), *arrays]

    def sample(self, number: int) -> Sample:
        path = self.image_path(number)
        try:
            with own_file(path) as f:  # the dataset's own file: a link to /etc/passwd is no face
                png = f.read()
        except FileNotFoundError:
            raise DatasetError(f"{path}: missing (`fdf-build verify` checks the whole dataset)") from None
        return Sample(key=sample_key(self.split, number), png=png, record=self.record(number),
                      landmarks=self.landmarks[number],
                      landmarks68=None if self.landmarks68 is None else self.landmarks68[number])
