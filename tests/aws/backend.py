"""A scriptable HTTP integration on loopback: records every event, answers as told.

``answers[route_key]`` is a function of the event returning ``(http_status,
body)``; a body that is not bytes is sent as JSON. It runs on the server's
thread, so it may sleep to play a slow backend. Unscripted routes answer
``{"statusCode": 200}``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Event = dict[str, Any]
Answer = Callable[[Event], tuple[int, object]]


class Backend:
    def __init__(self) -> None:
        self.url = ""
        self.events: list[Event] = []
        self.answers: dict[str, Answer] = {}
        self._lock = threading.Lock()

    def answer(self, event: Event) -> tuple[int, bytes]:
        with self._lock:
            self.events.append(event)
        script = self.answers.get(event["requestContext"]["routeKey"])
        status, body = script(event) if script else (200, {"statusCode": 200})
        return status, body if isinstance(body, bytes) else json.dumps(body).encode()

    def of_route(self, key: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e["requestContext"]["routeKey"] == key]

    async def wait_for(self, key: str, count: int = 1, timeout: float = 10.0) -> list[Event]:
        """The first ``count`` events of route ``key``, waiting for them to arrive."""
        deadline = time.monotonic() + timeout
        while len(found := self.of_route(key)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} {key} event(s) expected, got {found!r}")
            await asyncio.sleep(0.02)
        return found[:count]


@contextmanager
def running_backend() -> Iterator[Backend]:
    backend = Backend()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, raw = backend.answer(json.loads(self.rfile.read(length)))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    backend.url = f"http://127.0.0.1:{server.server_address[1]}/events"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()
