import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fdf_build.decode import decode_image
from fdf_build.fetch import Fetcher, make_session, parse_retry_after
from fdf_build.localserver import PLACEHOLDER_PATH, Fault, LocalServer, Redirect
from fdf_build.records import Skip, SkipReason

from .conftest import DEMO_DATA

PHOTO = (DEMO_DATA / "codait_luciano.jpg").read_bytes()


def fetcher(**kw):
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 2.0)
    return Fetcher(make_session(8), **kw)


def serve(faults=None, **kw):
    routes = {"/1/1_a.jpg": PHOTO, "/gone.jpg": Redirect(PLACEHOLDER_PATH), PLACEHOLDER_PATH: b"\x89PNG placeholder"}
    return LocalServer(routes, faults or {}, max_seconds=60, **kw)


def test_ok_body_is_the_file():
    with serve() as s:
        assert fetcher()(s.url + "/1/1_a.jpg") == PHOTO


def test_500_then_success_is_retried():
    with serve({"/1/1_a.jpg": [Fault("status", 500), Fault("status", 503)]}) as s:
        assert fetcher()(s.url + "/1/1_a.jpg") == PHOTO
        assert len(s.hits("/1/1_a.jpg")) == 3


def test_5xx_until_retries_run_out():
    with serve({"/1/1_a.jpg": [Fault("status", 502)] * 10}) as s:
        result = fetcher(retries=2)(s.url + "/1/1_a.jpg")
        assert result == Skip(SkipReason.HTTP_SERVER_ERROR, "HTTP 502")
        assert len(s.hits("/1/1_a.jpg")) == 3


def test_429_retry_after_is_honoured():
    with serve({"/1/1_a.jpg": [Fault("status", 429, retry_after="1")]}) as s:
        assert fetcher()(s.url + "/1/1_a.jpg") == PHOTO
        first, second = s.hits("/1/1_a.jpg")
        assert second - first >= 0.95


def test_429_asking_for_too_long_a_pause_gives_up_without_waiting():
    with serve({"/1/1_a.jpg": [Fault("status", 429, retry_after="3600")]}) as s:
        start = time.monotonic()
        result = fetcher(max_retry_after=5)(s.url + "/1/1_a.jpg")
        assert result.reason is SkipReason.HTTP_RATE_LIMITED
        assert time.monotonic() - start < 2 and len(s.hits("/1/1_a.jpg")) == 1


def test_dropped_connection_and_cut_body_are_retried():
    with serve({"/1/1_a.jpg": [Fault("drop"), Fault("cut")]}) as s:
        assert fetcher()(s.url + "/1/1_a.jpg") == PHOTO
        assert len(s.hits("/1/1_a.jpg")) == 3


def test_404_is_final():
    with serve() as s:
        result = fetcher()(s.url + "/missing.jpg")
        assert result.reason is SkipReason.HTTP_NOT_FOUND and len(s.hits("/missing.jpg")) == 1


def test_placeholder_redirect_means_removed():
    with serve() as s:
        assert fetcher()(s.url + "/gone.jpg").reason is SkipReason.PHOTO_REMOVED


def test_stall_beyond_timeout_is_a_timeout():
    with serve({"/1/1_a.jpg": [Fault("stall", seconds=1.5)] * 2}) as s:
        result = fetcher(timeout=0.3, retries=1)(s.url + "/1/1_a.jpg")
        assert result.reason is SkipReason.HTTP_TIMEOUT


def test_body_over_the_size_cap_is_refused():
    with serve() as s:
        assert fetcher(max_bytes=1000)(s.url + "/1/1_a.jpg").reason is SkipReason.TOO_LARGE


def test_connection_refused_is_a_connection_error():
    with serve() as s:
        url = s.url
    assert fetcher(retries=1)(url + "/1/1_a.jpg").reason is SkipReason.CONNECTION_ERROR


def test_redirect_loop_is_a_request_error_not_retried():
    with LocalServer({"/loop.jpg": Redirect("/loop.jpg")}, max_seconds=60) as s:
        result = fetcher(retries=3)(s.url + "/loop.jpg")
        assert result.reason is SkipReason.REQUEST_ERROR and "TooManyRedirects" in result.detail
        assert len(s.hits("/loop.jpg")) == 31  # requests' 30 redirects, once: retrying cannot help


def test_per_host_concurrency_cap():
    active, peak, lock = 0, 0, threading.Lock()

    class Counting(LocalServer):
        def _next_fault(self, path, range_header=""):
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.05)
            with lock:
                active -= 1
            return super()._next_fault(path, range_header)

    with Counting({"/1/1_a.jpg": PHOTO}, max_seconds=60) as s:
        f = fetcher(per_host=3)
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda _: f(s.url + "/1/1_a.jpg"), range(24)))
    assert all(r == PHOTO for r in results)
    assert peak == 3


def test_parse_retry_after_forms():
    assert parse_retry_after("7", now=0) == 7
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480) == pytest.approx(10)
    assert parse_retry_after("soon", now=0) is None and parse_retry_after(None, now=0) is None


def test_truncated_jpeg_and_html_do_not_decode():
    assert decode_image(PHOTO).shape == (400, 400, 3)
    truncated = decode_image(PHOTO[: len(PHOTO) // 2])
    assert truncated.reason is SkipReason.DECODE_ERROR and "truncated" in truncated.detail
    html = decode_image(b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>")
    assert html.reason is SkipReason.DECODE_ERROR and "DOCTYPE" in html.detail


def test_truncated_png_does_not_decode():
    import cv2
    import numpy as np

    ok, png = cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))
    png = png.tobytes()
    assert decode_image(png).shape == (20, 20, 3)
    assert decode_image(png[:-20]).reason is SkipReason.DECODE_ERROR


def test_host_throttle_spaces_requests_per_host_and_pauses_refusing_hosts():
    from fdf_build.fetch import HostThrottle

    now = [0.0]

    def sleep(s):
        now[0] += s

    throttle = HostThrottle(2.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        throttle.wait("a")
    assert now[0] == pytest.approx(1.0)  # 3 requests at 2/s: slots at 0, 0.5, 1.0
    throttle.wait("b")  # another host has its own bucket
    assert now[0] == pytest.approx(1.0)
    throttle.refused("b", retry_after=None)
    throttle.refused("b", retry_after=None)  # second refusal in a row: 2 s
    throttle.wait("b")
    assert now[0] == pytest.approx(3.0)
    throttle.refused("a", retry_after=5)
    throttle.wait("a")
    assert now[0] == pytest.approx(8.0)


def test_throttle_makes_all_workers_respect_a_429():
    from fdf_build.fetch import HostThrottle

    faults = {"/1/1_a.jpg": [Fault("status", 429, retry_after="1")]}
    with serve(faults) as s:
        f = fetcher(throttle=HostThrottle(None))
        with ThreadPoolExecutor(2) as pool:
            refused = pool.submit(f, s.url + "/1/1_a.jpg")
            time.sleep(0.2)  # the 429 has arrived; now another worker asks the same host
            other = pool.submit(f, s.url + "/gone.jpg")
            assert refused.result() == PHOTO and other.result().reason is SkipReason.PHOTO_REMOVED
        first = s.hits("/1/1_a.jpg")[0]
        assert s.hits("/gone.jpg")[0] - first >= 0.95  # the other worker waited out the host's pause


def test_retry_budget_is_shared_and_fails_fast():
    from fdf_build.fetch import RetryBudget

    with serve({"/1/1_a.jpg": [Fault("status", 500)] * 20}) as s:
        f = fetcher(retries=5, budget=RetryBudget(2))
        assert f(s.url + "/1/1_a.jpg").reason is SkipReason.HTTP_SERVER_ERROR
        assert f(s.url + "/1/1_a.jpg").reason is SkipReason.HTTP_SERVER_ERROR
        assert len(s.hits("/1/1_a.jpg")) == 2 + 2  # one try each plus the two retries the budget allowed
