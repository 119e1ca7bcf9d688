"""Frames in: a message's fragments are bounded, and one client's flood of
frames does not keep the server from serving the others."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from pathlib import Path

import httpx
import orjson

from tests.server import ServerProcess
from tests.wsclient import open_ws, recv_json, send_json

MASK = b"\x00\x00\x00\x00"
"""Client frames must be masked; a zero key leaves the payload as it is."""


def client_frame(opcode: int, payload: bytes, *, fin: bool) -> bytes:
    assert len(payload) < 126
    return bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload))) + MASK + payload


def in_fragments(message: bytes, parts: int) -> bytes:
    """``message`` as ``parts`` frames (a text frame, then continuations), the
    last one carrying what is left."""
    size = len(message) // parts
    chunks = [message[i * size : (i + 1) * size] for i in range(parts - 1)]
    chunks.append(message[(parts - 1) * size :])
    return b"".join(
        client_frame(0x1 if i == 0 else 0x0, chunk, fin=i == parts - 1)
        for i, chunk in enumerate(chunks)
    )


async def raw_connect(
    server: ServerProcess, user: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that writes whatever bytes it is given."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws?token={server.token(user)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


async def read_server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    first, second = await asyncio.wait_for(reader.readexactly(2), 10)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


async def test_many_tiny_fragments_close_with_1009_and_others_are_served(
    server: ServerProcess,
) -> None:
    other = await open_ws(server.ws_url, token=server.token("carol"))
    reader, writer = await raw_connect(server, "mallory")
    writer.write(in_fragments(b"x" * 100_000, parts=100_000))

    # The other user keeps its pongs and its notifications meanwhile.
    for n in range(20):
        await send_json(other, {"action": "ping", "requestId": n})
        assert await recv_json(other) == {"type": "pong", "requestId": n}
    async with httpx.AsyncClient(base_url=server.url) as http:
        admin = {"Authorization": f"Bearer {server.token('ops', admin=True)}"}
        answer = await http.post(
            "/v1/notifications", json={"userId": "carol", "message": "still here"}, headers=admin
        )
        assert answer.status_code == 201, answer.text
    frame = await recv_json(other)
    assert frame["type"] == "notification" and frame["message"] == "still here"

    opcode, payload = await read_server_frame(reader)
    assert opcode == 0x8  # close, and nothing before it (the message was never handled)
    code, reason = struct.unpack("!H", payload[:2])[0], payload[2:].decode()
    assert (code, reason) == (1009, "message too big: more than 1024 fragments")
    assert await asyncio.wait_for(reader.read(), 10) == b""  # then the server's FIN
    writer.close()
    assert '"message refused"' in server.log()
    assert '"reason":"message too big: more than 1024 fragments"' in server.log()
    assert '"user":"mallory"' in server.log()
    await other.close()


async def test_the_fragment_limit_is_a_setting_and_counts_every_frame(tmp_path: Path) -> None:
    proc = ServerProcess(
        tmp_path / "frag", "--user-send", "any", env={"TIDINGS_MAX_FRAGMENTS": "8"}
    ).start()
    try:
        reader, writer = await raw_connect(proc, "alice")
        message = b'{"action":"sendNotification","userId":"bob","message":"parts","requestId":1}'
        writer.write(in_fragments(message, parts=8))
        opcode, payload = await read_server_frame(reader)
        assert opcode == 0x1 and orjson.loads(payload)["type"] == "ack"

        writer.write(in_fragments(message, parts=9))
        opcode, payload = await read_server_frame(reader)
        assert opcode == 0x8
        assert payload == struct.pack("!H", 1009) + b"message too big: more than 8 fragments"
        writer.close()
    finally:
        proc.stop()


async def test_a_flood_of_frames_in_one_write_is_answered_whole_and_in_order(
    server: ServerProcess,
) -> None:
    """Frames parsed over many loop iterations keep their order and none is lost."""
    other = await open_ws(server.ws_url, token=server.token("carol"))
    reader, writer = await raw_connect(server, "dave")
    count = 20_000
    writer.write(
        b"".join(
            client_frame(0x1, b'{"action":"ping","requestId":%d}' % n, fin=True)
            for n in range(count)
        )
    )
    await send_json(other, {"action": "ping", "requestId": "other"})
    assert await recv_json(other) == {"type": "pong", "requestId": "other"}
    for n in range(count):
        opcode, payload = await read_server_frame(reader)
        assert (opcode, payload) == (0x1, b'{"type":"pong","requestId":%d}' % n)
    writer.close()
    await other.close()


async def test_with_a_frame_size_limit_a_large_message_passes_only_in_small_frames(
    tmp_path: Path,
) -> None:
    proc = ServerProcess(tmp_path / "frame", "--user-send", "any", "--max-fragment-bytes", "40")
    proc.start()
    try:
        reader, writer = await raw_connect(proc, "alice")
        message = b'{"action":"sendNotification","userId":"bob","message":"parts","requestId":1}'
        writer.write(in_fragments(message, parts=2))  # 38 and 39 bytes: each within 40
        opcode, payload = await read_server_frame(reader)
        assert opcode == 0x1 and orjson.loads(payload)["type"] == "ack"

        writer.write(client_frame(0x1, message, fin=True))  # the same 77 bytes in one frame
        opcode, payload = await read_server_frame(reader)
        assert opcode == 0x8
        assert (
            payload == struct.pack("!H", 1009) + b"frame too big: more than 40 bytes in one frame"
        )
        writer.close()
        async with httpx.AsyncClient(base_url=proc.url) as http:
            inbox = await http.get(
                "/v1/users/bob/inbox", headers={"Authorization": f"Bearer {proc.token('bob')}"}
            )
        assert [item["message"] for item in inbox.json()["items"]] == ["parts"]
    finally:
        proc.stop()
