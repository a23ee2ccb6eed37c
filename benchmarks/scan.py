"""Scan throughput and memory: lines/s and peak RSS of `fdf-build scan`'s library path.

Generates YFCC100M-format files (200k and 2M lines by default), then in a fresh
subprocess per file measures:
  * baseline: reading the lines with no parsing (the I/O + decode floor),
  * scan: parse + eligibility + summary, as `fdf-build scan` does,
and prints lines/s, the scan/baseline time ratio, and peak RSS per size; the
RSS ratio between the largest and smallest file shows whether memory grows
with the input.

    python benchmarks/scan.py [--sizes 200000,2000000] [--dir /tmp/fdf_bench]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from fdf_build.metadata import open_metadata, read_photos
from fdf_build.synthetic import write_yfcc_file


def generate(path: Path, n: int) -> None:
    if not path.exists():
        write_yfcc_file(path, n)


def measure(path: str, mode: str) -> dict:
    """Runs in a child process so peak RSS belongs to this measurement alone."""
    from fdf_build.filters import Eligibility
    from fdf_build.scan import scan

    start = time.perf_counter()
    with open_metadata(path) as lines:
        if mode == "baseline":
            n = sum(1 for _ in lines)
        else:
            n = scan(read_photos(lines), Eligibility()).lines
    seconds = time.perf_counter() - start
    return {"lines": n, "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(path: Path, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), mode], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200000,2000000")
    parser.add_argument("--dir", default="/tmp/fdf_bench")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    rss = {}
    for n in map(int, args.sizes.split(",")):
        path = Path(args.dir) / f"yfcc_{n}.tsv"
        generate(path, n)
        base, full = run_child(path, "baseline"), run_child(path, "scan")
        rss[n] = full["peak_rss_mb"]
        print(
            f"{n:>10,} lines: scan {full['lines'] / full['seconds']:>9,.0f} lines/s "
            f"(baseline read {base['lines'] / base['seconds']:,.0f} lines/s, ratio scan/baseline time "
            f"{full['seconds'] / base['seconds']:.2f}x); peak RSS scan {full['peak_rss_mb']:.1f} MB, "
            f"baseline {base['peak_rss_mb']:.1f} MB"
        )
    sizes = sorted(rss)
    print(f"peak RSS ratio {sizes[-1]:,} / {sizes[0]:,} lines: {rss[sizes[-1]] / rss[sizes[0]]:.2f}x")


if __name__ == "__main__":
    main()
