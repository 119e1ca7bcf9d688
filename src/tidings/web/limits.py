"""Limits on HTTP requests, enforced while they are read, before the app runs.

httptools, uvicorn's parser, puts no bound on a request's header fields, and
uvicorn arms no timer before a connection's first response: a client could
send one endless header or twenty thousand of them, a body of any length, or
half a request and hold the socket forever. ``LimitedHttpProtocol`` is
uvicorn's protocol plus counting: past a limit it answers 431 (head), 413
(body) or 408 (too slow) with the JSON error body and closes. WebSocket
handshakes are parsed here too, so they are held to the same head limits
until uvicorn hands the connection to the WebSocket transport.

FastAPI reads and parses a body before it runs a route's dependencies, so
``BearerFirst`` refuses a ``/v1`` request with a missing or bad token before
its body is read (the AWS-compatible ``@connections`` routes verify a
signature over the body, so they read it; the size limit still holds).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from tidings.core.errors import TidingsError
from tidings.core.keys import Keys
from tidings.web.counters import HTTP, WebCounters
from tidings.web.deps import VERIFIED, authenticate
from tidings.web.errors import error_response

log = logging.getLogger("tidings.http")

OVERFLOW_TIMEOUT = 1.0
"""Seconds a connection has to send its request head while more than
``max_incomplete`` others are still sending theirs."""
LINGER = 2.0
"""Seconds a refused request's connection keeps reading (and dropping) what the
client still sends, so that it reads the answer instead of a reset."""


@dataclass(slots=True)
class RequestLimits:
    """The limits, and how many connections are sending a request head right now."""

    max_header_bytes: int
    max_headers: int
    max_body_bytes: int
    header_timeout: float
    body_timeout: float
    max_incomplete: int
    incomplete: int = 0
    counters: WebCounters = field(default_factory=WebCounters)
    """Where refusals are counted (the runtime's, so the metrics see them)."""


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request already answered."""


def refusal(status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    lines = [STATUS_LINE[status]]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    lines.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
    lines.append(b"connection: close\r\n\r\n")
    return b"".join(lines) + body


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded heads, bodies and waits.

    One timer per connection: from the connection (or a request's first
    read) to the end of its head, then from there to the end of its body.
    """

    def __init__(self, limits: RequestLimits, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._in_head = False
        self._in_body = False
        self._refused = False
        self._head_bytes = 0
        """Bytes of the head parsed: the URL and every header field."""
        self._raw_head = 0
        """Bytes received while the head was still incomplete (one field may be endless)."""
        self._headers = 0
        self._body_bytes = 0
        self._head_timeout = limits.header_timeout
        self._timer: asyncio.TimerHandle | None = None

    # -- connection ----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()
        self._timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered: what the client still sends is dropped
        self._unset_keepalive_if_required()
        if not (self._in_head or self._in_body):
            # Between requests; even bytes the parser skips (blank lines)
            # must not hold the connection past the header timeout.
            self._start_head()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self._refused:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        # Timers are armed only for a request still incomplete after a read:
        # most arrive whole, and then there is nothing to arm and cancel.
        if self._in_head:
            self._raw_head += len(data)
            if self._raw_head > self.limits.max_header_bytes:
                self._refuse(431, "headers_too_large", self._too_large_head(), "max_header_bytes")
            elif self._timer is None:
                self._timer = self.loop.call_later(self._head_timeout, self._head_timed_out)
        elif self._in_body and self._timer is None:
            self._timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)

    # -- parser callbacks ----------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._raw_head = self._headers = self._body_bytes = 0
        if not self._in_head:
            self._start_head()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, "headers_too_large", self._too_large_head(), "max_header_bytes")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's three lines, inline rather than through super(): this runs
        # for every header field of every request.
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))
        self._headers += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, "headers_too_large", self._too_large_head(), "max_header_bytes")
            raise _Refused
        if self._headers > self.limits.max_headers:
            message = f"more than {self.limits.max_headers} header fields"
            self._refuse(431, "headers_too_large", message, "max_headers")
            raise _Refused
        if name == b"content-length":
            self._check_length(value)

    def on_headers_complete(self) -> None:
        self._end_head()
        self._stop_timer()
        super().on_headers_complete()
        self._in_body = not self.parser.should_upgrade()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            message = f"the body is over {self.limits.max_body_bytes} bytes"
            self._refuse(413, "payload_too_large", message, "max_body_bytes")
            raise _Refused
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._stop_timer()
        super().on_message_complete()

    # -- limits --------------------------------------------------------------

    def _start_head(self) -> None:
        limits = self.limits
        self._head_timeout = limits.header_timeout
        if limits.incomplete >= limits.max_incomplete:
            self._head_timeout = min(self._head_timeout, OVERFLOW_TIMEOUT)
        limits.incomplete += 1
        self._in_head = True

    def _end_head(self) -> None:
        if self._in_head:
            self._in_head = False
            self.limits.incomplete -= 1

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_large_head(self) -> str:
        return f"the request head is over {self.limits.max_header_bytes} bytes"

    def _check_length(self, value: bytes) -> None:
        try:
            length = int(value)
        except ValueError:
            return  # the parser refuses it
        if length > self.limits.max_body_bytes:
            message = f"the body is {length} bytes; at most {self.limits.max_body_bytes} are read"
            self._refuse(413, "payload_too_large", message, "max_body_bytes")
            raise _Refused

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._raw_head or self._head_bytes:
            message = "the request head was not received in time"
            self._refuse(408, "request_timeout", message, "header_timeout")
        else:
            self._end_head()
            self.transport.close()  # a connection that never sent a byte

    def _body_timed_out(self) -> None:
        self._timer = None
        message = "the request body was not received in time"
        self._refuse(408, "request_timeout", message, "body_timeout")

    def _refuse(self, status: int, code: str, message: str, limit: str) -> None:
        """Answer ``status`` and close the connection; ``limit`` names the setting
        that was passed (the metrics count refusals by it).

        No answer when this request was answered already (the app may answer
        without reading the body) or a response is being written. The app, if
        it is waiting for the body, sees the client disconnect.
        Writing is shut first and reading goes on for ``LINGER`` seconds, so a
        client still sending reads the answer rather than a connection reset.
        """
        if self._refused:
            return
        self._refused = True
        self.limits.counters.limits[limit] += 1
        in_body = self._in_body
        self._end_head()
        self._stop_timer()
        self._in_body = False
        log.warning(
            "request refused",
            extra={"status": status, "reason": message, "client": _client(self.client)},
        )
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        transport = self.transport
        if transport.is_closing():
            return
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            transport.close()  # a response is under way: no room for another
            return
        if not (in_body and cycle is not None and cycle.response_complete):
            transport.write(refusal(status, code, message, self.server_state.default_headers))
        self.flow.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = self.loop.call_later(LINGER, transport.close)


def _client(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else ""


_BODY_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))


class BearerFirst:
    """Answers 401 to a ``/v1`` request with a body but no valid bearer token
    before anything reads the body, with the routes' own check and answer.
    The identity it verified is left in the scope for the route's dependency,
    so a token is still checked once per request."""

    def __init__(self, app: ASGIApp, keys: Keys, counters: WebCounters | None = None) -> None:
        self.app = app
        self.keys = keys
        self.counters = counters or WebCounters()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in _BODY_METHODS
            and scope["path"].startswith("/v1/")
        ):
            authorization = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                    break
            try:
                scope[VERIFIED] = await authenticate(self.keys, authorization)
            except TidingsError as exc:
                self.counters.errors[HTTP, exc.code] += 1
                await error_response(exc.status, exc.code, exc.message)(scope, receive, send)
                return
        await self.app(scope, receive, send)
