"""End-to-end build throughput vs. bare model inference on the same photos, with the same parallelism.

Serves the bundled demo photos (each under --copies different Flickr ids) from a loopback server and
measures, in one process, --repeats times each (alternating, medians reported):
  * bare: decode + face detector + size filter + keypoint model on every photo, on the build's own
    thread count with the build's own cap on inferences at once (one per CPU), and the same models
    made by the same factory: the inference floor at the build's parallelism;
  * build: `run_build` end to end (metadata, fetch over HTTP, decode, detect, keypoints, crop, PNG encode,
    staging, merge, index), models loaded inside it as a build does; with no --rate cap, as one loopback
    host would otherwise cap it at 20 photos/s (politeness is benchmarks/fetch.py's subject).
The ratio build / bare is the pipeline's overhead, not a difference in parallelism.

    python benchmarks/build.py [--copies 6] [--workers 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _photos import served_demo_photos

from fdf_build.config import DEFAULT_KEYPOINTS, KEYPOINT_MODELS, BuildConfig
from fdf_build.decode import decode_image
from fdf_build.localserver import LocalServer
from fdf_build.models.stack import make_models
from fdf_build.pipeline import run_build
from fdf_build.sources.filters import face_large_enough
from fdf_build.sources.metadata import format_line


def bare(photos: list[bytes], config: BuildConfig, models, cpus: int) -> tuple[float, int]:
    detector, keypoints = models
    slots = threading.Semaphore(cpus)  # as Stages: one CPU inference per core at once

    def one(data: bytes) -> int:
        with slots:
            image = decode_image(data)
            faces = [f for f in detector(image) if face_large_enough(f, config.min_face)]
            if keypoints is not None and faces:
                faces = keypoints(image, faces)
            return len(faces)

    start = time.perf_counter()
    with ThreadPoolExecutor(config.threads) as pool:
        faces = sum(pool.map(one, photos))
    return time.perf_counter() - start, faces


def build(config: BuildConfig) -> tuple[float, int]:
    start = time.perf_counter()
    summary = run_build(config)
    return time.perf_counter() - start, summary.faces["kept"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--workers", type=int, default=16, help="the build's --workers (the CLI default: 16)")
    parser.add_argument("--keypoints", default=DEFAULT_KEYPOINTS, choices=KEYPOINT_MODELS)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    records, routes = served_demo_photos(args.copies)
    photos = list(routes.values())
    cpus = os.cpu_count() or 1
    times = {"bare": [], "build": []}
    with tempfile.TemporaryDirectory() as tmp, LocalServer(routes, max_seconds=3600) as server:
        tsv = Path(tmp) / "yfcc.tsv"
        tsv.write_text("".join(format_line(p) + "\n" for p in records))

        def config(out: str) -> BuildConfig:
            return BuildConfig(metadata=str(tsv), out=Path(tmp) / out, base_url=server.url, workers=args.workers,
                               keypoints=args.keypoints, crawl_date="2026-01-01", rate=None)

        start = time.perf_counter()
        models = make_models(config("bare"), cpus=cpus)
        load = time.perf_counter() - start
        bare(photos[:cpus], config("bare"), models, cpus)  # warm up, as a build's first photos do
        for r in range(args.repeats):
            for side in ("bare", "build") if r % 2 == 0 else ("build", "bare"):
                if side == "bare":
                    seconds, faces = bare(photos, config("bare"), models, cpus)
                else:
                    seconds, faces = build(config(f"out{r}"))
                times[side].append(seconds)
                print(f"  run {r + 1} {side}: {seconds:.2f} s, {faces} faces")

    n = len(photos)
    median = {side: statistics.median(t) for side, t in times.items()}
    print(f"{n} photos, {cpus} CPUs, {BuildConfig(metadata='', out=Path('.'), workers=args.workers).threads} threads,"
          f" keypoints={args.keypoints}, medians of {args.repeats}")
    print(f"bare decode+detect+keypoints: {n / median['bare']:7.1f} photos/s ({median['bare']:.2f} s; "
          f"models loaded once before, {load:.2f} s)")
    print(f"end-to-end build:             {n / median['build']:7.1f} photos/s ({median['build']:.2f} s, "
          f"its model loading included)")
    print(f"ratio build / bare time: {median['build'] / median['bare']:.2f}x (1.0 = no pipeline overhead)")


if __name__ == "__main__":
    main()
