"""A TCP proxy in front of a real PostgreSQL that breaks connections on cue.

It relays bytes both ways and watches what the client sends. Armed with a
statement (``arm(b"COMMIT;")``), the next time a client sends it the proxy
forwards it to the server, then cuts the client off before any answer comes
back: the server runs the statement, the client never learns that it did.
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.cuts = 0
        self._statement: bytes | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def arm(self, statement: bytes) -> None:
        """Cut the next connection that sends ``statement`` as a simple query."""
        length = (len(statement) + 5).to_bytes(4, "big")
        self._statement = b"Q" + length + statement + b"\x00"

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        cut = asyncio.Event()

        async def upstream() -> None:
            while data := await client_r.read(65536):
                server_w.write(data)
                await server_w.drain()
                if self._statement is not None and self._statement in data:
                    self._statement = None
                    self.cuts += 1
                    cut.set()
                    client_w.transport.abort()
                    return

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if cut.is_set():
                    return
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if cut.is_set():
                await asyncio.sleep(0.5)  # the server finishes the statement it was sent
        finally:
            for task in tasks:
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_w, server_w):
                writer.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks, return_exceptions=True)
