"""A tiny DynamoDB stand-in on loopback: the JSON protocol's PutItem, DeleteItem and Query.

Enough for the seed's handler (one table, partition key ``pk``, sort key
``sk``): ``KeyConditionExpression`` is ``pk = :v``, optionally with
``AND begins_with(sk, :p)``. Requests are not authenticated. The table is
visible to the test (``items``) and every call is recorded (``calls``).
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Item = dict[str, dict[str, str]]
_CONDITION = re.compile(
    r"\s*pk\s*=\s*(:\w+)\s*(?:AND\s+begins_with\(\s*sk\s*,\s*(:\w+)\s*\)\s*)?", re.IGNORECASE
)


class Table:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[tuple[str, str], Item] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def rows(self, pk: str) -> dict[str, Item]:
        with self.lock:
            return {sk: item for (p, sk), item in self.items.items() if p == pk}

    def put(self, item: Item) -> None:
        with self.lock:
            self.items[(item["pk"]["S"], item["sk"]["S"])] = item

    def handle(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls.append((operation, body))
        if body.get("TableName") != "notifications":
            return 400, _error("ResourceNotFoundException", "Requested resource not found")
        if operation == "PutItem":
            self.put(body["Item"])
            return 200, {}
        if operation == "DeleteItem":
            key = body["Key"]
            with self.lock:
                self.items.pop((key["pk"]["S"], key["sk"]["S"]), None)
            return 200, {}
        if operation == "Query":
            match = _CONDITION.fullmatch(body.get("KeyConditionExpression", ""))
            if match is None:
                return 400, _error("ValidationException", "unsupported KeyConditionExpression")
            values = body.get("ExpressionAttributeValues", {})
            pk = values[match[1]]["S"]
            prefix = values[match[2]]["S"] if match[2] else ""
            found = [item for sk, item in sorted(self.rows(pk).items()) if sk.startswith(prefix)]
            return 200, {"Items": found, "Count": len(found), "ScannedCount": len(found)}
        return 400, _error("UnknownOperationException", f"no operation {operation!r}")


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": message}


def _handler(table: Table) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            target = self.headers.get("X-Amz-Target", "")
            status, answer = table.handle(target.rpartition(".")[2], body)
            raw = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("x-amz-crc32", str(zlib.crc32(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def fake_dynamodb() -> Iterator[tuple[str, Table]]:
    """``(endpoint URL, table)`` while the server runs."""
    table = Table()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(table))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", table
    finally:
        server.shutdown()
        server.server_close()
