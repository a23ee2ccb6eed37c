import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from fdf_build.decode import decode_image
from fdf_build.fetch import Fetcher, make_session, parse_retry_after
from fdf_build.localserver import PLACEHOLDER_PATH, Fault, LocalServer, Redirect
from fdf_build.records import Skip, SkipReason

from .conftest import DEMO_DATA

PHOTO = (DEMO_DATA / "codait_luciano.jpg").read_bytes()


def fetcher(**kw):
    """A Fetcher whose waits between tries are recorded in ``.waits`` instead of slept (unless ``sleep`` is given)."""
    waits = []
    kw.setdefault("sleep", waits.append)
    kw.setdefault("timeout", 10.0)
    f = Fetcher(make_session(8), **kw)
    f.waits = waits
    return f


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
    with serve({"/1/1_a.jpg": [Fault("status", 429, retry_after="7")]}) as s:
        f = fetcher(backoff=0.01)
        assert f(s.url + "/1/1_a.jpg") == PHOTO
        assert len(s.hits("/1/1_a.jpg")) == 2
    assert f.waits == [7.0]  # the server's pause, not the 0.01 s backoff


def test_backoff_doubles_with_jitter_between_retries():
    with serve({"/1/1_a.jpg": [Fault("status", 503)] * 3}) as s:
        f = fetcher(backoff=1.0)
        assert f(s.url + "/1/1_a.jpg") == PHOTO
    assert len(f.waits) == 3
    for attempt, wait in enumerate(f.waits):  # base 1 s x 2^attempt, jittered by x0.5 .. x1.5
        assert 0.5 * 2**attempt <= wait < 1.5 * 2**attempt


def test_429_asking_for_too_long_a_pause_gives_up_without_waiting():
    with serve({"/1/1_a.jpg": [Fault("status", 429, retry_after="3600")]}) as s:
        f = fetcher(max_retry_after=5)
        result = f(s.url + "/1/1_a.jpg")
        assert result.reason is SkipReason.HTTP_RATE_LIMITED
        assert f.waits == [] and len(s.hits("/1/1_a.jpg")) == 1


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
    gave_up = threading.Event()  # the server answers only once the client has given up
    with serve({"/1/1_a.jpg": [Fault("stall", release=gave_up)] * 2}) as s:
        result = fetcher(timeout=0.3, retries=1)(s.url + "/1/1_a.jpg")
        gave_up.set()
        assert result.reason is SkipReason.HTTP_TIMEOUT
        assert len(s.hits("/1/1_a.jpg")) == 2


def test_body_over_the_size_cap_is_refused():
    with serve() as s:
        assert fetcher(max_bytes=1000)(s.url + "/1/1_a.jpg").reason is SkipReason.TOO_LARGE


def test_connection_refused_is_a_connection_error():
    with serve() as s:
        url = s.url
    assert fetcher(retries=1)(url + "/1/1_a.jpg").reason is SkipReason.CONNECTION_ERROR


def test_redirect_loop_is_a_request_error_not_retried():
    with LocalServer({"/loop.jpg": Redirect("/loop.jpg"), "/once.jpg": Redirect("/once.jpg")}, max_seconds=60) as s:
        result = fetcher(retries=3)(s.url + "/loop.jpg")
        assert result.reason is SkipReason.REQUEST_ERROR
        fetcher(retries=0)(s.url + "/once.jpg")
        # however many redirects the HTTP client follows before it gives up, it does so once: retrying cannot help
        assert len(s.hits("/loop.jpg")) == len(s.hits("/once.jpg")) > 1


def test_per_host_concurrency_cap():
    """The server holds every request until released: with a cap of 3, exactly 3 get in flight, and then no slot
    is free for a 4th (probed without blocking, so nothing here waits on timing)."""
    cap = 3
    active, peak = 0, 0
    changed, release = threading.Condition(), threading.Event()

    class Holding(LocalServer):
        def _next_fault(self, path, range_header=""):
            nonlocal active, peak
            with changed:
                active += 1
                peak = max(peak, active)
                changed.notify_all()
            release.wait(30)
            with changed:
                active -= 1
            return super()._next_fault(path, range_header)

    with Holding({"/1/1_a.jpg": PHOTO}, max_seconds=60) as s:
        url = s.url + "/1/1_a.jpg"
        f = fetcher(per_host=cap, timeout=60)
        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(f, url) for _ in range(24)]
            with changed:
                reached = changed.wait_for(lambda: active >= cap, timeout=30)
            slot = f._slot(url)  # the host's semaphore: every request holds it while in flight
            free = slot.acquire(blocking=False)
            if free:
                slot.release()
            release.set()
            results = [future.result() for future in futures]
        assert len(s.hits("/1/1_a.jpg")) == 24  # none timed out and was tried again
    assert reached and not free
    assert all(r == PHOTO for r in results)
    assert peak == cap


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


class FakeClock:
    """A clock that only ``sleep`` moves, shared by threads."""

    def __init__(self):
        self.now, self._lock = 1000.0, threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def test_throttle_makes_all_workers_respect_a_429():
    """Worker A gets a 429 (Retry-After 30); worker B, asking the same host while A waits to retry, must wait
    out the host's pause too. A's own wait ends only after B's request went out, so B cannot ride on it."""
    from fdf_build.fetch import HostThrottle

    clock = FakeClock()
    refused, b_sent = threading.Event(), threading.Event()

    class Throttle(HostThrottle):
        def refused(self, host, retry_after):
            super().refused(host, retry_after)
            refused.set()

    def a_waits_to_retry(seconds):
        assert b_sent.wait(30)
        clock.sleep(seconds)

    sent = []  # (path, clock time) of each request
    with serve({"/1/1_a.jpg": [Fault("status", 429, retry_after="30")]}) as s:
        f = fetcher(throttle=Throttle(None, clock=clock, sleep=clock.sleep), sleep=a_waits_to_retry)
        get = f.session.get
        f.session.get = lambda url, **kw: sent.append((urlsplit(url).path, clock())) or get(url, **kw)
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(f, s.url + "/1/1_a.jpg")
            assert refused.wait(30)  # the 429 has arrived; now another worker asks the same host
            b = pool.submit(f, s.url + "/gone.jpg")
            assert b.result().reason is SkipReason.PHOTO_REMOVED
            b_sent.set()
            assert a.result() == PHOTO
    assert [p for p, _ in sent] == ["/1/1_a.jpg", "/gone.jpg", "/1/1_a.jpg"]
    assert sent[1][1] >= sent[0][1] + 30  # B waited out the host's pause


def test_retry_budget_is_shared_and_fails_fast():
    from fdf_build.fetch import RetryBudget

    with serve({"/1/1_a.jpg": [Fault("status", 500)] * 20}) as s:
        f = fetcher(retries=5, budget=RetryBudget(2))
        assert f(s.url + "/1/1_a.jpg").reason is SkipReason.HTTP_SERVER_ERROR
        assert f(s.url + "/1/1_a.jpg").reason is SkipReason.HTTP_SERVER_ERROR
        assert len(s.hits("/1/1_a.jpg")) == 2 + 2  # one try each plus the two retries the budget allowed
