"""Presence and ``@connections`` on the single-node default (in-process registry)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
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
