"""Rehydration throughput vs. a build of the same photos (what publishing metadata only costs a user).

Serves the bundled demo photos (each under --copies different Flickr ids) from
a loopback server and measures, in one process, photos/s of:
  * build: `run_build` end to end (fetch, decode, detect, keypoints, crop, write, merge),
  * rehydrate: that build packed with --metadata-only, downloaded, and `rehydrate`d
    from the same server (fetch, decode, recut, PNG encode, md5 check, write);
no detector or keypoint model runs in the second. Checks that every face came back
byte-identical, and prints the ratio.

    python benchmarks/rehydrate.py [--copies 6] [--workers 8] [--keypoints mediapipe|none]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _photos import served_demo_photos

from fdf_build.config import BuildConfig
from fdf_build.dataset.archive import pack, safe_extract
from fdf_build.localserver import LocalServer
from fdf_build.pipeline import run_build
from fdf_build.rehydrate import RehydrateConfig, rehydrate
from fdf_build.sources.metadata import format_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--keypoints", default="mediapipe", choices=("mediapipe", "none"))
    args = parser.parse_args()

    records, routes = served_demo_photos(args.copies)
    photos = list(routes.values())

    with tempfile.TemporaryDirectory() as tmp, LocalServer(routes, max_seconds=1200) as server:
        tmp = Path(tmp)
        tsv = tmp / "yfcc.tsv"
        tsv.write_text("".join(format_line(p) + "\n" for p in records))
        config = BuildConfig(metadata=str(tsv), out=tmp / "build", base_url=server.url, workers=args.workers,
                             keypoints=args.keypoints, crawl_date="2026-01-01", val_fraction=0.5)
        start = time.perf_counter()
        built = run_build(config)
        build_s = time.perf_counter() - start

        pack(tmp / "build", tmp / "mirror", metadata_only=True)
        safe_extract(tmp / "mirror" / "metainfo.zip", tmp / "copy")
        start = time.perf_counter()
        summary = rehydrate(RehydrateConfig(dataset=tmp / "copy", base_url=server.url, workers=args.workers, rate=None))
        rehydrate_s = time.perf_counter() - start

    n_build = built.photos["tried"]
    n_rehydrate = summary.photos["published"]  # photos with kept faces: the ones a rehydration fetches
    faces = summary.faces
    assert faces["identical"] == faces["published"] == built.faces["kept"], faces
    print(f"{len(photos)} photos ({os.cpu_count()} CPUs), keypoints={args.keypoints}, workers={args.workers}")
    print(f"build:     {n_build / build_s:7.1f} photos/s ({n_build} photos in {build_s:.2f} s), "
          f"{built.faces['kept']} faces kept")
    print(f"rehydrate: {n_rehydrate / rehydrate_s:7.1f} photos/s ({n_rehydrate} photos with faces in "
          f"{rehydrate_s:.2f} s), {faces['identical']} of {faces['published']} faces byte-identical")
    print(f"ratio rehydrate/build photos/s: {(n_rehydrate / rehydrate_s) / (n_build / build_s):.1f}x")


if __name__ == "__main__":
    main()
