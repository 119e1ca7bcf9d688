"""Presence and ``@connections`` on the single-node default (in-process registry)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.server import ServerProcess
from tests.wsclient import open_ws


async def test_presence_and_management_on_one_node(server: ServerProcess) -> None:
    admin = {"Authorization": f"Bearer {server.token('backend', admin=True)}"}
    bob = await open_ws(server.ws_url, token=server.token("bob"))
    async with httpx.AsyncClient(base_url=server.url, headers=admin) as http:
        body = (await http.get("/v1/users/bob/presence")).json()
        assert body["online"] is True and body["connections"] == 1
        [conn_id] = body["connectionIds"]

        info = (await http.get(f"/@connections/{conn_id}")).json()
        assert info["userId"] == "bob" and info["identity"]["sourceIp"] == "127.0.0.1"
        assert (
            await http.post(f"/@connections/{conn_id}", content='{"any":"json"}')
        ).status_code == 200
        assert await asyncio.wait_for(bob.recv(), 5) == '{"any":"json"}'

        assert (await http.delete(f"/@connections/{conn_id}")).status_code == 204
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(bob.recv(), 5)
        gone = await http.get(f"/@connections/{conn_id}")
        assert gone.status_code == 410
        assert gone.json() == {
            "message": f"no open connection {conn_id!r}",
            "__type": "GoneException",
        }
        assert (await http.get("/v1/users/bob/presence")).json()["online"] is False


async def _source_ip(
    server: ServerProcess, user: str, headers: dict[str, str] | list[tuple[str, str]]
) -> str:
    """The sourceIp the server records for a WebSocket opened with ``headers``."""
    ws = await connect(f"{server.ws_url}?token={server.token(user)}", additional_headers=headers)
    admin = {"Authorization": f"Bearer {server.token('backend', admin=True)}"}
    async with httpx.AsyncClient(base_url=server.url, headers=admin) as http:
        [conn_id] = (await http.get(f"/v1/users/{user}/presence")).json()["connectionIds"]
        info = (await http.get(f"/@connections/{conn_id}")).json()
    await ws.close()
    return str(info["identity"]["sourceIp"])


async def test_source_ip_comes_from_x_forwarded_for_only_through_a_trusted_proxy(
    tmp_path: object,
) -> None:
    from pathlib import Path

    trusting = ServerProcess(Path(str(tmp_path)) / "a").start()  # trusts 127.0.0.1
    try:
        assert await _source_ip(trusting, "ann", {}) == "127.0.0.1"
        forwarded = {"X-Forwarded-For": "203.0.113.7"}
        assert await _source_ip(trusting, "bea", forwarded) == "203.0.113.7"
        chain = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 127.0.0.1"}
        assert await _source_ip(trusting, "cid", chain) == "203.0.113.9"
        twice = [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "203.0.113.5")]
        assert await _source_ip(trusting, "dan", twice) == "203.0.113.5"
    finally:
        trusting.stop()
    wary = ServerProcess(Path(str(tmp_path)) / "b", "--forwarded-allow-ips", "10.0.0.0/8").start()
    try:
        assert await _source_ip(wary, "dee", {"X-Forwarded-For": "203.0.113.7"}) == "127.0.0.1"
    finally:
        wary.stop()
