"""Shared harness for the benchmarks that measure throughput and peak RSS over growing YFCC files.

The files have YFCC100M's cardinalities (581k distinct owners, all of them already in the smallest
file; 0-7 user tags a photo from 2M distinct ones), so state kept per owner or per tag is full size at
every file size, and only memory that grows with lines would show. Each file size is measured
--repeats times each way, each time in a fresh subprocess so its peak RSS belongs to that measurement
alone: as a bare line read of the file (the baseline) and as the stage under test; medians of both
are printed. The RSS ratio between the largest and smallest file shows whether memory grows with the input.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from fdf_build.sources.metadata import open_metadata
from fdf_build.sources.synthetic import YFCC_OWNERS, write_yfcc_file


def bare_read(path: str) -> dict:
    with open_metadata(path) as lines:
        return {"lines": sum(1 for _ in lines)}


def _measured(fn: Callable[[str], dict], path: str) -> dict:
    start = time.perf_counter()
    result = fn(path)
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main(script: str, doc: str, name: str, stage: Callable[[str], dict], default_sizes: str,
         describe: Callable[[dict], str] = lambda result: "") -> None:
    """``stage(path)`` runs the stage under test and returns at least ``{"lines": n}``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=default_sizes)
    parser.add_argument("--dir", default="/tmp/fdf_bench")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, mode = args.child
        print(json.dumps(_measured(bare_read if mode == "baseline" else stage, path)))
        return
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    rss = {}
    for n in map(int, args.sizes.split(",")):
        path = Path(args.dir) / f"yfcc_{n}_owners{YFCC_OWNERS}.tsv"
        if not path.exists():
            write_yfcc_file(path, n)
        runs = {"baseline": [], name: []}
        for _ in range(args.repeats):
            for mode in runs:
                runs[mode].append(json.loads(subprocess.run([sys.executable, script, "--child", str(path), mode],
                                                            check=True, capture_output=True, text=True).stdout))
        base, result = ({**r[0], **{k: statistics.median(x[k] for x in r) for k in ("seconds", "peak_rss_mb")}}
                        for r in runs.values())
        rss[n] = result["peak_rss_mb"]
        print(f"{n:>11,} lines: {name} {result['lines'] / result['seconds']:>9,.0f} lines/s{describe(result)} "
              f"(bare read {base['lines'] / base['seconds']:,.0f} lines/s, time ratio "
              f"{result['seconds'] / base['seconds']:.2f}x); peak RSS {result['peak_rss_mb']:.1f} MB "
              f"(bare read {base['peak_rss_mb']:.1f} MB)")
    sizes = sorted(rss)
    print(f"peak RSS ratio {sizes[-1]:,} / {sizes[0]:,} lines: {rss[sizes[-1]] / rss[sizes[0]]:.2f}x")
