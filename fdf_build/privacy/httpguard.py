"""The owner page's HTTP connections under hostile clients: how uvicorn (h11) is run for ``fdf-build serve``.

A connection waiting for a request head (a new one, or one kept alive after a response) may take at most
``head_timeout`` seconds to send it, whole, and the head may be at most ``max_head`` bytes (16 KiB), else it is
answered 408 or 431 and closed. At most ``max_waiting`` connections wait for a head at once: one more closes the
longest-waiting, so clients that send a header byte every few seconds can hold only those places, never the
ones of requests being answered (uvicorn's ``limit_concurrency`` answers 503 beyond that): a slow client costs
others nothing. :func:`server_config` is the one uvicorn configuration, for the command and for the tests.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, Optional

import h11
from uvicorn import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0
MAX_WAITING = 32
LIMIT_CONCURRENCY = 64


def _refusal(status: int, reason: str) -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline and a size cap on each request head, and a bounded set of
    connections waiting for one (see the module's docstring). The limits are class attributes:
    :func:`server_config` makes a subclass with its own."""

    head_timeout, max_head, max_waiting = HEAD_TIMEOUT, MAX_HEAD, MAX_WAITING

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: Optional[asyncio.TimerHandle] = None
        self._head_size = 0
        self._await_head()

    def _waiting(self) -> "OrderedDict[GuardedH11Protocol, None]":
        """The connections of this server waiting for a head, longest-waiting first."""
        state = self.server_state
        if not hasattr(state, "fdf_waiting"):
            state.fdf_waiting = OrderedDict()
        return state.fdf_waiting

    def _await_head(self) -> None:
        waiting = self._waiting()
        waiting[self] = None
        self._head_size = 0
        self._head_timer = self.loop.call_later(self.head_timeout, self._refuse, 408, "Request Timeout")
        while len(waiting) > self.max_waiting:
            oldest = next(iter(waiting))
            oldest._refuse(408, "Request Timeout")

    def _head_received(self) -> None:
        self._waiting().pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, reason: str) -> None:
        self._head_received()
        if not self.transport.is_closing():
            self.transport.write(_refusal(status, reason))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None:
            # the head so far is what h11 holds unparsed, and this; h11 parses a whole head even when it is
            # far over its own incomplete-event limit, so the cap is counted here
            end = data.find(b"\r\n\r\n")
            self._head_size += len(data) if end < 0 else end + 4
            if self._head_size > self.max_head:
                self._refuse(431, "Request Header Fields Too Large")
                return
        scope = self.scope
        super().data_received(data)
        if self.scope is not scope or self.conn.their_state is not h11.IDLE:
            self._head_received()  # a head was parsed: its request is being answered

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE and self._head_timer is None:
            self._await_head()  # kept alive: the next head has the same limits

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._head_received()
        super().connection_lost(exc)


def server_config(app: Any, *, head_timeout: float = HEAD_TIMEOUT, max_waiting: int = MAX_WAITING,
                  **kwargs) -> Config:
    """uvicorn's ``Config`` for the owner page: the guarded h11 protocol with these limits, a bounded number of
    connections, a short keep-alive, no ``Server`` header; ``kwargs`` go to ``Config`` (host, port, logging)."""
    protocol = type("OwnerPageProtocol", (GuardedH11Protocol,),
                    {"head_timeout": head_timeout, "max_waiting": max_waiting})
    settings = dict(http=protocol, limit_concurrency=LIMIT_CONCURRENCY, timeout_keep_alive=5, server_header=False,
                    h11_max_incomplete_event_size=MAX_HEAD, lifespan="off")
    return Config(app, **{**settings, **kwargs})
