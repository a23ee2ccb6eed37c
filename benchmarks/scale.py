"""Selection at scale: peak RSS and throughput of the build's select stage on generated YFCC files.

`fdf-build build` streams the metadata through the reader and the eligibility
filters into shards; this measures that stage alone (no fetching) in a fresh
subprocess per file size, and prints the RSS ratio between the largest and the
smallest file (1.0 = memory does not grow with the input) and lines/s against a
bare line-reading baseline of the same file.

    python benchmarks/scale.py [--sizes 1000000,10000000] [--dir /tmp/fdf_bench]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from fdf_build.synthetic import write_yfcc_file


def child(path: str, mode: str) -> dict:
    from fdf_build.config import BuildConfig
    from fdf_build.metadata import open_metadata
    from fdf_build.pipeline import _chunks, select
    from fdf_build.scan import ScanSummary

    start = time.perf_counter()
    if mode == "baseline":
        with open_metadata(path) as lines:
            n = sum(1 for _ in lines)
        selected = 0
    else:
        summary = ScanSummary()
        config = BuildConfig(metadata=path, out=Path("/nonexistent"))
        selected = sum(len(shard) for shard in _chunks(select(config, summary, lambda s, n: None), config.shard_size))
        n = summary.lines
    seconds = time.perf_counter() - start
    return {"lines": n, "selected": selected, "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--dir", default="/tmp/fdf_bench")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    rss = {}
    for n in map(int, args.sizes.split(",")):
        path = Path(args.dir) / f"yfcc_{n}.tsv"
        if not path.exists():
            write_yfcc_file(path, n)
        run = lambda mode: json.loads(subprocess.run(  # noqa: E731
            [sys.executable, __file__, "--child", str(path), mode], check=True, capture_output=True, text=True).stdout)
        base, sel = run("baseline"), run("select")
        rss[n] = sel["peak_rss_mb"]
        print(f"{n:>11,} lines: select {sel['lines'] / sel['seconds']:>8,.0f} lines/s, {sel['selected']:,} eligible "
              f"(bare read {base['lines'] / base['seconds']:,.0f} lines/s); peak RSS {sel['peak_rss_mb']:.1f} MB "
              f"(bare read {base['peak_rss_mb']:.1f} MB)")
    sizes = sorted(rss)
    print(f"peak RSS ratio {sizes[-1]:,} / {sizes[0]:,} lines: {rss[sizes[-1]] / rss[sizes[0]]:.2f}x")


if __name__ == "__main__":
    main()
