"""Revocation by user and by token id: the rules without I/O, then on real
servers (SQLite; two nodes on PostgreSQL and Redis): open connections closed
with 4403, handshakes, HTTP calls and refreshes refused, kept across restarts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.server import SECRET, ServerProcess
from tests.services import require_postgres, require_redis, with_query
from tests.test_multinode import pg_fetch
from tests.wsclient import assert_silent, open_ws, recv_json, send_json
from tidings.core.errors import AuthError
from tidings.core.keys import Keys
from tidings.core.revocation import TOKEN, USER, Revocation
from tidings.core.tokens import Identity, mint, verify


def test_a_user_revocation_covers_tokens_issued_until_its_second_and_a_jti_one_token() -> None:
    keys = Keys.of(SECRET)
    old = mint(keys, "alice", ttl_seconds=60)
    keys.revoked.add(Revocation(USER, "alice", (int(time.time()) + 1) * 1000))
    with pytest.raises(AuthError, match="revoked"):
        verify(keys, old)
    later = jwt.encode(
        {"sub": "alice", "iat": int(time.time()) + 2, "exp": int(time.time()) + 60},
        SECRET,
        algorithm="HS256",
    )
    assert verify(keys, later) == Identity("alice")
    no_iat = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="revoked"):
        verify(keys, no_iat)  # when it was issued is unknown: revoked
    one, other = mint(keys, "bob", ttl_seconds=60), mint(keys, "bob", ttl_seconds=60)
    keys.revoked.add(Revocation(TOKEN, str(jwt.decode(one, SECRET, ["HS256"])["jti"]), 0))
    with pytest.raises(AuthError, match="revoked"):
        verify(keys, one)
    assert verify(keys, other).user_id == "bob"


async def closed_with(ws: ClientConnection, timeout: float = 5.0) -> int:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


def jti_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def admin(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token('ops', admin=True)}"}


async def refused(url: str, token: str) -> bytes:
    with pytest.raises(InvalidStatus) as info:
        await open_ws(url, token=token)
    assert info.value.response.status_code == 401
    return info.value.response.body


async def test_revoking_a_user_closes_their_connections_and_refuses_their_tokens(
    server: ServerProcess,
) -> None:
    token = server.token("alice")
    alice, bob = (
        await open_ws(server.ws_url, token=token),
        await open_ws(server.ws_url, token=server.token("bob")),
    )
    async with httpx.AsyncClient(base_url=server.url, headers=admin(server)) as http:
        answer = await http.post("/v1/revocations", json={"userId": "alice"})
        assert answer.status_code == 201, answer.text
        assert answer.json()["kind"] == "user" and answer.json()["subject"] == "alice"
        assert await closed_with(alice) == 4403
        await send_json(bob, {"action": "ping", "requestId": 1})
        assert (await recv_json(bob))["type"] == "pong"  # someone else's connection stays
        assert b"token revoked" in await refused(server.ws_url, token)
        counts = await http.get("/v1/users/me/counts", headers={"Authorization": f"Bearer {token}"})
        assert counts.status_code == 401 and "revoked" in counts.text
        for body in ({}, {"userId": "a", "tokenId": "b"}, {"userId": ""}):
            assert (await http.post("/v1/revocations", json=body)).status_code in (400, 422)
        as_user = await http.post(
            "/v1/revocations",
            json={"userId": "bob"},
            headers={"Authorization": f"Bearer {server.token('bob')}"},
        )
        assert as_user.status_code == 403
    while time.time() * 1000 <= _end_of_second(answer):
        await asyncio.sleep(0.1)  # tokens minted in the revocation's second are revoked too
    fresh = await open_ws(server.ws_url, token=server.token("alice"))
    await fresh.close()
    await bob.close()


def _end_of_second(answer: httpx.Response) -> int:
    """The last millisecond of the revocation's second."""
    from datetime import datetime

    at = datetime.fromisoformat(answer.json()["revokedAt"].replace("Z", "+00:00"))
    return (int(at.timestamp()) + 1) * 1000 - 1


async def test_revoking_one_token_by_jti_with_the_cli_survives_a_restart(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "node").start()
    try:
        first, second = server.token("carol"), server.token("carol")
        one, two = (
            await open_ws(server.ws_url, token=first),
            await open_ws(server.ws_url, token=second),
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tidings",
                "revoke",
                "--jti",
                jti_of(first),
                "--url",
                server.url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={"TIDINGS_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr
        assert '"kind":"token"' in done.stdout
        assert await closed_with(one) == 4403
        await assert_silent(two)
        await two.close()
        server.stop()
        server.start()
        assert b"token revoked" in await refused(server.ws_url, first)
        still = await open_ws(server.ws_url, token=second)
        await still.close()
        usage = subprocess.run(
            [sys.executable, "-m", "tidings", "revoke", "--url", server.url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert usage.returncode == 2 and "--user or --jti" in usage.stderr
    finally:
        server.stop()


async def test_a_revoked_token_cannot_refresh_a_connection(server: ServerProcess) -> None:
    ws = await open_ws(server.ws_url, token=server.token("dan"))
    spare = server.token("dan")
    async with httpx.AsyncClient(base_url=server.url, headers=admin(server)) as http:
        answer = await http.post("/v1/revocations", json={"tokenId": jti_of(spare)})
        assert answer.status_code == 201
    await send_json(ws, {"action": "refreshToken", "token": spare, "requestId": "r"})
    error = await recv_json(ws)
    assert error["code"] == "unauthorized" and "revoked" in error["message"]
    await ws.close()


# -- two nodes on PostgreSQL and Redis --------------------------------------------


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[list[ServerProcess]]:
    schema = f"tidings_rv_{uuid.uuid4().hex[:12]}"
    db = with_query(require_postgres(), f"schema={schema}")
    broker = with_query(require_redis(), f"prefix={schema}")
    nodes = [
        ServerProcess(tmp_path / f"node{i}", "--db", db, "--broker", broker, "--node-ttl", "1.5")
        for i in range(2)
    ]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        await pg_fetch(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def test_a_revocation_on_one_node_closes_connections_on_the_other(
    two_nodes: list[ServerProcess],
) -> None:
    here, there = two_nodes
    token = here.token("erin")
    far = await open_ws(there.ws_url, token=token)
    async with httpx.AsyncClient(base_url=here.url, headers=admin(here)) as http:
        answer = await http.post("/v1/revocations", json={"userId": "erin"})
        assert answer.status_code == 201, answer.text
    assert await closed_with(far, timeout=5) == 4403
    assert b"token revoked" in await refused(there.ws_url, token)
    assert await pg_fetch_count(two_nodes) == 1


async def pg_fetch_count(nodes: list[ServerProcess]) -> int:
    db = nodes[0].args[nodes[0].args.index("--db") + 1]
    schema = db.rsplit("schema=", 1)[1].split("&", 1)[0]
    rows = await pg_fetch(f"SELECT count(*) AS n FROM {schema}.revocations")
    return int(rows[0]["n"])


async def test_a_node_that_missed_the_broker_message_applies_the_stored_revocation(
    tmp_path: Path,
) -> None:
    """Two nodes on one database whose brokers never meet (other Redis prefixes):
    the second hears nothing, and closes its connection from the store instead."""
    schema = f"tidings_rv_{uuid.uuid4().hex[:12]}"
    db = with_query(require_postgres(), f"schema={schema}")
    nodes = [
        ServerProcess(
            tmp_path / f"node{i}",
            "--db",
            db,
            "--broker",
            with_query(require_redis(), f"prefix={schema}-{i}"),
            "--revocation-reload",
            "0.5",
        )
        for i in range(2)
    ]
    try:
        for node in nodes:
            node.start()
        here, there = nodes
        far = await open_ws(there.ws_url, token=there.token("fay"))
        async with httpx.AsyncClient(base_url=here.url, headers=admin(here)) as http:
            assert (await http.post("/v1/revocations", json={"userId": "fay"})).status_code == 201
        assert await closed_with(far, timeout=10) == 4403
    finally:
        for node in nodes:
            node.stop()
        await pg_fetch(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
