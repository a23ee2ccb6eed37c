"""Fetch throughput: the project's fetch stage vs img2dataset, same local server, same URL list, one run.

A loopback server (in its own process, with --latency per response) serves --photos
real-size JPEGs (the bundled demo photos under distinct Flickr-style paths). Then:
  * fdf_build: `Fetcher` (pooled requests session, retries, per-host cap) on --threads threads,
    each body written to a file, as a build's fetch stage does before decoding;
  * img2dataset 1.47.0 (installed on first run in its own venv under --dir, since its pins clash with
    mediapipe's) with --processes x --threads, resize_mode=no, output_format=files.
Prints photos/s for each and the ratio fdf_build / img2dataset (target >= 1.0).

    python benchmarks/fetch.py [--photos 2000] [--latency 0.05] [--threads 64] [--processes 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from fdf_build.demo import demo_photos
from fdf_build.fetch import Fetcher, make_session
from fdf_build.localserver import LocalServer
from fdf_build.synthetic import synthetic_photo


def routes_for(n: int) -> dict:
    photos = list(demo_photos().values())
    return {urlsplit(synthetic_photo(i).download_url).path: photos[i % len(photos)] for i in range(n)}


def serve(n: int, latency: float, port_out, stop) -> None:
    with LocalServer(routes_for(n), latency=latency, max_seconds=1800) as server:
        port_out.send(server.url)
        stop.wait()


def img2dataset_command(directory: Path) -> str:
    venv = directory / "img2dataset-venv"
    if not (venv / "bin" / "img2dataset").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "img2dataset==1.47.0"], check=True)
    return str(venv / "bin" / "img2dataset")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--dir", default="/tmp/fdf_bench")
    args = parser.parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    i2d = img2dataset_command(Path(args.dir))

    receive, send = multiprocessing.Pipe()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(args.photos, args.latency, send, stop), daemon=True)
    server.start()
    base = receive.recv()
    urls = [base + path for path in routes_for(args.photos)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fetcher = Fetcher(make_session(args.threads), per_host=args.threads)
            out = Path(tmp) / "ours"
            out.mkdir()

            def fetch(item):
                i, url = item
                body = fetcher(url)
                (out / f"{i}.jpg").write_bytes(body)

            start = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(fetch, enumerate(urls)))
            ours = time.perf_counter() - start

            (Path(tmp) / "urls.txt").write_text("\n".join(urls) + "\n")
            start = time.perf_counter()
            subprocess.run([i2d, "--url_list", str(Path(tmp) / "urls.txt"),
                            "--output_folder", str(Path(tmp) / "i2d"), "--output_format", "files",
                            "--input_format", "txt", "--resize_mode", "no", "--processes_count", str(args.processes),
                            "--thread_count", str(args.threads), "--enable_wandb", "False",
                            "--number_sample_per_shard", "1000", "--disallowed_header_directives", "[]"],
                           check=True, capture_output=True, cwd=tmp)  # not where a stray ray/ folder could shadow
            theirs = time.perf_counter() - start
            fetched = len(list((Path(tmp) / "i2d").rglob("*.jpg")))
            # img2dataset's own shard stats: the downloading span, without its process start-up
            shards = [json.loads(p.read_text()) for p in (Path(tmp) / "i2d").glob("*_stats.json")]
            span = max(s["end_time"] for s in shards) - min(s["start_time"] for s in shards)
    finally:
        stop.set()
        server.join(10)
    n = args.photos
    print(f"{n} photos, {args.latency * 1000:.0f} ms latency, {args.threads} threads")
    print(f"fdf_build fetch stage: {n / ours:7.0f} photos/s ({ours:.2f} s)")
    print(f"img2dataset 1.47.0:    {fetched / theirs:7.0f} photos/s ({theirs:.2f} s, {fetched} saved, "
          f"{args.processes} processes, start-up included)")
    print(f"img2dataset 1.47.0:    {fetched / span:7.0f} photos/s ({span:.2f} s between its shards' first start "
          f"and last end, start-up excluded)")
    print(f"ratio fdf_build / img2dataset: {(n / ours) / (fetched / theirs):.2f}x with its start-up, "
          f"{(n / ours) / (fetched / span):.2f}x without")


if __name__ == "__main__":
    main()
