"""search_username speed: whole-process search with the SQLite index vs. the original script's json.load + scan.

Writes an FDF-style fdf_metainfo.json with --faces entries (default 250,000, ~FDF256's size) from
50,000 owners, then runs, each as its own process, --runs times (default 3):
  * baseline: python, json.load of the whole file and a scan for one NSID (what the original script did),
  * search: ``python search_username.py METAINFO --user_nsid=NSID --json`` with the index in place,
and prints the median wall time and the peak RSS of each, their ratio (goal: >= 30x, RSS <= 120 MB), and
the one-off cost of building the index (``index_dataset``, as builds and downloads do).

    python benchmarks/search.py [--faces 250000] [--runs 3] [--dir /tmp/fdf_bench]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fdf_build.privacy.index import INDEX_SUFFIX, index_dataset
from fdf_build.sources.synthetic import synthetic_photo

REPO = Path(__file__).resolve().parents[1]
BASELINE = """
import json, sys
with open(sys.argv[1]) as f:
    meta = json.load(f)
print(json.dumps(sorted(k for k, v in meta.items() if v["user_nsid"] == sys.argv[2])))
"""


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


#: Runs each command in a small parent of its own: Linux carries a parent's peak RSS over fork and exec into
#: the child's ru_maxrss, so children of this (large) process would all report its size.
RUNNER = """
import json, os, subprocess, sys, time
results = []
for args in json.loads(sys.argv[1]):
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    results.append({"wall": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime,
                    "rss_mb": usage.ru_maxrss / 1024, "status": os.waitstatus_to_exitcode(status), "out": out})
print(json.dumps(results))
"""


def run_each(commands: list[list[str]]) -> list[dict]:
    """Wall time, CPU time, peak RSS and stdout of each command, run one after the other."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(commands)], env=env, check=True,
                          stdout=subprocess.PIPE, text=True)
    results = json.loads(done.stdout)
    for command, result in zip(commands, results):
        if result["status"] != 0:
            raise SystemExit(f"{command} failed with exit status {result['status']}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=250_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/fdf_bench")
    args = parser.parse_args()
    path = Path(args.dir) / f"search_{args.faces}" / "train" / "fdf_metainfo.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({str(i): entry(i) for i in range(args.faces)}))
    path.with_name(path.name + INDEX_SUFFIX).unlink(missing_ok=True)
    nsid = entry(12_345)["user_nsid"]

    start = time.perf_counter()
    index_dataset(path.parent.parent)
    build = time.perf_counter() - start

    baseline = run_each([[sys.executable, "-c", BASELINE, str(path), nsid]] * args.runs)
    searched = run_each([[sys.executable, str(REPO / "search_username.py"), str(path), f"--user_nsid={nsid}",
                          "--json"]] * args.runs)
    expected = json.loads(baseline[0]["out"])
    for result in searched:
        assert sorted(str(m["image"]) for m in json.loads(result["out"])) == expected, "index and scan disagree"

    def median(results, key):
        return statistics.median(r[key] for r in results)

    size = path.stat().st_size / 1e6
    index_size = path.with_name(path.name + INDEX_SUFFIX).stat().st_size / 1e6
    print(f"{args.faces:,} faces, metainfo {size:.0f} MB, index {index_size:.0f} MB, {len(expected)} match(es); "
          f"medians of {args.runs} whole-process runs each (CPU = user + system time)")
    for name, results in (("baseline python + json.load + scan", baseline), ("search_username.py (indexed)", searched)):
        print(f"{name:36s} wall {median(results, 'wall') * 1000:7.0f} ms, CPU {median(results, 'cpu') * 1000:7.0f} ms, "
              f"peak RSS {max(r['rss_mb'] for r in results):.0f} MB")
    print(f"ratio: {median(baseline, 'wall') / median(searched, 'wall'):.1f}x faster in wall time, "
          f"{median(baseline, 'cpu') / median(searched, 'cpu'):.1f}x in CPU time (goal >= 30x); "
          f"search peak RSS {max(r['rss_mb'] for r in searched):.0f} MB (goal <= 120 MB)")
    print(f"index build, once per metainfo version (index_dataset): {build:.2f} s")


if __name__ == "__main__":
    main()
