"""Selection at scale: peak RSS and throughput of the build's select stage on generated YFCC files.

`fdf-build build` streams the metadata through the reader and the eligibility filters into shards;
this measures that stage alone (no fetching) in a fresh subprocess per file size (YFCC's 581k owners
and millions of tags: see _sizes.py), against a bare line read of the same file, and prints medians
of --repeats and the RSS ratio between the largest and the smallest file (1.0 = memory does not grow
with the input).

    python benchmarks/scale.py [--sizes 1000000,10000000] [--repeats 3] [--dir /tmp/fdf_bench]
"""

from __future__ import annotations

from pathlib import Path

import _sizes


def select(path: str) -> dict:
    from fdf_build.config import BuildConfig
    from fdf_build.pipeline import _chunks, select as select_photos
    from fdf_build.sources.scan import ScanSummary

    summary = ScanSummary()
    config = BuildConfig(metadata=path, out=Path("/nonexistent"))
    shards = _chunks(select_photos(config, summary, lambda stage, n: None), config.shard_size)
    selected = sum(len(shard) for shard in shards)
    return {"lines": summary.lines, "selected": selected}


if __name__ == "__main__":
    _sizes.main(__file__, __doc__, "select", select, "1000000,10000000",
                describe=lambda result: f", {result['selected']:,} eligible")
