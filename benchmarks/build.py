"""End-to-end build throughput vs. bare model inference on the same photos (pipeline overhead).

Serves the bundled demo photos (each under --copies different Flickr ids) from
a loopback server and measures, in one process:
  * bare: decode + face detector + keypoint model on every photo, one at a time
    (the inference floor; decode is included because the pipeline must do it too),
  * build: `run_build` end to end (metadata, fetch over HTTP, decode, detect,
    keypoints, crop, PNG encode, staging, merge),
and prints photos/s for each and their ratio.

    python benchmarks/build.py [--copies 6] [--workers 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from fdf_build.config import BuildConfig
from fdf_build.decode import decode_image
from fdf_build.demo import demo_photos
from fdf_build.detect import RetinaFaceDetector
from fdf_build.keypoints import MediaPipePose
from fdf_build.localserver import LocalServer
from fdf_build.metadata import format_line
from fdf_build.pipeline import run_build
from fdf_build.synthetic import synthetic_photo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--keypoints", default="mediapipe", choices=("mediapipe", "none"))
    args = parser.parse_args()

    photos = list(demo_photos().values()) * args.copies
    records, routes = [], {}
    for i, data in enumerate(photos):
        photo = synthetic_photo(i)
        records.append(photo)
        routes[urlsplit(photo.download_url).path] = data

    detector = RetinaFaceDetector()
    pose = MediaPipePose() if args.keypoints == "mediapipe" else None
    first = decode_image(photos[0])
    pose and pose(first, detector(first))  # load the models before timing, as the build does in Stages
    start = time.perf_counter()
    faces = 0
    for data in photos:
        image = decode_image(data)
        found = detector(image)
        if pose:
            found = pose(image, [f for f in found if f.width >= 64 and f.height >= 64])
        faces += len(found)
    bare = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp, LocalServer(routes, max_seconds=600) as server:
        tsv = Path(tmp) / "yfcc.tsv"
        tsv.write_text("".join(format_line(p) + "\n" for p in records))
        config = BuildConfig(
            metadata=str(tsv), out=Path(tmp) / "out", base_url=server.url, workers=args.workers,
            keypoints=args.keypoints, crawl_date="2026-01-01",
        )
        start = time.perf_counter()
        summary = run_build(config)
        built = time.perf_counter() - start

    n = len(photos)
    print(f"{n} photos ({os.cpu_count()} CPUs), keypoints={args.keypoints}")
    print(f"bare decode+detect+keypoints: {n / bare:7.1f} photos/s ({bare:.2f} s)")
    print(f"end-to-end build:             {n / built:7.1f} photos/s ({built:.2f} s), "
          f"{summary.faces['kept']} faces kept")
    print(f"ratio build/bare time: {built / bare:.2f}x (1.0 = no pipeline overhead; <1 = overlap across cores)")


if __name__ == "__main__":
    main()
