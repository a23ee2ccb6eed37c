"""A small HTTP server on 127.0.0.1 for the demo, the tests and the benchmarks, with injectable faults.

It serves in-memory bodies under any paths (Flickr-style ones for the demo),
answers HTTP Range and HEAD requests, and can misbehave on purpose, per path and in
order: drop the connection, answer 5xx, 429 with ``Retry-After``, stall, send
a truncated body, or redirect to Flickr's "photo unavailable" placeholder.
It binds to loopback only, on a free port (or ``port``), handles a bounded number
of requests and stops by itself after ``max_seconds`` even if nobody stops it
(``None``: only when stopped, for ``fdf-build demo --serve``).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, Union

PLACEHOLDER_PATH = "/images/en-us/photo_unavailable.png"


@dataclass(frozen=True)
class Redirect:
    location: str
    status: int = 302


@dataclass(frozen=True)
class Fault:
    """One misbehaviour, used up by one request to its path.

    kinds: ``drop`` (close before answering), ``status`` (answer ``status``,
    with ``retry_after`` as a header if set), ``stall`` (wait before answering),
    ``cut`` (announce the full length, send half, close), ``short`` (a complete
    response whose body is the first half of the file), ``pause`` (send half
    the body, wait, send the rest), ``drip`` (send the body one byte every
    ``seconds``), ``drip-head`` (send the status line and headers so).

    A wait lasts ``seconds``, or, given ``release``, until that event is set (at
    most ``seconds`` if set, else the server's ``max_seconds``): tests release
    it when the client has given up or done what they check, so no outcome
    depends on how fast either side runs.
    """

    kind: str
    status: int = 500
    retry_after: Optional[str] = None
    seconds: float = 0.0
    release: Optional[threading.Event] = field(default=None, compare=False)

    def wait(self, max_seconds: float) -> None:
        if self.release is None:
            time.sleep(self.seconds)
        else:
            self.release.wait(self.seconds or max_seconds)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients hanging up mid-response are what fault tests do on purpose.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@dataclass
class LocalServer:
    routes: dict[str, Union[bytes, Redirect]]
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    latency: float = 0.0
    max_seconds: Optional[float] = 600.0
    max_requests: int = 100_000
    ignore_range: bool = False
    port: int = 0

    def __post_init__(self):
        self.requests: list[tuple[str, float]] = []
        #: paths whose drip the client hung up on before its end
        self.hung_up: list[str] = []
        self.range_headers: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "LocalServer":
        server = _QuietServer(("127.0.0.1", self.port), _handler_for(self))
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._timer = None
        if self.max_seconds is not None:
            self._timer = threading.Timer(self.max_seconds, server.shutdown)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def _next_fault(self, path: str, range_header: str = "") -> Optional[Fault]:
        with self._lock:
            self.requests.append((path, time.monotonic()))
            self.range_headers.append((path, range_header))
            if len(self.requests) > self.max_requests:
                return Fault("drop")
            queue = self.faults.get(path)
            return queue.pop(0) if queue else None

    def hits(self, path: str) -> list[float]:
        with self._lock:
            return [t for p, t in self.requests if p == path]


def _handler_for(server: LocalServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - keep test output clean
            pass

        def do_GET(self):  # noqa: N802
            path = self.path.split("?", 1)[0]
            fault = server._next_fault(path, self.headers.get("Range", ""))
            if server.latency:
                time.sleep(server.latency)
            if fault is not None and fault.kind == "stall":
                fault.wait(server.max_seconds)
                fault = None
            if fault is not None and fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault is not None and fault.kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return self._send(fault.status, b"error\n", headers)
            body = server.routes.get(path)
            if body is None:
                return self._send(404, b"not found\n")
            if isinstance(body, Redirect):
                return self._send(body.status, b"", {"Location": body.location})
            if fault is not None and fault.kind == "short":
                body = body[: len(body) // 2]
            if fault is not None and fault.kind in ("drip", "drip-head") and self.command == "GET":
                return self._drip(path, body, fault)
            if fault is not None and fault.kind in ("cut", "pause") and self.command == "GET":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if fault.kind == "pause":
                    fault.wait(server.max_seconds)
                    self.wfile.write(body[len(body) // 2 :])
                else:
                    self.close_connection = True
                return
            self._send_range_or_body(body)

        def _drip(self, path: str, body: bytes, fault: Fault) -> None:
            """Send slowly, a byte every ``fault.seconds``, until done or the client hangs up (noted in ``hung_up``)."""
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            slow, rest = (head, body) if fault.kind == "drip-head" else (body, b"")
            self.close_connection = True
            try:
                if fault.kind == "drip":
                    self.wfile.write(head)
                for i in range(len(slow)):
                    self.wfile.write(slow[i:i + 1])
                    self.wfile.flush()
                    time.sleep(fault.seconds)
                self.wfile.write(rest)
            except OSError:  # the client hung up before the end
                with server._lock:
                    server.hung_up.append(path)

        def do_HEAD(self):  # noqa: N802 - what GET would answer, headers only (body faults do not apply)
            self.do_GET()

        def _send_range_or_body(self, body: bytes) -> None:
            header = self.headers.get("Range", "")
            if header.startswith("bytes=") and not server.ignore_range:
                start_text, _, end_text = header[6:].partition("-")
                start = int(start_text or 0)
                end = int(end_text) if end_text else len(body) - 1
                if start >= len(body):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                end = min(end, len(body) - 1)
                return self._send(
                    206, body[start : end + 1], {"Content-Range": f"bytes {start}-{end}/{len(body)}"}
                )
            self._send(200, body, {"Accept-Ranges": "none" if server.ignore_range else "bytes"})

        def _send(self, status: int, body: bytes, headers: Optional[dict] = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler
