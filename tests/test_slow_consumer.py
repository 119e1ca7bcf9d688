"""A client that stops reading is dropped with a 1008 close it still receives,
and reconnecting with ``since`` gives it everything it missed, in order."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.server import ServerProcess
from tests.wsclient import open_ws, recv_json, recv_until, send_json
from tidings.web.closing import CLOSE_TIMEOUT

COUNT = 300
MESSAGE = "x" * 20_000
"""300 notifications of 20 KB: far more than the kernel buffers and the limit hold."""


async def wait_for_log(server: ServerProcess, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"{text!r} not logged"
        await asyncio.sleep(0.05)


async def open_stalled(server: ServerProcess, user: str) -> ClientConnection:
    """A connection of ``user`` that stops reading at once, with a small
    receive buffer: it fills after a few frames."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    slow = await connect(
        f"{server.ws_url}?token={server.token(user)}",
        sock=sock,
        max_size=None,
        max_queue=None,
        ping_interval=None,
    )
    slow.transport.pause_reading()
    return slow


async def test_a_slow_consumer_gets_the_1008_close_then_recovers_everything_with_since(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        tmp_path / "slow", "--user-send", "any", "--send-buffer-limit", "65536"
    ).start()
    try:
        slow = await open_stalled(server, "sloth")

        sender = await open_ws(server.ws_url, token=server.token("alice"))
        for i in range(COUNT):
            await send_json(
                sender,
                {"action": "sendNotification", "userId": "sloth", "message": f"{i} {MESSAGE}"},
            )
        acks = [await recv_json(sender, 30) for _ in range(COUNT)]
        assert sorted(a["seq"] for a in acks) == list(range(1, COUNT + 1))
        await wait_for_log(server, '"slow consumer disconnected"')
        line = next(
            line for line in server.log().splitlines() if "slow consumer disconnected" in line
        )
        assert '"user":"sloth"' in line and '"code":1008' in line

        # It reads again, later than a client has to answer a close frame: the
        # frames that had reached it, in order, then the close.
        await asyncio.sleep(CLOSE_TIMEOUT + 1)
        slow.transport.resume_reading()
        seqs = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                frame = await recv_json(slow, 10)
                assert frame["message"] == f"{frame['seq'] - 1} {MESSAGE}"
                seqs.append(frame["seq"])
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (
            1008,
            "slow consumer: send buffer limit exceeded; reconnect with since",
        )
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) < COUNT  # it was dropped before the end

        again = await open_ws(server.ws_url, token=server.token("sloth"), since=seqs[-1])
        frames = await recv_until(again, "caughtUp", timeout=30)
        replayed = [f for f in frames if f["type"] == "notification"]
        assert [f["seq"] for f in replayed] == list(range(len(seqs) + 1, COUNT + 1))
        assert [f["message"] for f in replayed] == [
            f"{seq - 1} {MESSAGE}" for seq in range(len(seqs) + 1, COUNT + 1)
        ]
        await again.close()
        await sender.close()
    finally:
        server.stop()
