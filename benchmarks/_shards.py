"""Synthetic build shards for the merge benchmarks, written the way ShardWriter writes them.

Each face's record is a ``FaceRecord`` of a synthetic YFCC photo (the fields ``FaceRecord.from_crop`` fills,
with varied ids, owners, titles with commas, quotes and non-ASCII, 1-3 faces a photo, missing keypoints),
serialised as ``ShardWriter.close`` does (``faces.jsonl`` sorted by line and face, ``_stats.json`` last).
The PNGs are one tiny real PNG per face (the merge links them, it never reads them), so a million
faces take ~1M inodes, not 100 GB.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fdf_build.dataset.metainfo import FaceRecord, crawl_date_form, upload_date
from fdf_build.dataset.writer import STATS_NAME
from fdf_build.files import atomic_write, jsonl, write_json
from fdf_build.sources.synthetic import synthetic_photo

_PNG = cv2.imencode(".png", np.full((8, 8, 3), 127, np.uint8))[1].tobytes()
_TITLES = ("portrait", 'a "quoted", title', "été à Zürich", "line\nbreak", "")


def face_entry(i: int, k: int, *, owners: int, landmarks68: bool = False) -> dict:
    """Face ``k`` of synthetic photo ``i`` as a ``faces.jsonl`` row (``_file`` and ``_box_px`` included)."""
    owner = (i * 7_919) % owners
    p = synthetic_photo(i, license=("by", "by-sa", "by-nc", "by-nc-sa")[i % 4],
                        nsid=f"{10_000_000 + owner}@N0{owner % 8}", user_nickname=f"user {owner}",
                        title=f"{_TITLES[i % len(_TITLES)]} {i}")
    r = np.random.default_rng(i * 4 + k)
    landmark = [None if r.random() < 0.2 else (round(float(x), 6), round(float(y), 6)) for x, y in r.random((7, 2))]
    box = [int(v) for v in sorted(r.integers(0, 256, 4))]
    record = FaceRecord(
        author=p.user_nickname, bounding_box=tuple(round(v / 256, 6) for v in box), date_crawled=crawl_date_form("2026-01-01"),
        date_taken=p.date_taken, date_uploaded=upload_date(p.date_uploaded), landmark=tuple(landmark),
        license=p.license_name, license_url=p.license_url,
        original_bounding_box=tuple(round(float(v) * 3.1, 2) for v in box),
        original_landmark=tuple(None if q is None else (round(q[0] * 700, 2), round(q[1] * 500, 2)) for q in landmark),
        photo_title=p.title, photo_url=p.page_url, yfcc100m_line_idx=p.line_number, user_nsid=p.user_nsid,
        photo_id=p.photo_id, download_url=p.download_url, face_index=k, face_score=round(float(r.random()), 6),
        detector="retinaface", keypoint_model="blazepose",
        keypoint_scores=tuple(None if q is None else round(float(r.random()), 4) for q in landmark),
        keypoints_missing=tuple(str(n) for n, q in enumerate(landmark) if q is None),
        landmark68=tuple((round(float(x), 6), round(float(y), 6)) for x, y in r.random((68, 2))) if landmarks68 else None,
    )
    return {**record.to_json(), "_file": f"{p.line_number}_{k}.png", "_box_px": box}


def write_shards(root: Path, faces: int, *, shard_faces: int = 10_000, owners: int = 300_000,
                 landmarks68: bool = False) -> list[Path]:
    """``faces`` faces (1-3 a photo) in shards of about ``shard_faces``; returns the shard folders in order."""
    root = Path(root)
    shards, rows, photo = [], [], 0

    def flush():
        shard = root / f"shard_{len(shards):05d}"
        (shard / "faces").mkdir(parents=True)
        for row in rows:
            (shard / "faces" / row["_file"]).write_bytes(_PNG)
        atomic_write(shard / "faces.jsonl", jsonl(rows, ensure_ascii=False))
        write_json(shard / STATS_NAME, {"photos": {}, "faces": {"kept": len(rows)}, "skipped": {}})
        shards.append(shard)
        rows.clear()

    made = 0
    while made < faces:
        for k in range(min(1 + photo % 3, faces - made)):
            rows.append(face_entry(photo, k, owners=owners, landmarks68=landmarks68))
            made += 1
        photo += 1
        if len(rows) >= shard_faces:
            flush()
    if rows:
        flush()
    return shards
