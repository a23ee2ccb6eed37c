"""Fetch throughput: the build's fetch stage (at its default politeness, and unthrottled) vs img2dataset.

A neutral keep-alive server in its own processes, nginx (Debian's nginx-light, whose echo module adds
--latency per response), serves --photos real-size JPEGs (the bundled demo photos under distinct
Flickr-style paths) on 9 ports, one per Flickr farm of the photo's URL, as a build without --base-url
spreads over farm1..farm9. The same URL list is then fetched, --repeats times each, medians printed:
  * fdf_build, build defaults: the fetcher a default `fdf-build build` makes (`BuildConfig.fetcher`:
    --rate 20 per host, --per-host 8, retries, retry budget) on the CLI's 16 workers, each body written
    to a file, as the build's fetch stage does before decoding;
  * fdf_build, unthrottled: the same stage with no rate cap and --threads connections per host;
  * img2dataset 1.47.0 (installed on first run in its own venv under --dir, since its pins clash with
    mediapipe's) with --processes x --threads, resize_mode=no, output_format=files; with its start-up,
    and between its shards' first start and last end (its own stats).
Needs nginx: `apt-get install nginx-light`.

    python benchmarks/fetch.py [--photos 2000] [--latency 0.05] [--threads 64] [--processes 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from fdf_build.cli.build import build as build_command
from fdf_build.config import BuildConfig
from fdf_build.demo import demo_photos
from fdf_build.sources.synthetic import synthetic_photo

FARMS = 9
NGINX_CONF = """
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    types {{ image/jpeg jpg; }}
    server {{
        {listen}
        root {root}/files;
        {locations}
    }}
}}
"""


def cli_default(name: str):
    return next(p.default for p in build_command.params if p.name == name)


class Nginx:
    """nginx serving ``files`` (path -> bytes) on FARMS loopback ports, each response delayed ``latency``."""

    def __init__(self, root: Path, files: dict[str, bytes], latency: float):
        self.root, self.ports = root, []
        for path, data in files.items():
            target = root / "files" / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (root / "tmp").mkdir()
        import socket

        for _ in range(FARMS):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.ports.append(s.getsockname()[1])
        listen = " ".join(f"listen 127.0.0.1:{p};" for p in self.ports)
        # delayed: the echo module sleeps, then hands the request to a location serving the file
        locations = ("location @file { try_files $uri =404; } "
                     f"location / {{ echo_sleep {latency}; echo_exec @file; }}" if latency
                     else "location / { try_files $uri =404; }")
        (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, listen=listen, locations=locations))
        root.chmod(0o755)

    def __enter__(self):
        if not shutil.which("nginx"):
            sys.exit("benchmarks/fetch.py needs nginx: apt-get install nginx-light")
        self.process = subprocess.Popen(["nginx", "-p", str(self.root), "-c", str(self.root / "nginx.conf"),
                                         "-g", "daemon off;"], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.ports[0]}/", timeout=1)
            except urllib.error.HTTPError:
                return self  # answering (404 for /)
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"nginx did not start: {self.process.stderr.read1().decode()}")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(10)

    def url(self, photo) -> str:
        return f"http://127.0.0.1:{self.ports[int(photo.farm_id) % FARMS]}" + urlsplit(photo.download_url).path


def img2dataset_command(directory: Path) -> str:
    venv = directory / "img2dataset-venv"
    if not (venv / "bin" / "img2dataset").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "img2dataset==1.47.0"], check=True)
    return str(venv / "bin" / "img2dataset")


def fetch_all(fetcher, urls: list[str], threads: int, out: Path) -> float:
    out.mkdir()

    def fetch(item):
        i, url = item
        body = fetcher(url)
        if isinstance(body, bytes):
            (out / f"{i}.jpg").write_bytes(body)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fetch, enumerate(urls)))
    seconds = time.perf_counter() - start
    if len(list(out.iterdir())) != len(urls):
        raise RuntimeError(f"only {len(list(out.iterdir()))} of {len(urls)} photos fetched")
    return seconds


def img2dataset(i2d: str, urls: list[str], args, tmp: Path) -> tuple[float, float, int]:
    (tmp / "urls.txt").write_text("\n".join(urls) + "\n")
    start = time.perf_counter()
    subprocess.run([i2d, "--url_list", str(tmp / "urls.txt"), "--output_folder", str(tmp / "i2d"),
                    "--output_format", "files", "--input_format", "txt", "--resize_mode", "no",
                    "--processes_count", str(args.processes), "--thread_count", str(args.threads),
                    "--enable_wandb", "False", "--number_sample_per_shard", "1000",
                    "--disallowed_header_directives", "[]"],
                   check=True, capture_output=True, cwd=tmp)  # not where a stray ray/ folder could shadow
    seconds = time.perf_counter() - start
    fetched = len(list((tmp / "i2d").rglob("*.jpg")))
    shards = [json.loads(p.read_text()) for p in (tmp / "i2d").glob("*_stats.json")]
    span = max(s["end_time"] for s in shards) - min(s["start_time"] for s in shards)
    return seconds, span, fetched


def measure(server: Nginx, photos, polite: BuildConfig, unthrottled: BuildConfig, i2d: str, args, tmp: Path) -> dict:
    """Seconds per run of each contender, runs interleaved so a busy moment of the machine hits all of them."""
    runs = {"polite": [], "unthrottled": [], "i2d": [], "i2d_span": []}
    urls = [server.url(p) for p in photos]
    for r in range(args.repeats):
        work = tmp / f"run{r}"
        work.mkdir()
        runs["polite"].append(fetch_all(polite.fetcher(), urls, polite.threads, work / "polite"))
        runs["unthrottled"].append(fetch_all(unthrottled.fetcher(), urls, unthrottled.threads,
                                             work / "unthrottled"))
        seconds, span, fetched = img2dataset(i2d, urls, args, work)
        if fetched != len(urls):
            raise RuntimeError(f"img2dataset saved {fetched} of {len(urls)} photos")
        runs["i2d"].append(seconds)
        runs["i2d_span"].append(span)
        print(f"  run {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/fdf_bench")
    args = parser.parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    i2d = img2dataset_command(Path(args.dir))

    demo = list(demo_photos().values())
    photos = [synthetic_photo(i) for i in range(args.photos)]
    files = {urlsplit(p.download_url).path: demo[i % len(demo)] for i, p in enumerate(photos)}
    # what `fdf-build build FILE --out DIR` runs with, option for option
    workers = cli_default("workers")
    polite = BuildConfig(metadata="-", out=Path("."), workers=workers, per_host=cli_default("per_host"),
                         rate=cli_default("rate"), retries=cli_default("retries"), timeout=cli_default("timeout"),
                         retry_budget=cli_default("retry_budget"))
    unthrottled = BuildConfig(metadata="-", out=Path("."), workers=args.threads, per_host=args.threads, rate=None,
                              retries=polite.retries, timeout=polite.timeout, retry_budget=None)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)  # nginx's workers run as an unprivileged user
        with Nginx(Path(tmp) / "nginx", files, args.latency) as server:
            runs = measure(server, photos, polite, unthrottled, i2d, args, Path(tmp))
    n = args.photos
    rate = {k: n / statistics.median(v) for k, v in runs.items()}
    print(f"{n} photos on {FARMS} hosts (nginx, keep-alive, {args.latency * 1000:.0f} ms latency), "
          f"medians of {args.repeats}")
    print(f"fdf_build fetch stage, build defaults ({polite.threads} workers, {polite.per_host} per host, "
          f"{polite.rate:g} requests/s per host): {rate['polite']:7.0f} photos/s")
    print(f"fdf_build fetch stage, unthrottled ({args.threads} threads and connections per host): "
          f"{rate['unthrottled']:7.0f} photos/s")
    print(f"img2dataset 1.47.0 ({args.processes} processes x {args.threads} threads): {rate['i2d']:7.0f} photos/s "
          f"with its start-up, {rate['i2d_span']:7.0f} photos/s between its shards' first start and last end")
    print(f"ratio unthrottled fdf_build / img2dataset: {rate['unthrottled'] / rate['i2d']:.2f}x with its start-up, "
          f"{rate['unthrottled'] / rate['i2d_span']:.2f}x without; build defaults / img2dataset: "
          f"{rate['polite'] / rate['i2d']:.2f}x (politeness caps it at {FARMS} x {polite.rate:g} = "
          f"{FARMS * polite.rate:g} photos/s)")


if __name__ == "__main__":
    main()
