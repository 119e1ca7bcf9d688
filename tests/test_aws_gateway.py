"""The gateway's hooks against a stand-in connection and a scripted backend (no sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from tidings.aws import gateway as gateway_module
from tidings.aws.gateway import Gateway
from tidings.aws.integration import Integrations
from tidings.aws.routes import Route, RouteTable, SelectionExpression
from tidings.aws.settings import GatewaySettings
from tidings.core.tokens import Identity

URL = "http://backend.test/ws"
Handler = Callable[[dict[str, Any]], Awaitable[httpx.Response]]


class FakeTransport:
    def __init__(self) -> None:
        self.paused = False
        self.closing = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closing


class FakeConnection:
    def __init__(self, conn_id: str = "node0000conn0001") -> None:
        self.id = conn_id
        self.connected_at = 1_700_000_000.0
        self.source_ip = "127.0.0.1"
        self.transport: Any = FakeTransport()
        self.sent: list[bytes] = []
        self.frames: list[bytes] = []
        self.outcome: tuple[Any, ...] | None = None

    def send(self, payload: bytes) -> None:
        self.sent.append(payload)

    def write_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def hold_reading(self, reason: str) -> None:
        self.transport.pause_reading()

    def release_reading(self, *reasons: str) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def accept(self, subprotocol: str | None) -> bool:
        self.outcome = ("accepted",) if subprotocol is None else ("accepted", subprotocol)
        return True

    def refuse(self, status: int, text: str) -> None:
        self.outcome = ("refused", status, text)


class Backend:
    """Records every event; answers with what the test's handler returns."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.handler = handler

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        event = json.loads(request.content)
        self.events.append(event)
        if self.handler is None:
            return httpx.Response(200, json={"statusCode": 200})
        return await self.handler(event)

    def routes(self, key: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["requestContext"]["routeKey"] == key]


def make_gateway(backend: Backend, *routes: Route, timeout: float = 2.0) -> Gateway:
    table = RouteTable(
        {route.key: route for route in routes}, SelectionExpression.parse("$request.body.action")
    )
    settings = GatewaySettings(routes=table, integration_timeout=timeout, stage="production")
    client = httpx.AsyncClient(transport=httpx.MockTransport(backend))
    return Gateway(settings, integrations=Integrations(timeout=timeout, client=client))


def request(path: str = "/production?userId=bob&token=secret-token") -> Request:
    headers = Headers(
        {"Host": "gw.test:8000", "User-Agent": "ua/1", "Authorization": "Bearer secret-token"}
    )
    return Request(path, headers)


async def until(check: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def open_connection(gw: Gateway, conn: FakeConnection) -> None:
    gw.handshake(conn, request(), Identity("bob"), accept=conn.accept, refuse=conn.refuse)


async def test_without_connect_route_the_handshake_is_accepted_at_once() -> None:
    backend = Backend()
    gw = make_gateway(backend, Route("$default", URL))
    conn = FakeConnection()
    open_connection(gw, conn)
    assert conn.outcome == ("accepted",) and not conn.transport.paused
    assert gw.serves_websocket("/production") and gw.serves_websocket("/production/ws/")
    assert not gw.serves_websocket("/staging")
    await gw.close()


async def test_connect_waits_for_the_integration_with_reading_paused() -> None:
    release = asyncio.Event()

    async def slow_yes(event: dict[str, Any]) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json={"statusCode": 200, "body": "Connected"})

    backend = Backend(slow_yes)
    gw = make_gateway(backend, Route("$connect", URL))
    conn = FakeConnection()
    open_connection(gw, conn)
    await until(lambda: backend.events)
    assert conn.outcome is None and conn.transport.paused
    release.set()
    await until(lambda: conn.outcome is not None)
    assert conn.outcome == ("accepted",) and not conn.transport.paused
    [event] = backend.events
    assert event["requestContext"]["routeKey"] == "$connect"
    assert event["requestContext"]["domainName"] == "gw.test:8000"
    assert event["requestContext"]["stage"] == "production"
    assert event["requestContext"]["authorizer"]["principalId"] == "bob"
    assert event["queryStringParameters"] == {"userId": "bob"}
    assert "secret-token" not in json.dumps(event)
    await gw.close()


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (httpx.Response(200, json={"statusCode": 403, "body": "no"}), ("refused", 403, "no")),
        (
            httpx.Response(200, json={"statusCode": 401}),
            ("refused", 401, "refused by the $connect route (401)"),
        ),
        (httpx.Response(200, text="not json"), ("refused", 500, "Internal server error")),
        (httpx.Response(502, json={"statusCode": 200}), ("refused", 500, "Internal server error")),
    ],
)
async def test_connect_refusals(answer: httpx.Response, outcome: tuple[Any, ...]) -> None:
    async def reply(event: dict[str, Any]) -> httpx.Response:
        return answer

    gw = make_gateway(Backend(reply), Route("$connect", URL), Route("$disconnect", URL))
    conn = FakeConnection()
    open_connection(gw, conn)
    await until(lambda: conn.outcome is not None)
    assert conn.outcome == outcome
    # A refused connection was never open: no $disconnect for it.
    gw.disconnected(conn, 1006, "")
    await gw.close()


async def test_connect_timeout_refuses_with_504() -> None:
    async def never(event: dict[str, Any]) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    gw = make_gateway(Backend(never), Route("$connect", URL), timeout=0.2)
    conn = FakeConnection()
    open_connection(gw, conn)
    await until(lambda: conn.outcome is not None)
    assert conn.outcome == ("refused", 504, "Endpoint request timed out")
    await gw.close()


async def test_client_leaving_during_connect_gets_a_disconnect_not_an_accept() -> None:
    release = asyncio.Event()

    async def slow(event: dict[str, Any]) -> httpx.Response:
        if event["requestContext"]["routeKey"] == "$connect":
            await release.wait()
        return httpx.Response(200, json={"statusCode": 200})

    backend = Backend(slow)
    gw = make_gateway(backend, Route("$connect", URL), Route("$disconnect", URL))
    conn = FakeConnection()
    open_connection(gw, conn)
    await until(lambda: backend.events)
    conn.transport.closing = True
    release.set()
    await until(lambda: backend.routes("$disconnect"))
    assert conn.outcome is None
    assert backend.routes("$disconnect")[0]["requestContext"]["disconnectStatusCode"] == 1006
    await gw.close()


async def test_message_routes_two_way_one_way_and_builtin() -> None:
    async def echo(event: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json={"statusCode": 200, "body": "echo:" + event["body"]})

    backend = Backend(echo)
    gw = make_gateway(
        backend, Route("echo", URL, two_way=True), Route("quiet", URL), Route("$default", URL)
    )
    conn = FakeConnection()
    open_connection(gw, conn)
    assert gw.route_message(conn, b'{"action":"echo"}')
    assert gw.route_message(conn, b'{"action":"quiet"}')
    assert gw.route_message(conn, b"hello")
    assert not gw.route_message(conn, b'{"action":"ping"}')
    await until(lambda: len(backend.events) == 3)
    await asyncio.sleep(0.05)
    assert conn.sent == [b'echo:{"action":"echo"}']
    keys = sorted(e["requestContext"]["routeKey"] for e in backend.events)
    assert keys == ["$default", "echo", "quiet"]
    assert all(e["requestContext"]["eventType"] == "MESSAGE" for e in backend.events)
    assert len({e["requestContext"]["messageId"] for e in backend.events}) == 3
    await gw.close()


async def test_two_way_binary_body_goes_out_as_a_binary_frame() -> None:
    async def binary(event: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json={"body": "/wA=", "isBase64Encoded": True})

    gw = make_gateway(Backend(binary), Route("$default", URL, two_way=True))
    conn = FakeConnection()
    open_connection(gw, conn)
    gw.route_message(conn, b"x")
    await until(lambda: conn.frames)
    assert conn.frames == [b"\x82\x02\xff\x00"]
    await gw.close()


@pytest.mark.parametrize(
    ("handler_kind", "message"),
    [("error", "Internal server error"), ("slow", "Endpoint request timed out")],
)
async def test_failing_message_integration_answers_like_api_gateway(
    handler_kind: str, message: str
) -> None:
    async def failing(event: dict[str, Any]) -> httpx.Response:
        if handler_kind == "slow":
            await asyncio.sleep(30)
        raise httpx.ConnectError("refused")

    gw = make_gateway(Backend(failing), Route("$default", URL, two_way=True), timeout=0.2)
    conn = FakeConnection()
    open_connection(gw, conn)
    gw.route_message(conn, b"x")
    await until(lambda: conn.sent)
    reply = json.loads(conn.sent[0])
    assert reply["message"] == message and reply["connectionId"] == conn.id
    assert len(reply["requestId"]) == 16
    await gw.close()


async def test_reading_pauses_when_too_many_messages_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gateway_module, "MAX_PENDING", 4)
    release = asyncio.Event()

    async def held(event: dict[str, Any]) -> httpx.Response:
        await release.wait()
        return httpx.Response(200)

    gw = make_gateway(Backend(held), Route("$default", URL))
    conn = FakeConnection()
    open_connection(gw, conn)
    for _ in range(4):
        gw.route_message(conn, b"x")
    assert conn.transport.paused
    release.set()
    await until(lambda: not conn.transport.paused)
    await gw.close()


async def test_disconnect_is_retried_with_backoff_then_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gateway_module, "DISCONNECT_BACKOFF", 0.01)
    calls = 0

    async def flaky(event: dict[str, Any]) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503 if calls < 3 else 200)

    backend = Backend(flaky)
    gw = make_gateway(backend, Route("$disconnect", URL))
    conn = FakeConnection()
    open_connection(gw, conn)
    gw.disconnected(conn, 1000, "bye")
    await gw.close()
    assert calls == 3
    ids = {e["requestContext"]["requestId"] for e in backend.events}
    assert len(ids) == 1  # the same event each time: a backend can deduplicate
    context = backend.events[-1]["requestContext"]
    assert context["disconnectStatusCode"] == 1000 and context["disconnectReason"] == "bye"


async def test_disconnect_gives_up_after_bounded_attempts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gateway_module, "DISCONNECT_BACKOFF", 0.01)

    async def down(event: dict[str, Any]) -> httpx.Response:
        raise httpx.ConnectError("down")

    backend = Backend(down)
    gw = make_gateway(backend, Route("$disconnect", URL))
    conn = FakeConnection()
    open_connection(gw, conn)
    gw.disconnected(conn, 1006, "")
    gw.disconnected(conn, 1006, "")  # a second call for the same connection is ignored
    await gw.close()
    assert len(backend.events) == gateway_module.DISCONNECT_ATTEMPTS
    assert any("event dropped" in r.getMessage() for r in caplog.records)
