"""Scan throughput and memory: lines/s and peak RSS of `fdf-build scan`'s library path.

Generates YFCC100M-format files (1M and 4M lines by default, YFCC's 581k owners in both: see
_sizes.py) and measures, each in a fresh subprocess, a bare line read (the I/O + decode floor) and the
scan (column checks + eligibility + summary with its exact distinct-owner counts, as `fdf-build scan` does);
prints lines/s, the scan/baseline time ratio and peak RSS per size (medians of --repeats), and the RSS
ratio between the largest and smallest file. benchmarks/scale.py compares the scan with bzcat on a .bz2.

    python benchmarks/scan.py [--sizes 1000000,4000000] [--repeats 3] [--dir /tmp/fdf_bench]
"""

from __future__ import annotations

import _sizes


def scan(path: str) -> dict:
    from fdf_build.sources.filters import Eligibility
    from fdf_build.sources.scan import ScanSummary, scan_file

    summary = scan_file(path, Eligibility(), ScanSummary()).to_dict()
    return {"lines": summary["lines"], "authors": summary["authors"]}


if __name__ == "__main__":
    _sizes.main(__file__, __doc__, "scan", scan, "1000000,4000000",
                describe=lambda result: f", {result['authors']:,} owners")
