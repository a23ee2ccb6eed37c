"""search_username speed: indexed lookup vs. the original script's json.load + scan, side by side.

Writes an FDF-style fdf_metainfo.json with --faces entries (default 250,000, ~FDF256's size) from
50,000 owners, then times, in this process:
  * baseline: json.load of the whole file and a scan for one NSID (what the original script did),
  * first use: building and writing the index beside the metainfo (once per metainfo version),
  * lookup: opening the index and reading the matching entries (every later search),
and prints the baseline/lookup ratio (target >= 10x).

    python benchmarks/search.py [--faces 250000] [--dir /tmp/fdf_bench]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fdf_build.privacy import INDEX_SUFFIX, search
from fdf_build.synthetic import synthetic_photo


def entry(i: int) -> dict:
    p = synthetic_photo(i // 2, nsid=f"{10_000_000 + (i // 2) % 50_000}@N0{i % 8}")
    return {
        "author": p.user_nickname, "bounding_box": [0.25, 0.25, 0.75, 0.75], "category": "face",
        "date_crawled": "2026-01-01", "date_taken": p.date_taken, "date_uploaded": p.date_uploaded,
        "detector": "retinaface-mobilenet0.25", "face_index": i % 2, "face_score": 0.99,
        "keypoint_model": "mediapipe-pose-full", "keypoints_missing": [],
        "landmark": [[0.5, 0.5], [0.6, 0.4], [0.4, 0.4], [0.7, 0.45], [0.3, 0.45], [0.9, 0.95], [0.1, 0.95]],
        "license": p.license_name, "license_url": p.license_url,
        "original_bounding_box": [100.0, 120.0, 228.0, 248.0],
        "original_landmark": [[164.0, 184.0]] * 7, "page_url": p.page_url, "photo_id": p.photo_id,
        "photo_title": p.title, "photo_url": p.download_url, "user_nsid": p.user_nsid,
        "yfcc100m_line_idx": p.line_number,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=250_000)
    parser.add_argument("--dir", default="/tmp/fdf_bench")
    args = parser.parse_args()
    path = Path(args.dir) / f"search_{args.faces}" / "train" / "fdf_metainfo.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({str(i): entry(i) for i in range(args.faces)}))
    path.with_name(path.name + INDEX_SUFFIX).unlink(missing_ok=True)
    nsid = entry(12_345)["user_nsid"]

    start = time.perf_counter()
    with open(path) as f:
        meta = json.load(f)
    baseline_hits = [k for k, v in meta.items() if v["user_nsid"] == nsid]
    baseline = time.perf_counter() - start
    del meta

    start = time.perf_counter()
    search(path, nsids=["nobody@N00"])  # first use builds the index
    build = time.perf_counter() - start

    timings = []
    for _ in range(5):
        start = time.perf_counter()
        hits = search(path, nsids=[nsid])
        timings.append(time.perf_counter() - start)
    lookup = min(timings)
    assert sorted(m.image for m in hits) == sorted(baseline_hits), "index and scan disagree"

    size = path.stat().st_size / 1e6
    index_size = path.with_name(path.name + INDEX_SUFFIX).stat().st_size / 1e6
    print(f"{args.faces:,} faces, metainfo {size:.0f} MB, index {index_size:.0f} MB, {len(hits)} match(es)")
    print(f"baseline json.load + scan: {baseline:.2f} s")
    print(f"index first use (build):   {build:.2f} s")
    print(f"indexed lookup:            {lookup * 1000:.0f} ms  -> {baseline / lookup:.1f}x faster than baseline")


if __name__ == "__main__":
    main()
