"""Scale: the scan against the decompressor on a YFCC-sized .bz2, and the merge and index at 100k and 1M faces.

scan: a generated YFCC100M-format file (--lines, YFCC's 581k owners and 2M tags: see _sizes.py), bzip2'd.
Each repeat runs, interleaved, each in a fresh process: `bzcat` (the baseline), `lbzip2 -dc` (where
installed), `fdf-build scan FILE --json` as a user runs it (with lbzip2 where installed), the scan with
Python's bz2 in a thread (what a machine without lbzip2 gets), both of those pinned to one core with bzcat
pinned beside them (`taskset -c 0`), and the build's select stage: as a resumed build runs it (lines
counted and grouped into shards, none decoded) and as a fresh one does (every eligible line decoded into a
Photo, which a build does just before fetching it). Prints medians of wall and CPU (user + sys, children
included) seconds and the ratios.

merge: synthetic shards of --faces faces, written as ShardWriter writes them (_shards.py), merged by the
streaming merge and by the in-memory merge it replaced (_merge_reference.py), interleaved, each in a fresh
process, then indexed for search (index_dataset); prints time and peak RSS, checks that both merges wrote
the same bytes (metainfo, arrays, attribution) and linked the same shard PNG under every number.

    python benchmarks/scale.py scan [--lines 1000000] [--repeats 3] [--dir /tmp/fdf_bench]
    python benchmarks/scale.py merge [--faces 100000,1000000] [--repeats 1] [--reference-up-to 1000000]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FDF_BUILD = Path(sys.executable).with_name("fdf-build")


def run(command: list[str], *, output: bool = True) -> dict:
    """Wall and CPU seconds (user + sys of the process and what it waited for) and peak RSS of one command."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE if output else subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    out = process.stdout.read() if output else b""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} exited with {process.returncode}")
    return {"wall": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "out": out}


def child(*args: str) -> list[str]:
    return [sys.executable, __file__, "child", *args]


def child_main(mode: str, path: str, *rest: str) -> None:
    """What one measured process does; prints a JSON result."""
    sys.path.insert(0, str(HERE))
    from fdf_build.sources import stream
    from fdf_build.sources.filters import Eligibility
    from fdf_build.sources.scan import ScanSummary, scan_file

    from _merge_reference import merge_in_memory
    from fdf_build.config import BuildConfig
    from fdf_build.dataset.writer import merge_shards
    from fdf_build.pipeline import _chunks, select
    from fdf_build.privacy.index import index_dataset

    result, start = {}, time.perf_counter()
    if mode.startswith("scan"):
        if mode == "scan-stdlib":
            stream.FORMATS = tuple(f[:3] + ((),) for f in stream.FORMATS)
        result = scan_file(path, Eligibility(), ScanSummary()).to_dict()
    elif mode.startswith("select"):
        summary = ScanSummary()
        config = BuildConfig(metadata=path, out=Path("/nonexistent"))
        selected = 0
        for shard in _chunks(select(config, summary, lambda stage, n: None), config.shard_size):
            if mode == "select-decoded":
                shard = [line.photo() for line in shard]
            selected += len(shard)
        result = {"lines": summary.lines, "selected": selected}
    elif mode in ("merge", "reference"):
        shards, out = sorted(Path(path).glob("shard_*")), Path(rest[0])
        merge = merge_shards if mode == "merge" else merge_in_memory
        counts = merge(shards, out, val_fraction=0.1, exclude=lambda record: record.photo_id % 101 == 0)
        result = {"faces": sum(counts.values())}
    elif mode == "index":
        index_dataset(Path(path))
    result["seconds"] = time.perf_counter() - start  # the stage alone, without starting Python and importing
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def bench_scan(args) -> None:
    from fdf_build.sources.synthetic import write_yfcc_file

    tsv = Path(args.dir) / f"yfcc_{args.lines}.tsv"
    bz2_path = tsv.with_suffix(".tsv.bz2")
    if not bz2_path.exists():
        if not tsv.exists():
            write_yfcc_file(tsv, args.lines)
        with open(bz2_path.with_suffix(".part"), "wb") as f:
            subprocess.run(["bzip2", "-9", "-c", str(tsv)], stdout=f, check=True)
        bz2_path.with_suffix(".part").rename(bz2_path)
    path = str(bz2_path)
    one_core = ["taskset", "-c", "0"] if shutil.which("taskset") else None
    commands = {"bzcat": ["bzcat", path]}
    if shutil.which("lbzip2"):
        commands["lbzip2 -dc"] = ["lbzip2", "-dc", path]
    commands["fdf-build scan"] = [str(FDF_BUILD), "scan", path, "--json"]
    commands["scan, Python bz2"] = child("scan-stdlib", path)
    if one_core:
        commands["bzcat, 1 core"] = one_core + ["bzcat", path]
        commands["scan, Python bz2, 1 core"] = one_core + child("scan-stdlib", path)
    commands["scan (library)"] = child("scan", path)
    commands["select, resumed build"] = child("select", path)
    commands["select, fresh build (decoded)"] = child("select-decoded", path)
    runs: dict[str, list] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            python = "--json" in command or "child" in command
            runs[name].append({**run(command, output=python), "python": python})
            if runs[name][-1]["out"].startswith(b"{"):
                runs[name][-1].update(json.loads(runs[name][-1]["out"]))
    scan_counts = runs["fdf-build scan"][0]
    print(f"{args.lines:,} lines, {bz2_path.stat().st_size / 1e6:.1f} MB .bz2 ({scan_counts['eligible']:,} eligible, "
          f"{scan_counts['authors']:,} owners); medians of {args.repeats}, load average {os.getloadavg()[0]:.1f} at the end:")
    base = {key: median(runs["bzcat"], key) for key in ("wall", "cpu")}
    for name, rs in runs.items():
        wall, cpu = median(rs, "wall"), median(rs, "cpu")
        extra = ""
        if rs[0]["python"]:
            extra = f", peak RSS {median(rs, 'rss_mb'):.0f} MB"
        if "seconds" in rs[0]:
            extra += f", the stage alone {median(rs, 'seconds'):.2f} s"
        print(f"  {name:<30} {wall:7.2f} s wall ({wall / base['wall']:.2f}x bzcat), {cpu:7.2f} s CPU "
              f"({cpu / base['cpu']:.2f}x){extra}")
    scan_stage = median(runs["scan (library)"], "seconds")
    for name in ("select, resumed build", "select, fresh build (decoded)"):
        print(f"  {name} / scan, the stages alone: {median(runs[name], 'seconds') / scan_stage:.2f}x")
    if one_core:
        pinned = median(runs["scan, Python bz2, 1 core"], "wall") / median(runs["bzcat, 1 core"], "wall")
        print(f"  on one core, scan / bzcat: {pinned:.2f}x wall")
    scan_wall = median(runs["fdf-build scan"], "wall")
    lines_per_s = args.lines / scan_wall
    print(f"  extrapolated (not measured) to YFCC100M's 100M lines at this rate: {1e8 / lines_per_s / 60:.0f} min for "
          f"fdf-build scan, {1e8 / args.lines * base['wall'] / 60:.0f} min for bzcat")


def same_output(a: Path, b: Path) -> list[str]:
    """Differences between merged datasets a (indexed since) and b: files byte for byte, images by the shard file
    they link."""
    problems = []
    for split in ("train", "val"):
        names = sorted(p.name for p in (b / split).iterdir() if p.is_file())  # a's also has the search index
        if not set(names) <= {p.name for p in (a / split).iterdir()}:
            problems.append(f"{split}: other files")
        problems += [f"{split}/{n}" for n in names if not filecmp.cmp(a / split / n, b / split / n, shallow=False)]
        images = sorted(os.listdir(a / split / "images"))
        if images != sorted(os.listdir(b / split / "images")):
            problems.append(f"{split}/images: other names")
        problems += [f"{split}/images/{n}" for n in images
                     if os.stat(a / split / "images" / n).st_ino != os.stat(b / split / "images" / n).st_ino][:5]
    return problems


def bench_merge(args) -> None:
    sys.path.insert(0, str(HERE))
    from _shards import write_shards

    for n in map(int, args.faces.split(",")):
        shards = Path(args.dir) / f"shards_{n}"
        if not (shards / "done").exists():
            shutil.rmtree(shards, ignore_errors=True)
            write_shards(shards, n)
            (shards / "done").touch()
        modes = ["merge"] + (["reference"] if n <= args.reference_up_to else [])
        runs: dict[str, list] = {mode: [] for mode in modes + ["index"]}
        for _ in range(args.repeats):
            for mode in modes:
                out = Path(args.dir) / f"out_{mode}_{n}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                runs[mode].append(json.loads(run(child(mode, str(shards), str(out)))["out"]))
            runs["index"].append(json.loads(run(child("index", str(Path(args.dir) / f"out_merge_{n}")))["out"]))
        faces = runs["merge"][0]["faces"]
        print(f"{n:,} faces in {len(list(shards.glob('shard_*')))} shards ({faces:,} merged, the rest excluded as "
              f"blocklisted); medians of {args.repeats}, load average {os.getloadavg()[0]:.1f} at the end:")
        for mode in runs:
            print(f"  {mode:<10} {median(runs[mode], 'seconds'):8.1f} s, peak RSS {median(runs[mode], 'peak_rss_mb'):7.0f} MB")
        if "reference" in runs:
            problems = same_output(Path(args.dir) / f"out_merge_{n}", Path(args.dir) / f"out_reference_{n}")
            ratio = median(runs["merge"], "seconds") / median(runs["reference"], "seconds")
            rss = median(runs["merge"], "peak_rss_mb") / median(runs["reference"], "peak_rss_mb")
            print(f"  streaming / in-memory: {ratio:.2f}x time, {rss:.2f}x peak RSS; same bytes: "
                  + ("yes" if not problems else f"NO ({', '.join(problems[:5])})"))


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child_main(*sys.argv[2:])
        raise SystemExit
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("scan", "merge"))
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--faces", default="100000,1000000")
    parser.add_argument("--reference-up-to", type=int, default=1_000_000,
                        help="Run the in-memory merge (~10 KiB a face) only up to this many faces.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/fdf_bench")
    args = parser.parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    bench_scan(args) if args.what == "scan" else bench_merge(args)
