"""The merge as it was before the streaming one (main at 19594f5): every face of a split held in memory,
then each file written whole. Kept here only as the baseline the streaming merge is timed against and
must equal byte for byte (benchmarks/scale.py --merge); the library no longer has it."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np

from fdf_build.dataset.layout import LANDMARKS68
from fdf_build.dataset.metainfo import ATTRIBUTION_FIELDS, CATEGORIES, METAINFO, FaceRecord, points_array
from fdf_build.files import atomic_write, link_or_copy, new_staging_dir, read_jsonl, swap_in
from fdf_build.records import KEYPOINT_NAMES
from fdf_build.split import SPLITS, split_of


def merge_in_memory(shard_dirs, out: Path, *, val_fraction: float, exclude=lambda record: False) -> Counter:
    out = Path(out)
    per_split: dict[str, list] = {s: [] for s in SPLITS}
    for shard in shard_dirs:
        for entry in read_jsonl(shard / "faces.jsonl"):
            source, box = shard / "faces" / entry.pop("_file"), entry.pop("_box_px")
            record = FaceRecord.from_json(None, entry)
            if exclude(record):
                continue
            per_split[split_of(record.user_nsid, val_fraction)].append((source, record, record.landmark_array(), box))
    counts = Counter()
    for split, faces in per_split.items():
        staging = new_staging_dir(out, f".{split}.")
        _write_split(staging / "split", faces, split=split)
        swap_in(staging / "split", out / split)
        staging.rmdir()
        counts[split] = len(faces)
    return counts


def _write_split(directory: Path, faces: list, *, split: str) -> None:
    (directory / "images").mkdir(parents=True)
    metainfo, numbered = {}, []
    landmarks = np.zeros((len(faces), len(KEYPOINT_NAMES), 2), dtype=np.float32)
    boxes = np.zeros((len(faces), 4), dtype=np.int64)
    for n, (source, record, face_landmarks, box) in enumerate(faces):
        record = dataclasses.replace(record, category=CATEGORIES[split], image=n)
        link_or_copy(source, directory / "images" / f"{n}.png")
        landmarks[n], boxes[n] = face_landmarks, box
        metainfo[str(n)] = record
        numbered.append((n, record))
    _save_npy(directory / "landmarks.npy", landmarks)
    _save_npy(directory / "bounding_box.npy", boxes)
    if any(record.landmark68 is not None for _, record in numbered):
        landmarks68 = np.full((len(faces), 68, 2), np.nan, dtype=np.float32)
        for n, record in numbered:
            if record.landmark68 is not None:
                landmarks68[n] = points_array(record.landmark68, n=68)
        _save_npy(directory / LANDMARKS68, landmarks68)
    atomic_write(directory / METAINFO, json.dumps({key: r.to_json() for key, r in metainfo.items()},
                                                  ensure_ascii=False, sort_keys=True))
    atomic_write(directory / "attribution.csv", _attribution_csv(numbered))


def _attribution_csv(faces) -> str:
    rows: dict = {}
    for n, r in faces:
        row = rows.setdefault(r.photo_id if r.photo_id is not None else r.photo_url, {
            "photo_id": r.photo_id, "author": r.author, "user_nsid": r.user_nsid, "title": r.photo_title,
            "photo_url": r.photo_url, "download_url": r.download_url, "license": r.license,
            "license_url": r.license_url, "images": [],
        })
        row["images"].append(str(n))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ATTRIBUTION_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows.values():
        writer.writerow({**row, "images": " ".join(row["images"])})
    return out.getvalue()


def _save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write(path, buf.getvalue())
