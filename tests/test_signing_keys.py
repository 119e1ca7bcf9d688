"""Signing keys on real servers: rotated HS256 secrets, and an identity
provider's tokens, its JWKS served over real HTTP with keys generated in the
test and rotated while the server runs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.jwks_server import AUDIENCE, ISSUER, JwksServer, SigningKey
from tests.server import SECRET, ServerProcess
from tests.wsclient import open_ws, recv_json, send_json
from tidings.core.keys import Keys
from tidings.core.tokens import Identity, UnknownKey, mint, verify, verify_fresh
from tidings.jwks import JwksSource

RSA, EC = SigningKey("rsa-1", "RS256"), SigningKey("ec-1", "ES256")


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    with JwksServer(RSA) as server:
        yield server


async def test_an_unknown_kid_fetches_once_and_later_ones_wait_for_the_interval(
    idp: JwksServer,
) -> None:
    keys = Keys.of(SECRET, issuer=ISSUER, audience=AUDIENCE)
    source = JwksSource(idp.url, keys, min_interval=3600)
    try:
        assert await source.fetch()
        assert verify(keys, RSA.token("alice")) == Identity("alice")
        idp.keys.append(EC)  # the provider rotates: a new key appears
        token = EC.token("bob")
        with pytest.raises(UnknownKey):
            verify(keys, token)
        # Many handshakes naming the new kid at once share one fetch.
        found = await asyncio.gather(*(verify_fresh(keys, token) for _ in range(20)))
        assert found == [Identity("bob")] * 20
        assert idp.fetches == 2
        # A kid nobody publishes does not make every handshake fetch again.
        stranger = SigningKey("nobody").token("mallory")
        for _ in range(5):
            with pytest.raises(UnknownKey):
                await verify_fresh(keys, stranger)
        assert idp.fetches == 2
    finally:
        await source.close()


async def test_a_failed_fetch_keeps_the_keys_in_use(idp: JwksServer) -> None:
    keys = Keys.of(SECRET)
    source = JwksSource(idp.url, keys, min_interval=0)
    try:
        assert await source.fetch()
        source.url = idp.url + "-gone"  # answers 404
        assert not await source.fetch()
        assert verify(keys, RSA.token("alice")) == Identity("alice")
        source.url = "http://127.0.0.1:9/jwks"  # nothing listens
        assert not await source.fetch()
        assert verify(keys, RSA.token("alice")) == Identity("alice")
    finally:
        await source.close()


@pytest.fixture
def server(tmp_path: Path, idp: JwksServer) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path,
        "--jwks-url",
        idp.url,
        "--token-issuer",
        ISSUER,
        "--token-audience",
        AUDIENCE,
        "--jwks-min-interval",
        "0",
    ).start()
    yield proc
    proc.stop()


async def test_provider_tokens_open_streams_and_call_the_api_across_a_key_rotation(
    server: ServerProcess, idp: JwksServer
) -> None:
    ws = await open_ws(server.ws_url, token=RSA.token("alice"))
    await send_json(ws, {"action": "sendNotification", "userId": "alice", "message": "hi"})
    assert {(await recv_json(ws))["type"], (await recv_json(ws))["type"]} == {"ack", "notification"}
    await ws.close()
    idp.keys = [EC]  # rotated: the RSA key is withdrawn, an EC key takes over
    async with httpx.AsyncClient(base_url=server.url) as http:
        counts = await http.get(
            "/v1/users/me/counts", headers={"Authorization": f"Bearer {EC.token('bob')}"}
        )
        assert counts.status_code == 200, counts.text
    ws = await open_ws(server.ws_url, token=EC.token("carol"))  # already fetched
    await ws.close()
    # A handshake with a kid the server has not seen waits for the fetch, then opens.
    newer = SigningKey("ec-2", "ES256")
    idp.keys.append(newer)
    ws = await open_ws(server.ws_url, token=newer.token("dora"))
    await send_json(ws, {"action": "ping", "requestId": "p"})
    assert (await recv_json(ws))["type"] == "pong"
    await ws.close()
    # The server's own HS256 tokens keep working next to the provider's.
    ws = await open_ws(server.ws_url, token=server.token("erin"))
    await ws.close()


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://evil.example"}, b"issuer"),
        ({"aud": "another-app"}, b"Audience"),
        ({"ttl": -60}, b"expired"),
    ],
)
async def test_provider_tokens_for_another_issuer_or_audience_are_refused(
    server: ServerProcess, claims: dict[str, object], reason: bytes
) -> None:
    ttl = claims.pop("ttl", 600)
    assert isinstance(ttl, int)
    with pytest.raises(InvalidStatus) as info:
        await open_ws(server.ws_url, token=RSA.token("alice", ttl=ttl, **claims))
    assert info.value.response.status_code == 401
    assert reason in info.value.response.body


async def test_a_kid_nobody_publishes_is_refused_after_a_fetch(
    server: ServerProcess, idp: JwksServer
) -> None:
    before = idp.fetches
    for _ in range(3):
        with pytest.raises(InvalidStatus) as info:
            await open_ws(server.ws_url, token=SigningKey("nobody").token("mallory"))
        assert info.value.response.status_code == 401
        assert b"no signing key" in info.value.response.body
    assert idp.fetches == before + 3  # --jwks-min-interval 0: one fetch each


async def test_a_rotated_secret_still_verifies_its_tokens_and_new_ones_carry_the_new_kid(
    tmp_path: Path,
) -> None:
    new = "rotated-secret-" + "n" * 32
    proc = ServerProcess(tmp_path, env={"TIDINGS_SECRET": new, "TIDINGS_OLD_SECRETS": SECRET})
    proc.start()
    try:
        ws = await open_ws(proc.ws_url, token=proc.token("alice"))  # signed with the old one
        await ws.close()
        ws = await open_ws(proc.ws_url, token=mint(Keys.of(new), "bob", ttl_seconds=60))
        await ws.close()
        with pytest.raises(InvalidStatus) as info:
            await open_ws(proc.ws_url, token=mint("another-" + "z" * 32, "eve", ttl_seconds=60))
        assert info.value.response.status_code == 401
    finally:
        proc.stop()
