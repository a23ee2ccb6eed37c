"""Fetching: download one photo's bytes from Flickr (or a mirror), politely and with every failure named.

The only module that talks HTTP. A :class:`Fetcher` is handed its
``requests.Session`` (pooled connections), retries connection errors,
timeouts, 5xx and 429 with exponential backoff and jitter, honours
``Retry-After``, caps concurrent requests per host, and returns either the
body or a :class:`~fdf_build.records.Skip` saying why not.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar, Union
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .deadline import deadline, expired, mount
from .errors import BadInput
from .records import Skip, SkipReason

log = logging.getLogger(__name__)

#: Flickr answers a removed or private photo's static URL with a redirect to this image.
PLACEHOLDER_MARKER = "photo_unavailable"
USER_AGENT = "fdf_build/0.1 (+https://github.com/; face dataset rebuild from YFCC100M)"
T = TypeVar("T")


def parse_retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(attempt: int, retry_after: Optional[float], *, base: float, max_retry_after: float) -> Optional[float]:
    """Seconds to wait before retry ``attempt`` (1-based), or None to give up.

    Exponential backoff with jitter (so many workers do not retry in lockstep),
    never shorter than the server's ``Retry-After``; a server asking for a longer
    pause than ``max_retry_after`` is given up on rather than waited for.
    """
    if retry_after is not None and retry_after > max_retry_after:
        return None
    wait = base * 2 ** (attempt - 1) * (0.5 + random.random())
    return wait if retry_after is None else max(wait, retry_after)


class RateLimiter:
    """At most ``rate`` calls a second across threads (evenly spaced, no bursts)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        self.interval, self.clock, self.sleep = 1.0 / rate, clock, sleep
        self._next = clock()
        self._lock = threading.Lock()

    def wait(self, not_before: float = 0.0) -> None:
        with self._lock:
            now = self.clock()
            slot = max(now, self._next, not_before)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


class HostThrottle:
    """Per-host politeness: at most ``rate`` requests a second to each host, and when a host answers
    429 or 503 every worker pauses that host (``Retry-After`` if given, else 1 s doubling per
    consecutive refusal, at most ``max_pause``) rather than each retrying on its own."""

    def __init__(self, rate: Optional[float], *, max_pause: float = 60.0, clock=time.monotonic, sleep=time.sleep):
        self.rate, self.max_pause, self.clock, self.sleep = rate, max_pause, clock, sleep
        self._limiters: dict[str, RateLimiter] = {}
        self._paused_until: dict[str, float] = {}
        self._strikes: dict[str, int] = {}
        self._lock = threading.Lock()

    def wait(self, host: str) -> None:
        with self._lock:
            until = self._paused_until.get(host, 0.0)
            limiter = self._limiters.get(host)
            if limiter is None and self.rate:
                limiter = self._limiters[host] = RateLimiter(self.rate, self.clock, self.sleep)
        if limiter is not None:
            limiter.wait(not_before=until)
        elif until > self.clock():
            self.sleep(until - self.clock())

    def refused(self, host: str, retry_after: Optional[float]) -> None:
        with self._lock:
            strikes = self._strikes[host] = self._strikes.get(host, 0) + 1
            pause = retry_after if retry_after is not None else min(self.max_pause, 2.0 ** (strikes - 1))
            until = self.clock() + min(pause, self.max_pause)
            self._paused_until[host] = max(self._paused_until.get(host, 0.0), until)

    def served(self, host: str) -> None:
        with self._lock:
            self._strikes.pop(host, None)


class RetryBudget:
    """A shared count of retries left (None: unlimited)."""

    def __init__(self, total: Optional[int]):
        self.left = total
        self._lock = threading.Lock()

    def take(self) -> bool:
        if self.left is None:
            return True
        with self._lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def make_session(pool_size: int) -> requests.Session:
    """A pooled session whose requests honour :func:`fdf_build.deadline.deadline` (fetches and downloads)."""
    session = mount(requests.Session(), HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size,
                                                    max_retries=0))
    session.headers["User-Agent"] = USER_AGENT
    return session


class AttemptFailed(Exception):
    """One attempt failed; ``retryable`` says whether trying again may help, ``retry_after`` when (seconds)."""

    def __init__(self, message: str, *, retryable: bool, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retryable, self.retry_after = retryable, retry_after


def with_retries(attempt: Callable[[], T], *, retries: int, backoff: float, max_retry_after: float,
                 sleep: Callable[[float], None] = time.sleep, budget: Optional["RetryBudget"] = None) -> T:
    """Return ``attempt()``'s result, retrying AttemptFailed that are retryable; re-raise the last failure.

    A shared ``budget`` caps retries across all calls: when a host is down, a
    build fails its photos fast instead of retrying every one of them.
    """
    failure: Optional[AttemptFailed] = None
    for number in range(retries + 1):
        if number:
            wait = retry_delay(number, failure.retry_after, base=backoff, max_retry_after=max_retry_after)
            if wait is None or (budget is not None and not budget.take()):
                break
            sleep(wait)
        try:
            return attempt()
        except AttemptFailed as e:
            failure = e
            if not e.retryable:
                break
    raise failure


class _Failed(AttemptFailed):
    def __init__(self, reason: SkipReason, detail: str, retry_after: Optional[float] = None,
                 status: Optional[int] = None, retryable: Optional[bool] = None):
        super().__init__(detail, retryable=reason in RETRYABLE if retryable is None else retryable,
                         retry_after=retry_after)
        self.reason, self.detail, self.status = reason, detail, status


@dataclass
class Fetcher:
    """Fetch URLs to bytes; call it from many threads at once.

    ``timeout`` bounds connecting and each read; ``deadline`` bounds the whole fetch of one URL, its retries
    and their pauses included, in wall-clock seconds, so a server that trickles bytes (in the headers or the
    body, in whatever chunks) cannot hold a worker past it. Waits for this fetcher's own politeness (a free
    per-host slot, the host's rate) are not counted.
    """

    session: requests.Session
    timeout: float = 20.0
    deadline: float = 120.0
    retries: int = 3
    backoff: float = 0.5
    max_retry_after: float = 60.0
    per_host: int = 8
    max_bytes: int = 50 * 1024 * 1024
    throttle: Optional[HostThrottle] = None
    budget: Optional[RetryBudget] = None
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self):
        self._host_slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def _slot(self, url: str) -> threading.BoundedSemaphore:
        host = urlsplit(url).netloc
        with self._lock:
            if host not in self._host_slots:
                self._host_slots[host] = threading.BoundedSemaphore(self.per_host)
            return self._host_slots[host]

    def __call__(self, url: str) -> Union[bytes, Skip]:
        return self._fetch(url, self._attempt)

    def probe(self, url: str) -> Optional[Skip]:
        """Whether ``url`` is still served, without downloading it: None if it is, else why not.

        One-byte Range GET (servers and mirrors honour it more widely than HEAD);
        a server that ignores the Range and starts a full body is hung up on unread.
        """
        result = self._fetch(url, self._probe_attempt)
        return result if isinstance(result, Skip) else None

    def _fetch(self, url: str, attempt_once: Callable[[str], bytes]) -> Union[bytes, Skip]:
        host = urlsplit(url).netloc
        left = [self.deadline]  # seconds of the deadline not spent yet

        def attempt() -> bytes:
            with self._slot(url):
                if self.throttle is not None:
                    self.throttle.wait(host)
                if left[0] <= 0:
                    raise self._past_deadline()
                started = time.monotonic()
                try:
                    with deadline(left[0]):
                        body = attempt_once(url)
                except _Failed as e:
                    if self.throttle is not None and e.status in (429, 503):
                        self.throttle.refused(host, e.retry_after)
                    raise
                finally:
                    left[0] -= time.monotonic() - started
                if self.throttle is not None:
                    self.throttle.served(host)
                return body

        def pause(seconds: float) -> None:  # a backoff pause counts, and never runs past the deadline
            seconds = min(seconds, max(0.0, left[0]))
            self.sleep(seconds)
            left[0] -= seconds

        try:
            return with_retries(attempt, retries=self.retries, backoff=self.backoff,
                                max_retry_after=self.max_retry_after, sleep=pause, budget=self.budget)
        except _Failed as e:
            return Skip(e.reason, e.detail)

    def _past_deadline(self) -> _Failed:
        return _Failed(SkipReason.HTTP_TIMEOUT, f"not complete within the {self.deadline:g} s deadline",
                       retryable=False)

    def _failure(self, e: requests.RequestException) -> _Failed:
        """What a request that raised stands for: the deadline, if it had passed (the watchdog cut it)."""
        return self._past_deadline() if expired() else _Failed(*request_failure(e))

    def _attempt(self, url: str) -> bytes:
        try:
            with self.session.get(url, stream=True, timeout=self.timeout, allow_redirects=True) as response:
                _check_response(response, ok=(200,))
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > self.max_bytes:
                    raise _Failed(SkipReason.TOO_LARGE, f"Content-Length {length} > {self.max_bytes}")
                chunks, size = [], 0
                for chunk in response.iter_content(1 << 16):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise _Failed(SkipReason.TOO_LARGE, f"body over {self.max_bytes} bytes")
                    chunks.append(chunk)
                if expired():  # cut at the deadline where the body had no announced end
                    raise self._past_deadline()
                return b"".join(chunks)
        except requests.RequestException as e:
            raise self._failure(e) from None

    def _probe_attempt(self, url: str) -> bytes:
        try:
            with self.session.get(url, stream=True, timeout=self.timeout, allow_redirects=True,
                                  headers={"Range": "bytes=0-0"}) as response:
                _check_response(response, ok=(200, 206))
                return b""
        except requests.RequestException as e:
            raise self._failure(e) from None


def _check_response(response: requests.Response, *, ok: tuple[int, ...]) -> None:
    """Raise the failure a response stands for: Flickr's placeholder redirect, or a status not in ``ok``."""
    hops = [r.headers.get("Location", "") for r in response.history] + [response.url]
    if any(PLACEHOLDER_MARKER in hop for hop in hops):
        raise _Failed(SkipReason.PHOTO_REMOVED, f"redirected to {hops[-1]}")
    status = response.status_code
    if status not in ok:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        raise _Failed(status_reason(status), f"HTTP {status}", retry_after, status)


# The one mapping from HTTP outcomes to reasons, shared by fetch and download, so a
# status or a requests exception means the same (and is retried the same) everywhere.
def status_reason(status: int) -> SkipReason:
    if status == 404 or status == 410:
        return SkipReason.HTTP_NOT_FOUND
    if status == 429:
        return SkipReason.HTTP_RATE_LIMITED
    if status >= 500:
        return SkipReason.HTTP_SERVER_ERROR
    return SkipReason.HTTP_CLIENT_ERROR


def request_failure(e: requests.RequestException) -> tuple[SkipReason, str]:
    """Why a request raised, and a short detail; anything not transient is a REQUEST_ERROR (not retried)."""
    if isinstance(e, requests.Timeout):  # before ConnectionError: ConnectTimeout is both
        return SkipReason.HTTP_TIMEOUT, type(e).__name__
    if isinstance(e, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return SkipReason.CONNECTION_ERROR, type(e).__name__
    return SkipReason.REQUEST_ERROR, f"{type(e).__name__}: {e}"


RETRYABLE = {
    SkipReason.HTTP_TIMEOUT,
    SkipReason.CONNECTION_ERROR,
    SkipReason.HTTP_SERVER_ERROR,
    SkipReason.HTTP_RATE_LIMITED,
}


@dataclass(frozen=True, kw_only=True)
class FetchSettings:
    """How politely a command fetches: what a build and a rehydration share (their configs extend this)."""

    workers: int = 8
    per_host: int = 8
    timeout: float = 20.0
    #: wall-clock seconds for one photo's whole fetch, retries included
    deadline: float = 120.0
    retries: int = 3
    max_retry_after: float = 60.0
    #: requests per second to each host (None: unlimited), and retries allowed in all (None: unlimited)
    rate: Optional[float] = 20.0
    retry_budget: Optional[int] = 10_000
    max_bytes: int = 50 * 1024 * 1024

    def __post_init__(self):
        checks = [
            (self.workers >= 1 and self.per_host >= 1, "workers and per-host must be >= 1"),
            (self.timeout > 0 and self.retries >= 0, "timeout must be > 0 and retries >= 0"),
            (self.deadline > 0, "deadline must be > 0"),
            (self.rate is None or self.rate > 0, "rate must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInput(message)

    def fetcher(self) -> Fetcher:
        """The fetch stage with these timeouts, retries, per-host cap, rate and retry budget."""
        return Fetcher(
            make_session(self.workers),
            timeout=self.timeout,
            deadline=self.deadline,
            retries=self.retries,
            max_retry_after=self.max_retry_after,
            per_host=self.per_host,
            max_bytes=self.max_bytes,
            throttle=HostThrottle(self.rate, max_pause=self.max_retry_after),
            budget=RetryBudget(self.retry_budget),
        )
