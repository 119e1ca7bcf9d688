"""The WebSocket handshake: the plain-request path and python-websockets' path agree."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from websockets.typing import Subprotocol

from tests.server import ServerProcess
from tidings.web.handshake import plain_upgrade

PLAIN = (
    "GET /ws?token=abc HTTP/1.1\r\n"
    "host: 127.0.0.1:8000\r\n"
    "upgrade: websocket\r\n"
    "connection: Upgrade\r\n"
    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "sec-websocket-version: 13\r\n"
    "user-agent: test\r\n"
    "\r\n"
)


def test_a_plain_upgrade_request_is_read_as_path_and_headers() -> None:
    path, headers = plain_upgrade(PLAIN.encode()) or ("", {})
    assert path == "/ws?token=abc"
    assert headers["user-agent"] == "test"
    assert headers["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    browser = PLAIN.replace("connection: Upgrade", "connection: keep-alive, Upgrade").replace(
        "user-agent: test\r\n",
        "Origin: https://app.example\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
    )
    assert plain_upgrade(browser.encode()) is not None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("GET /ws", "POST /ws"),
        ("HTTP/1.1\r\nhost", "HTTP/1.0\r\nhost"),
        ("upgrade: websocket", "upgrade: h2c"),
        ("connection: Upgrade", "connection: keep-alive"),
        ("connection: Upgrade", "connection: Upgrade, @"),
        ("sec-websocket-version: 13", "sec-websocket-version: 8"),
        ("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
        ("dGhlIHNhbXBsZSBub25jZQ==", "not base64!"),
        ("user-agent: test", "user-agent: t\u00e9st"),
        ("user-agent: test", "user-agent: a\r\nUser-Agent: b"),
        ("user-agent: test", "content-length: 5"),
        ("user-agent: test", "transfer-encoding: chunked"),
        ("user-agent: test", "no colon"),
        ("\r\n\r\n", "\r\n"),
    ],
)
def test_anything_else_is_left_to_python_websockets(old: str, new: str) -> None:
    assert old in PLAIN
    assert plain_upgrade(PLAIN.replace(old, new, 1).encode("utf-8")) is None


async def _exchange(port: int, request: str) -> tuple[str, list[str], bytes]:
    """Status line, header lines without Date, and the body of the server's answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request.encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")[:-2]
    length = next((int(line.split(":")[1]) for line in lines if line.startswith("Content-")), 0)
    body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
    writer.close()
    return lines[0], [line for line in lines[1:] if not line.startswith("Date:")], body


async def test_both_paths_give_the_same_answers(server: ServerProcess) -> None:
    token = server.token("alice")
    # A header given twice takes python-websockets' path.
    slow = "user-agent: test\r\nx-twice: 1\r\nx-twice: 2"
    accepted = PLAIN.replace("token=abc", f"token={token}")
    fast_answer = await _exchange(server.port, accepted)
    slow_answer = await _exchange(server.port, accepted.replace("user-agent: test", slow))
    assert fast_answer[0] == "HTTP/1.1 101 Switching Protocols"
    assert fast_answer == slow_answer
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in fast_answer[1]
    for query, status in [("token=abc", 401), (f"token={token}&since=x", 400)]:
        refused = PLAIN.replace("token=abc", query)
        fast_answer = await _exchange(server.port, refused)
        slow_answer = await _exchange(server.port, refused.replace("user-agent: test", slow))
        assert fast_answer[0].startswith(f"HTTP/1.1 {status} ")
        assert fast_answer == slow_answer


async def test_a_header_given_twice_is_a_bad_request(server: ServerProcess) -> None:
    """Two Origin (or Authorization) headers take python-websockets' path, and
    get a 400 there instead of no answer at all."""
    for header in ("Origin: https://a.example", f"Authorization: Bearer {server.token('al')}"):
        twice = PLAIN.replace("user-agent: test", f"user-agent: test\r\n{header}\r\n{header}")
        status, _, body = await _exchange(server.port, twice)
        assert status.startswith("HTTP/1.1 400 "), (header, status)
        assert b"more than one" in body


async def test_both_paths_answer_the_subprotocol_and_never_the_token(server: ServerProcess) -> None:
    token = server.token("alice")
    offered = PLAIN.replace("/ws?token=abc", "/ws?since=0")
    fast = offered.replace(
        "user-agent: test", f"sec-websocket-protocol: tidings.v1, bearer.{token}"
    )
    slow = offered.replace(
        "user-agent: test",
        f"sec-websocket-protocol: tidings.v1\r\nsec-websocket-protocol: bearer.{token}",
    )
    fast_answer, slow_answer = (
        await _exchange(server.port, fast),
        await _exchange(server.port, slow),
    )
    assert fast_answer == slow_answer
    assert fast_answer[0] == "HTTP/1.1 101 Switching Protocols"
    assert "Sec-WebSocket-Protocol: tidings.v1" in fast_answer[1]
    assert token not in "".join(fast_answer[1])
    other = offered.replace("user-agent: test", f"sec-websocket-protocol: chat, bearer.{token}")
    status, _, body = await _exchange(server.port, other)
    assert status.startswith("HTTP/1.1 400 ") and b"tidings.v1" in body


async def test_a_browser_style_client_opens_with_the_subprotocol(server: ServerProcess) -> None:
    from websockets.asyncio.client import connect

    token = server.token("dora")
    async with connect(
        server.ws_url + "?since=0",
        subprotocols=[Subprotocol("tidings.v1"), Subprotocol(f"bearer.{token}")],
    ) as ws:
        assert ws.subprotocol == "tidings.v1"
        caught_up = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        assert caught_up["type"] == "caughtUp"
    assert token not in server.log()
