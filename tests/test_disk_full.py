"""The SQLite store on a disk that fills up, then gets room again.

A real filesystem, no fake disk: a 4 MiB tmpfs mounted for the test (this
needs root) holds the database. Once a filler file takes every free byte,
publishing answers 503 ``unavailable`` naming the full disk and the file
(over the WebSocket, an ``unavailable`` error frame), nothing is stored or
acked, reads still answer and ``/readyz`` is 503; once the filler is gone,
readiness and publishing come back without a restart.
A subscriber connected throughout gets every acked notification once, in
order.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ledger import Ledger
from tests.server import ServerProcess
from tests.services import missing
from tests.test_multinode import Client, OneNode


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory on a 4 MiB tmpfs of its own."""
    if os.geteuid() != 0:
        missing("a small disk to fill", "mounting a 4 MiB tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        missing("a small disk to fill", f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\xff" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return filler


async def test_full_disk_refuses_writes_and_recovers(small_disk: Path, tmp_path: Path) -> None:
    database = small_disk / "tidings.db"
    server = ServerProcess(tmp_path / "data", env={"TIDINGS_DB": f"sqlite:///{database}"})
    server.start()
    headers = {"Authorization": f"Bearer {server.token('backend', admin=True)}"}
    ledger = Ledger()
    bob = Client("bob", OneNode(server), server)
    ledger.follow("bob", "bob", bob.frames)
    await bob.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:

            async def publish(message: str) -> httpx.Response:
                body = {"userId": "bob", "message": message}
                response = await http.post("/v1/notifications", json=body)
                if response.status_code == 201:
                    ledger.ack(message, ["bob"])
                return response

            async def stored() -> list[str]:
                inbox = await http.get("/v1/users/bob/inbox")
                assert inbox.status_code == 200, inbox.text
                return sorted(item["message"] for item in inbox.json()["items"])

            assert (await publish("before")).status_code == 201
            filler = fill(small_disk)

            answers = await asyncio.gather(*(publish(f"full-{i}") for i in range(8)))
            for answer in answers:
                assert answer.status_code == 503, answer.text
                error = answer.json()["error"]
                assert error["code"] == "unavailable", error
                assert "nothing stored" in error["message"], error
                assert f"disk full at {str(database)!r}" in error["message"], error
                assert "SQLITE_FULL" in error["message"], error
            assert await stored() == ["before"]
            ready = await http.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert "disk full" in ready.json()["store"], ready.text
            assert (await publish("still full")).status_code == 503
            reply = await bob.send("bob", "ws full")
            assert reply["type"] == "error" and reply["code"] == "unavailable", reply
            assert "disk full" in reply["message"], reply
            lines = [line for line in server.log().splitlines() if "store writes failing" in line]
            assert lines and "disk full" in lines[0] and str(database) in lines[0], lines

            filler.unlink()
            deadline = time.monotonic() + 10
            while (ready := await http.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, ready.text
                await asyncio.sleep(0.1)
            assert (await publish("after")).status_code == 201
            assert (await bob.send("bob", "ws after"))["type"] == "ack"
            ledger.ack("ws after", ["bob"])
            assert await stored() == ["after", "before", "ws after"]
            assert "store writes work again" in server.log()
            deadline = time.monotonic() + 5
            while ledger.missing("bob") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            counts = ledger.count(stored=[("bob", message) for message in await stored()])
            assert counts.acked == 3, counts
            counts.check()
            assert not bob.errors
    finally:
        await bob.close()
        server.stop()
