"""Inputs that cannot exhaust the machine: a wall-clock deadline per fetch and per downloaded file, whatever the
server sends; downloads that stop at the manifest's size; a pixel cap for every format the decoder accepts.

The drip servers send one byte every 0.2 s and would go on for minutes; each test asserts, on the server's side,
that the client hung up before the end, and that the call returned within its deadline plus a generous margin
(the servers would still be sending then).
"""

import hashlib
import time

import cv2
import numpy as np
import pytest

from fdf_build.dataset.download import DownloadFailed, FileDownloader
from fdf_build.decode import declared_size, decode_image
from fdf_build.fetch import Fetcher, make_session
from fdf_build.localserver import Fault, LocalServer
from fdf_build.records import SkipReason

from .conftest import DEMO_DATA

PHOTO = (DEMO_DATA / "codait_luciano.jpg").read_bytes()
DRIP = 0.2  # seconds between bytes: PHOTO would take hours
MARGIN = 10  # seconds past the deadline still counted as "at the deadline" on a loaded machine


@pytest.mark.parametrize("kind", ["drip", "drip-head"])
def test_a_server_dripping_bytes_is_given_up_at_the_fetch_deadline(kind):
    """Not 64 KiB chunk by chunk, and not per read: the whole fetch, retries included, ends at its deadline."""
    with LocalServer({"/1/1_a.jpg": PHOTO}, {"/1/1_a.jpg": [Fault(kind, seconds=DRIP)] * 4}, max_seconds=60) as s:
        fetcher = Fetcher(make_session(2), timeout=2, deadline=3, retries=3, sleep=lambda seconds: None)
        started = time.monotonic()
        result = fetcher(s.url + "/1/1_a.jpg")
        elapsed = time.monotonic() - started
        assert result.reason is SkipReason.HTTP_TIMEOUT and "deadline" in result.detail, result
        assert elapsed < 3 + MARGIN, elapsed
        deadline = time.monotonic() + MARGIN
        while "/1/1_a.jpg" not in s.hung_up and time.monotonic() < deadline:
            time.sleep(0.05)  # the server notices the hang-up at its next byte
        assert s.hung_up == ["/1/1_a.jpg"]  # one attempt, cut at the deadline; no retry after it


def test_the_deadline_leaves_a_fast_fetch_alone_and_spans_its_retries():
    with LocalServer({"/1/1_a.jpg": PHOTO}, {"/1/1_a.jpg": [Fault("status", 500)]}, max_seconds=60) as s:
        waits = []
        fetcher = Fetcher(make_session(2), timeout=2, deadline=30, retries=2, sleep=waits.append)
        assert fetcher(s.url + "/1/1_a.jpg") == PHOTO and len(waits) == 1
    pauses = []
    with LocalServer({"/1/1_a.jpg": PHOTO}, {"/1/1_a.jpg": [Fault("status", 503, retry_after="50")] * 3},
                     max_seconds=60) as s:
        fetcher = Fetcher(make_session(2), timeout=2, deadline=1, retries=2, sleep=pauses.append)
        result = fetcher(s.url + "/1/1_a.jpg")
    # the server asked for 50 s; the pause is cut to what is left of the 1 s deadline, and no try comes after
    assert result.reason is SkipReason.HTTP_TIMEOUT and pauses and sum(pauses) <= 1


def downloader(**kw):
    return FileDownloader(make_session(1), timeout=2, retries=2, sleep=lambda seconds: None, **kw)


def test_a_dripping_download_is_given_up_at_the_file_deadline_and_a_rerun_completes_it(tmp_path):
    body = PHOTO
    md5 = hashlib.md5(body).hexdigest()
    with LocalServer({"/f.zip": body}, {"/f.zip": [Fault("drip", seconds=DRIP)] * 4}, max_seconds=60) as s:
        started = time.monotonic()
        with pytest.raises(DownloadFailed, match="deadline"):
            downloader(deadline=3).download([s.url + "/f.zip", s.url + "/f.zip"], tmp_path / "f.zip", md5=md5,
                                            size=len(body), progress=lambda *a: None)
        assert time.monotonic() - started < 3 + MARGIN
        assert not (tmp_path / "f.zip").exists()
        # the second source is not tried once the file's deadline has passed: one drip was cut
        assert len(s.hits("/f.zip")) == 1
    with LocalServer({"/f.zip": body}, max_seconds=60) as s:
        downloader(deadline=30).download([s.url + "/f.zip"], tmp_path / "f.zip", md5=md5, size=len(body),
                                         progress=lambda *a: None)
    assert (tmp_path / "f.zip").read_bytes() == body


def test_a_download_stops_at_the_manifests_size(tmp_path):
    """A server sending far more than the manifest says is cut off at the size, before the md5 check."""
    body = bytes(2_000_000)
    written = []
    with LocalServer({"/f.zip": body}, max_seconds=60) as s:
        with pytest.raises(DownloadFailed, match="more than the manifest's 1,000 bytes"):
            downloader().download([s.url + "/f.zip"], tmp_path / "f.zip", md5="0" * 32, size=1000,
                                  progress=lambda name, n: written.append(n))
    assert sum(n for n in written if n > 0) <= 1000
    assert not (tmp_path / "f.zip").exists() and not (tmp_path / "f.zip.part").exists()


RGB = np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)
SIZED = [".jpg", ".png", ".webp", ".tiff", ".bmp", ".ppm", ".ras", ".jp2"]


@pytest.mark.parametrize("ext", SIZED)
def test_every_format_decoded_is_sized_and_capped_before_decoding(ext):
    data = cv2.imencode(ext, RGB)[1].tobytes()
    assert declared_size(data) == (800, 600)
    too_large = decode_image(data, max_pixels=800 * 600 - 1)
    assert too_large.reason is SkipReason.TOO_LARGE and "800x600" in too_large.detail
    assert decode_image(data, max_pixels=800 * 600).shape == (600, 800, 3)


def test_a_webp_declaring_16000_by_16000_is_refused_from_its_header():
    """The issue's 9.8 KB lossless WebP decoded to 1.5 GB; its header alone is read now (not even Pillow's
    WebP plugin, whose decoder allocates the canvas to open a file)."""
    small = bytearray(cv2.imencode(".webp", RGB, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes())
    assert small[12:16] == b"VP8L"
    bits = (16000 - 1) | (16000 - 1) << 14 | int.from_bytes(small[21:25], "little") & ~((1 << 28) - 1)
    small[21:25] = bits.to_bytes(4, "little")
    assert declared_size(bytes(small)) == (16000, 16000)
    skip = decode_image(bytes(small))
    assert skip.reason is SkipReason.TOO_LARGE and "16000x16000" in skip.detail


@pytest.mark.parametrize("ext, image", [(".hdr", RGB.astype(np.float32) / 255), (".pfm", RGB.astype(np.float32)),
                                        (".pam", RGB)])
def test_formats_whose_size_cannot_be_read_first_are_not_decoded(ext, image):
    data = cv2.imencode(ext, image)[1].tobytes()
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None  # OpenCV would decode it
    skip = decode_image(data)
    assert skip.reason is SkipReason.DECODE_ERROR and "size can be read" in skip.detail


def test_a_jpeg_with_bytes_after_its_end_marker_is_decoded():
    trailer = b"\x00" * 17 + b"Samsung trailer / appended data" + b"\xff\xd8 not an image"
    decoded = decode_image(PHOTO + trailer)
    assert isinstance(decoded, np.ndarray) and (decoded == decode_image(PHOTO)).all()
    png = cv2.imencode(".png", RGB)[1].tobytes()
    assert decode_image(png + b"extra").shape == (600, 800, 3)
    cut = decode_image(PHOTO[: len(PHOTO) * 2 // 3] + trailer)  # a cut scan stays a cut scan, whatever follows
    assert cut.reason is SkipReason.DECODE_ERROR and "truncated" in cut.detail
