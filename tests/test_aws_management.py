"""boto3's ``apigatewaymanagementapi`` client against a real server, as against API Gateway.

The client signs with SigV4; tidings verifies the signature with the access
key it was started with. Unsigned and wrongly signed calls get AWS's 403s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed

from tests.server import ServerProcess
from tests.wsclient import open_ws

KEY_ID = "AKIDTIDINGSTEST0001"
SECRET = "tidings-management-test-secret-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("aws") / "data",
        "--allow-user-id",
        "--stage",
        "production",
        "--aws-access-key-id",
        KEY_ID,
        env={"TIDINGS_AWS_SECRET_ACCESS_KEY": SECRET},
    ).start()
    yield proc
    proc.stop()


def client(
    server: ServerProcess, *, key: str = KEY_ID, secret: str = SECRET, stage: str = "/production"
) -> BaseClient:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"{server.url}{stage}",
        region_name="eu-west-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


async def connection_id(server: ServerProcess, user: str) -> str:
    headers = {"Authorization": f"Bearer {server.token('backend', admin=True)}"}
    async with httpx.AsyncClient(headers=headers) as http:
        body = (await http.get(f"{server.url}/v1/users/{user}/presence")).json()
    [conn_id] = body["connectionIds"]
    assert isinstance(conn_id, str)
    return conn_id


def error_of(call: Any, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value


async def test_post_get_delete_reach_a_live_connection(server: ServerProcess) -> None:
    ws = await open_ws(f"ws://127.0.0.1:{server.port}/production", userId="boto-bob")
    conn_id = await connection_id(server, "boto-bob")
    api = client(server)

    await asyncio.to_thread(api.post_to_connection, ConnectionId=conn_id, Data=b'{"hello":1}')
    assert await asyncio.wait_for(ws.recv(), 5) == '{"hello":1}'

    info = await asyncio.to_thread(api.get_connection, ConnectionId=conn_id)
    assert info["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert isinstance(info["ConnectedAt"], datetime)
    assert abs((datetime.now(UTC) - info["ConnectedAt"]).total_seconds()) < 60
    assert info["LastActiveAt"] >= info["ConnectedAt"]
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    assert "websockets" in info["Identity"]["UserAgent"]

    # The same calls work without the stage prefix.
    plain = client(server, stage="")
    await asyncio.to_thread(plain.post_to_connection, ConnectionId=conn_id, Data=b"again")
    assert await asyncio.wait_for(ws.recv(), 5) == "again"

    deleted = await asyncio.to_thread(api.delete_connection, ConnectionId=conn_id)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000

    # Now stale: GoneException, the exception the seed's cleanup waits for.
    for call in (api.post_to_connection, api.get_connection, api.delete_connection):
        kwargs: dict[str, Any] = {"ConnectionId": conn_id}
        if call == api.post_to_connection:
            kwargs["Data"] = b"late"
        with pytest.raises(api.exceptions.GoneException) as gone:
            await asyncio.to_thread(call, **kwargs)
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410


async def test_too_large_payload_is_payload_too_large(server: ServerProcess) -> None:
    ws = await open_ws(server.ws_url, userId="boto-big")
    conn_id = await connection_id(server, "boto-big")
    api = client(server)
    with pytest.raises(api.exceptions.PayloadTooLargeException):
        await asyncio.to_thread(api.post_to_connection, ConnectionId=conn_id, Data=b"x" * 200_000)
    await ws.close()


@pytest.mark.parametrize(
    ("key", "secret", "kind"),
    [
        (KEY_ID, "a-wrong-secret-of-forty-characters-000000", "InvalidSignatureException"),
        ("AKIDSOMEONEELSE0001", SECRET, "UnrecognizedClientException"),
    ],
    ids=["wrong-secret", "unknown-key"],
)
async def test_wrongly_signed_calls_are_refused(
    server: ServerProcess, key: str, secret: str, kind: str
) -> None:
    ws = await open_ws(server.ws_url, userId=f"boto-{kind}")
    conn_id = await connection_id(server, f"boto-{kind}")
    api = client(server, key=key, secret=secret)
    error = await asyncio.to_thread(
        error_of, api.post_to_connection, ConnectionId=conn_id, Data=b"no"
    )
    assert error.response["Error"]["Code"] == kind
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    error = await asyncio.to_thread(error_of, api.delete_connection, ConnectionId=conn_id)
    assert error.response["Error"]["Code"] == kind
    # Nothing reached the socket, and it is still open.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.3)
    assert (await asyncio.to_thread(client(server).get_connection, ConnectionId=conn_id))[
        "ResponseMetadata"
    ]["HTTPStatusCode"] == 200
    await ws.close()


async def test_unsigned_and_non_admin_calls_get_aws_shaped_403s(server: ServerProcess) -> None:
    ws = await open_ws(server.ws_url, userId="boto-plain")
    conn_id = await connection_id(server, "boto-plain")
    url = f"{server.url}/production/@connections/{conn_id}"
    user = {"Authorization": f"Bearer {server.token('boto-plain')}"}
    cases = [
        ({}, "MissingAuthenticationTokenException"),
        (user, "ForbiddenException"),
        ({"Authorization": "Bearer not-a-token"}, "ForbiddenException"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "IncompleteSignatureException"),
        ({"Authorization": "AWS4-HMAC-SHA256 Credential=x"}, "IncompleteSignatureException"),
    ]
    async with httpx.AsyncClient() as http:
        for headers, kind in cases:
            for method in ("GET", "POST", "DELETE"):
                response = await http.request(method, url, headers=headers, content=b"x")
                assert response.status_code == 403, (method, headers, response.text)
                assert response.headers["x-amzn-ErrorType"] == kind
                assert response.json()["__type"] == kind and response.json()["message"]
        # An admin token still works, with or without the stage.
        admin = {"Authorization": f"Bearer {server.token('backend', admin=True)}"}
        assert (await http.get(url, headers=admin)).status_code == 200
    await ws.close()


async def test_signed_calls_are_refused_when_no_key_is_configured(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--allow-user-id").start()
    try:
        ws = await open_ws(server.ws_url, userId="bob")
        conn_id = await connection_id(server, "bob")
        error = await asyncio.to_thread(
            error_of, client(server, stage="").get_connection, ConnectionId=conn_id
        )
        assert error.response["Error"]["Code"] == "UnrecognizedClientException"
        # Without --stage the stage is $default, served under /$default as well.
        info = await asyncio.to_thread(
            httpx.get,
            f"{server.url}/$default/@connections/{conn_id}",
            headers={"Authorization": f"Bearer {server.token('a', admin=True)}"},
        )
        assert info.status_code == 200
        await ws.close()
    finally:
        server.stop()
