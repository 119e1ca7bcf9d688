"""The load generator's client sockets: picows listeners, one per connection.

Two dialects: ``tidings`` (tidings' JSON frames; the bare picows and
websockets peers speak it too) and ``socketio`` (Engine.IO 4 / Socket.IO 5
packets straight over a WebSocket, no polling). A receiving connection that
is not sampled only counts its frames: the hot path reads no payload, so the
load generator stays cheap next to the server it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from picows import WSListener, WSMsgType, WSTransport, ws_connect

from tidings.loadtest.wire import SOCKETIO, TIDINGS

SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"
NOTIFICATION = b'{"type":"notification"'
"""How a notification frame starts: other events (expire, counts) are not deliveries."""
LOOPBACK_SOURCES = tuple(f"127.0.0.{host}" for host in range(2, 18))
"""Source addresses for loopback clients: each has its own ephemeral port range,
so 20k connections to one server never make the kernel hunt for a free port.
Linux only (elsewhere 127.0.0.2 and up are usually not configured)."""
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

AckCallback = Callable[[dict[str, Any] | None], None]
"""Called with the ack (or error) frame, or ``None`` when the connection dropped."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the server under load listens and how to talk to it.

    ``ws_url`` is the WebSocket URL without a token (``ws://host:port/ws`` for
    tidings); for the socketio dialect only its host and port are used.
    ``http_url`` is the base of the HTTP publish API, when there is one.
    """

    ws_url: str
    http_url: str | None = None
    dialect: str = TIDINGS
    server_pid: int | None = None
    """A local server's PID: its CPU time and RSS are then measured too."""
    bearer: bool = False
    """tidings dialect: send the token as ``Authorization: Bearer``, not in the
    URL, so the proxies in front of a deployment never log it."""

    def url_for(self, token: str, *, since: int | None = None, topics: str | None = None) -> str:
        """The handshake URL; ``topics`` (``name:seq,...``, only with ``since``)
        replays those topic streams too."""
        if self.dialect == SOCKETIO:
            parts = urlsplit(self.ws_url)
            url = f"{parts.scheme}://{parts.netloc}{SOCKETIO_PATH}&token={quote(token)}"
        elif self.bearer:
            url = self.ws_url
        else:
            sep = "&" if "?" in self.ws_url else "?"
            url = f"{self.ws_url}{sep}token={quote(token)}"
        if since is None:
            return url
        url = f"{url}{'&' if '?' in url else '?'}since={since}"
        return f"{url}&topics={quote(topics, safe=':,')}" if topics else url


@dataclass(slots=True)
class Tally:
    """Counters shared by every connection of one load generator run."""

    delivered: int = 0
    """Notification frames received, all connections together."""
    recording: bool = False
    latencies: array[int] = field(default_factory=lambda: array("q"))
    """Nanoseconds from send to receipt, for sampled connections while recording."""
    max_samples: int = 10_000_000
    """At most this many latencies are kept (80 MB): a long run stays bounded in memory."""
    dropped: int = 0
    """Connections that closed while the run needed them."""
    errors: int = 0


class Client(WSListener):
    """One connection: counts notifications, answers Socket.IO pings, matches acks."""

    def __init__(self, tally: Tally, dialect: str, *, sampled: bool = False) -> None:
        self.tally = tally
        self.socketio = dialect == SOCKETIO
        self.sampled = sampled
        self.transport: WSTransport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.index = 0
        """Position of this connection's token in the list it was opened from."""
        self.received = 0
        self.closed = False
        self.paused = False
        self.on_json: Callable[[dict[str, Any]], None] | None = None
        """Sees every parsed tidings frame that is not an ack (catch-up watches caughtUp)."""
        self.on_notification: Callable[[dict[str, Any]], None] | None = None
        """Sees every parsed notification of a sampled connection (seq checks)."""
        self.close_code: int | None = None
        """The code of the close frame the server sent, if one came."""
        self._acks: dict[int, AckCallback] = {}
        self._next_id = 0

    # -- picows callbacks ----------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if not self.socketio:
            self.ready.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT:
            if self.socketio:
                self._socketio_frame(transport, frame.get_payload_as_bytes())
            elif self.sampled or self._acks or self.on_json is not None:
                self._tidings_frame(frame.get_payload_as_bytes())
            elif frame.get_payload_as_memoryview()[: len(NOTIFICATION)] == NOTIFICATION:
                self.received += 1
                self.tally.delivered += 1
        elif kind is WSMsgType.CLOSE:
            self.close_code = frame.get_close_code()
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the handshake completed"))
        acks, self._acks = self._acks, {}
        for callback in acks.values():
            callback(None)

    # -- frames in -----------------------------------------------------------

    def _tidings_frame(self, payload: bytes) -> None:
        body = orjson.loads(payload)
        kind = body.get("type")
        if kind == "notification":
            self._notified(body)
        elif kind in ("ack", "error"):
            callback = self._acks.pop(body.get("requestId"), None)
            if kind == "error":
                self.tally.errors += 1
            if callback is not None:
                callback(body)
        elif self.on_json is not None:
            self.on_json(body)

    def _socketio_frame(self, transport: WSTransport, payload: bytes) -> None:
        head = payload[:2]
        if head == b"42":
            if self.sampled:
                self._notified(orjson.loads(payload[2:])[1])
            else:
                self.received += 1
                self.tally.delivered += 1
        elif head == b"43":
            bracket = payload.index(b"[")
            callback = self._acks.pop(int(payload[2:bracket]), None)
            if callback is not None:
                callback(orjson.loads(payload[bracket:])[0])
        elif payload == b"2":
            transport.send(WSMsgType.TEXT, b"3")
        elif head[:1] == b"0":
            transport.send(WSMsgType.TEXT, b"40")
        elif head == b"40":
            if not self.ready.done():
                self.ready.set_result(None)
        elif head == b"44":
            self.tally.errors += 1
            if not self.ready.done():
                self.ready.set_exception(ConnectionRefusedError(payload[2:].decode()))

    def _notified(self, body: dict[str, Any]) -> None:
        self.received += 1
        tally = self.tally
        tally.delivered += 1
        if tally.recording and len(tally.latencies) < tally.max_samples:
            data = body.get("data")
            if isinstance(data, dict) and "ts" in data:
                tally.latencies.append(time.monotonic_ns() - data["ts"])
        if self.on_notification is not None:
            self.on_notification(body)

    # -- frames out ----------------------------------------------------------

    def action(self, name: str, body: dict[str, Any], on_ack: AckCallback | None = None) -> None:
        """Send ``name`` with ``body`` (tidings: an ``action`` frame; Socket.IO: an event)."""
        transport = self.transport
        if transport is None or self.closed:
            if on_ack is not None:
                on_ack(None)
            return
        self._next_id += 1
        request_id = self._next_id
        if on_ack is not None:
            self._acks[request_id] = on_ack
        if self.socketio:
            transport.send(WSMsgType.TEXT, b"42%d" % request_id + orjson.dumps([name, body]))
        else:
            transport.send(
                WSMsgType.TEXT,
                orjson.dumps({"action": name, **body, "requestId": request_id}),
            )

    async def call(self, name: str, body: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Send an action and wait for its ack; raises if it fails or times out."""
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()

        def done(reply: dict[str, Any] | None) -> None:
            if not future.done():
                future.set_result(reply)

        self.action(name, body, done)
        reply = await asyncio.wait_for(future, timeout)
        if reply is None or reply.get("type") == "error":
            raise RuntimeError(f"{name} failed: {reply!r}")
        return reply

    def pause(self) -> None:
        """Stop reading from the socket: the server's buffers fill as for a stalled phone."""
        if self.transport is not None and not self.paused:
            self.transport.underlying_transport.pause_reading()
            self.paused = True

    def shrink_receive_buffer(self, size: int) -> None:
        """Set SO_RCVBUF (the kernel doubles it): less backlog hides in the client's kernel."""
        if self.transport is None or self.closed:
            return
        sock = self.transport.underlying_transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def resume(self) -> None:
        if self.transport is not None and self.paused:
            self.transport.underlying_transport.resume_reading()
            self.paused = False

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.disconnect(graceful=False)


def _bound_socket(source: str) -> Callable[[Any], socket.socket]:
    def factory(parsed_url: Any) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        return sock

    return factory


async def connect(
    endpoint: Endpoint,
    token: str,
    tally: Tally,
    *,
    sampled: bool = False,
    since: int | None = None,
    on_json: Callable[[dict[str, Any]], None] | None = None,
    on_notification: Callable[[dict[str, Any]], None] | None = None,
    topics: str | None = None,
    source: str | None = None,
    timeout: float = 15.0,
) -> Client:
    """Open one authenticated connection (Socket.IO: after its ``40`` connect packet).

    ``source`` binds the client to that local address before connecting.
    """

    def make() -> Client:
        client = Client(tally, endpoint.dialect, sampled=sampled)
        client.on_json = on_json
        client.on_notification = on_notification
        return client

    _, client = await ws_connect(
        make,
        endpoint.url_for(token, since=since, topics=topics),
        websocket_handshake_timeout=timeout,
        read_buffer_init_size=4096,
        socket_factory=_bound_socket(source) if source else None,
        extra_headers={"Authorization": f"Bearer {token}"}
        if endpoint.bearer and endpoint.dialect != SOCKETIO
        else None,
    )
    assert isinstance(client, Client)
    await asyncio.wait_for(client.ready, timeout)
    return client


@dataclass(slots=True)
class Connected:
    clients: list[Client]
    seconds: float
    failed: int
    first_error: str | None

    @property
    def rate(self) -> float:
        return len(self.clients) / self.seconds if self.seconds else 0.0


async def connect_many(
    endpoint: Endpoint,
    tokens: Sequence[str],
    tally: Tally,
    *,
    concurrency: int = 200,
    sampled: Callable[[int], bool] = lambda index: False,
    deadline: float = 120.0,
) -> Connected:
    """Open one connection per token, ``concurrency`` handshakes in flight at a time.

    Returns the connections in token order (failed ones left out) and the wall
    time of the whole batch: ``len(clients) / seconds`` is the handshake rate.
    """
    loop = asyncio.get_running_loop()
    slots: list[Client | None] = [None] * len(tokens)
    failures: list[str] = []
    cursor = 0
    give_up = loop.time() + deadline
    host = urlsplit(endpoint.ws_url).hostname or ""
    loopback = sys.platform.startswith("linux") and host in ("127.0.0.1", "localhost")
    sources = LOOPBACK_SOURCES if loopback else (None,)

    async def worker() -> None:
        nonlocal cursor
        while cursor < len(tokens) and loop.time() < give_up:
            index = cursor
            cursor += 1
            try:
                client = await connect(
                    endpoint,
                    tokens[index],
                    tally,
                    sampled=sampled(index),
                    source=sources[index % len(sources)],
                )
                client.index = index
                slots[index] = client
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(tokens)) or 1)))
    seconds = time.perf_counter() - started
    clients = [client for client in slots if client is not None]
    return Connected(
        clients, seconds, len(tokens) - len(clients), failures[0] if failures else None
    )


async def close_all(clients: Sequence[Client], *, settle: float = 0.5) -> None:
    for client in clients:
        client.close()
    await asyncio.sleep(settle)
