"""Bounded resources: what a hostile photo or server costs now, against what it cost without the bounds.

  * pixel cap: peak RSS of a fresh process that decodes (``decode_image``) a 16000 x 16000 lossless WebP and a
    20000 x 20000 TIFF (each over the default 200 MP cap), against the same process's RSS before decoding
    (imports done) and against ``cv2.imdecode`` of the same bytes (what ran before the cap read every format);
  * deadline: seconds until ``Fetcher(timeout=2, deadline=3)`` gives up on a loopback server sending one byte
    every 0.2 s (in the body; in the headers), and until ``FileDownloader(deadline=3)`` gives up on such a file;
  * checking a metainfo: ``load_metainfo`` (every entry checked) against ``json.load`` of the same
    250,000-entry file, as a ratio measured in this process.

    python benchmarks/bounds.py [--dir /tmp/fdf_bounds]

The bombs are written once into --dir (the WebP is encoded from a 768 MB array, in a child process).
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

CHILD = """
import resource, sys, time
from pathlib import Path
import cv2, numpy as np
from fdf_build.decode import decode_image
data = Path(sys.argv[2]).read_bytes()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if sys.argv[1] == "decode_image":
    result = decode_image(data)
    what = getattr(result, "reason", "decoded")
else:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    what = "decoded" if image is not None else "refused"
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after, time.perf_counter() - t, what)
"""


def tiff_bomb(width: int, height: int) -> bytes:
    """A valid RGB TIFF of ``width`` x ``height`` black pixels in one deflate strip, made without the pixels."""
    z = zlib.compressobj(9)
    row = bytes(width * 3)
    strip = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 2),
               (273, 4, 1, 0), (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 1, len(strip))]
    header_size = 8 + 2 + 12 * len(entries) + 4 + 6  # + the BitsPerSample values
    bits_offset, strip_offset = header_size - 6, header_size
    ifd = b""
    for tag, kind, count, value in entries:
        if tag == 258:
            count, value = 3, bits_offset
        if tag == 273:
            value = strip_offset
        ifd += struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 and count == 1
                                                         else struct.pack("<I", value))
    return (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)) + ifd + struct.pack("<I", 0)
            + struct.pack("<HHH", 8, 8, 8) + strip)


def bombs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    webp, tiff = folder / "16000x16000.webp", folder / "20000x20000.tiff"
    if not webp.exists():
        subprocess.run([sys.executable, "-c", "import cv2, numpy as np, sys; cv2.imwrite(sys.argv[1], "
                        "np.zeros((16000, 16000, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])", str(webp)],
                       check=True)
    if not tiff.exists():
        tiff.write_bytes(tiff_bomb(20000, 20000))
    return {"WebP 16000 x 16000": webp, "TIFF 20000 x 20000": tiff}


def peak_rss(folder: Path) -> None:
    for name, path in bombs(folder).items():
        for how in ("decode_image", "cv2.imdecode"):
            out = subprocess.run([sys.executable, "-c", CHILD, how, str(path)], capture_output=True, text=True)
            if out.returncode:
                print(f"{name} ({path.stat().st_size:,} bytes), {how}: failed ({out.returncode}) "
                      f"{out.stderr.strip().splitlines()[-1:]}")
                continue
            before, after, seconds, what = out.stdout.split()
            print(f"{name} ({path.stat().st_size:,} bytes), {how}: {what}, peak RSS {int(after) / 1024:,.0f} MB "
                  f"(after imports {int(before) / 1024:,.0f} MB: +{(int(after) - int(before)) / 1024:,.0f} MB), "
                  f"{float(seconds):.3f} s")


def deadlines() -> None:
    from fdf_build.dataset.download import DownloadFailed, FileDownloader
    from fdf_build.fetch import Fetcher, make_session
    from fdf_build.localserver import Fault, LocalServer

    body = bytes(100_000)  # at a byte every 0.2 s: 5.5 hours
    for kind in ("drip", "drip-head"):
        with LocalServer({"/p.jpg": body}, {"/p.jpg": [Fault(kind, seconds=0.2)] * 4}, max_seconds=120) as s:
            started = time.monotonic()
            result = Fetcher(make_session(2), timeout=2, deadline=3, retries=3, sleep=lambda x: None)(s.url + "/p.jpg")
            print(f"fetch, server dripping its {'headers' if kind == 'drip-head' else 'body'}: "
                  f"{result.reason.value} after {time.monotonic() - started:.2f} s (deadline 3 s, timeout 2 s)")
    import tempfile

    with LocalServer({"/f.zip": body}, {"/f.zip": [Fault("drip", seconds=0.2)] * 4}, max_seconds=120) as s, \
            tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        try:
            FileDownloader(make_session(1), timeout=2, retries=3, deadline=3, sleep=lambda x: None).download(
                [s.url + "/f.zip"], Path(tmp) / "f.zip", md5="0" * 32, size=len(body), progress=lambda *a: None)
        except DownloadFailed as e:
            print(f"download, server dripping the file: given up after {time.monotonic() - started:.2f} s "
                  f"(deadline 3 s): {e}")


def checking(folder: Path, faces: int = 250_000) -> None:
    from fdf_build.dataset.loaders import load_metainfo
    from fdf_build.sources.synthetic import synthetic_photo

    path = folder / "train" / "fdf_metainfo.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = {}
        for i in range(faces):
            p = synthetic_photo(i // 2, nsid=f"{10_000_000 + (i // 2) % 50_000}@N0{i % 8}")
            entries[str(i)] = {
                "author": p.user_nickname, "bounding_box": [0.2, 0.2, 0.8, 0.8], "category": "training",
                "date_crawled": "2026-1-1", "date_taken": p.date_taken, "date_uploaded": "2010-01-01",
                "landmark": [[0.5, 0.5]] * 7, "license": p.license_name, "license_url": p.license_url,
                "original_bounding_box": [10.0, 20.0, 110.0, 140.0], "original_landmark": [[50.0, 60.0]] * 7,
                "photo_title": p.title, "photo_url": p.page_url, "yfcc100m_line_idx": str(p.line_number),
                "user_nsid": p.user_nsid, "photo_id": p.photo_id, "download_url": p.download_url, "face_index": i % 2}
        path.write_text(json.dumps(entries))
    times = {}
    loads = (("json.load", lambda: json.loads(path.read_bytes())), ("load_metainfo", lambda: load_metainfo(path)))
    for name, load in loads:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            load()
            best = min(best, time.perf_counter() - started)
        times[name] = best
    print(f"metainfo of {faces:,} faces ({path.stat().st_size / 2**20:.0f} MB): json.load {times['json.load']:.2f} s, "
          f"load_metainfo {times['load_metainfo']:.2f} s ({times['load_metainfo'] / times['json.load']:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/fdf_bounds"))
    args = parser.parse_args()
    peak_rss(args.dir)
    deadlines()
    checking(args.dir)


if __name__ == "__main__":
    main()
