"""Wall-clock deadlines for HTTP requests, whatever the server sends and however slowly.

``requests``' timeout bounds each socket read, so a server that sends one byte every second, in the headers or
the body, holds a request forever. Inside ``with deadline(seconds):``, every connection a session made by
:func:`mount` uses is registered with one watchdog thread, which shuts the connection's socket down when the
time is up: the blocked read returns at once and the request fails (:func:`expired` then says why). The
deadline does not depend on chunk sizes, header sizes or the number of reads.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


class _Watchdog:
    """One daemon thread for all deadlines: a heap of (when, token, socket), shut down when due."""

    def __init__(self):
        self._heap: list = []
        self._live: dict[int, socket.socket] = {}
        self._counter = itertools.count()
        self._cv = threading.Condition()
        self._thread: Optional[threading.Thread] = None

    def arm(self, when: float, sock: socket.socket) -> int:
        token = next(self._counter)
        with self._cv:
            self._live[token] = sock
            heapq.heappush(self._heap, (when, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            self._cv.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._cv:
            self._live.pop(token, None)

    def release(self, sock: Optional[socket.socket]) -> None:
        """Disarm every deadline on ``sock``: its connection goes back to the pool, maybe to another thread."""
        with self._cv:
            for token in [t for t, s in self._live.items() if s is sock]:
                del self._live[token]

    def _run(self) -> None:
        with self._cv:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # disarmed
                if not self._heap:
                    self._cv.wait()
                    continue
                when, token = self._heap[0]
                left = when - time.monotonic()
                if left > 0:
                    self._cv.wait(left)
                    continue
                heapq.heappop(self._heap)
                sock = self._live.pop(token)
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # the blocked recv returns now, in its own thread
                except OSError:
                    pass  # already closed


_watchdog = _Watchdog()


@contextmanager
def deadline(seconds: Optional[float]) -> Iterator[float]:
    """Requests made in this thread inside the block end by ``seconds`` from now (None: no deadline).

    Yields the deadline as a ``time.monotonic()`` value, for the caller's own waits (backoff pauses).
    """
    if seconds is None:
        yield float("inf")
        return
    when = time.monotonic() + seconds
    outer, _local.current = getattr(_local, "current", None), (when, [])
    try:
        yield when
    finally:
        for token in _local.current[1]:
            _watchdog.disarm(token)
        _local.current = outer


def expired() -> bool:
    """Whether this thread's current deadline has passed (a request that failed inside it failed for that)."""
    current = getattr(_local, "current", None)
    return current is not None and time.monotonic() >= current[0]


def _watch(sock: Optional[socket.socket]) -> None:
    current = getattr(_local, "current", None)
    if current is not None and sock is not None:
        current[1].append(_watchdog.arm(current[0], sock))


class _Watched:
    """A connection that puts its socket under the thread's deadline before each request it sends."""

    def request(self, *args, **kwargs):
        if self.sock is None:
            self.connect()
        _watch(self.sock)
        return super().request(*args, **kwargs)


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _Releasing:
    def _put_conn(self, conn) -> None:
        if conn is not None:
            _watchdog.release(conn.sock)
        super()._put_conn(conn)


class _HTTPPool(_Releasing, HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(_Releasing, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def mount(session: requests.Session, adapter: HTTPAdapter) -> requests.Session:
    """Mount ``adapter`` on ``session`` for http and https, with connections that honour :func:`deadline`."""
    adapter.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
