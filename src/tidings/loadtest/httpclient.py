"""A minimal HTTP/1.1 keep-alive client for publishing under load.

Just enough for ``POST`` with a JSON body and a ``Content-Length`` answer,
one request in flight per connection. A general client (httpx) would cost
the load generator more CPU than the server spends answering.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import orjson


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("connection closed mid-request"))

    def _parse(self) -> None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        status = int(head[9:12])
        start = head.find(b"content-length:")
        if start < 0:
            raise RuntimeError("response without Content-Length is not supported")
        line_end = head.find(b"\r\n", start)
        length = int(head[start + 15 : line_end if line_end >= 0 else len(head)])
        total = end + 4 + length
        if len(buffer) < total:
            return
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))


class HttpClient:
    """Keep-alive connection to one server; reconnects once if the server closed it."""

    def __init__(self, base_url: str, *, token: str | None = None) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.token = token
        self._conn: _Conn | None = None

    async def _connection(self) -> _Conn:
        if self._conn is None or self._conn.closed:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(_Conn, self.host, self.port)
            self._conn = protocol
        return self._conn

    async def post(self, path: str, body: Any, *, timeout: float = 60.0) -> tuple[int, bytes]:
        payload = orjson.dumps(body)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        )
        if self.token:
            head += f"Authorization: Bearer {self.token}\r\n"
        request = head.encode() + b"\r\n" + payload
        for attempt in (1, 2):
            conn = await self._connection()
            waiter = asyncio.get_running_loop().create_future()
            conn.waiter = waiter
            assert conn.transport is not None
            conn.transport.write(request)
            try:
                return await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                # The late answer would be read as the next request's: start afresh.
                self.close()
                self._conn = None
                raise
            except ConnectionResetError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()


class HttpPool:
    """A few keep-alive connections; each request borrows an idle one."""

    def __init__(self, base_url: str, *, token: str | None = None, size: int = 4) -> None:
        self.clients = [HttpClient(base_url, token=token) for _ in range(size)]
        self._idle: asyncio.Queue[HttpClient] = asyncio.Queue()
        for client in self.clients:
            self._idle.put_nowait(client)

    async def post(self, path: str, body: Any, *, timeout: float = 60.0) -> tuple[int, bytes]:
        client = await self._idle.get()
        try:
            return await client.post(path, body, timeout=timeout)
        finally:
            self._idle.put_nowait(client)

    def close(self) -> None:
        for client in self.clients:
            client.close()
