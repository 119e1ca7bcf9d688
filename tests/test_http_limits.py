"""Request limits over raw sockets against real servers: oversized heads and
bodies, slow and half-sent requests, and bodies refused before they are read."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.server import ServerProcess
from tests.wsclient import open_ws

MiB = 1024 * 1024
GUARD = 15.0
"""Seconds a socket read may block before the test fails instead of hanging."""


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """1 MiB bodies, and two seconds for a head or a body."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("strict") / "data",
        "--max-body-bytes",
        str(MiB),
        "--header-timeout",
        "2",
        "--body-timeout",
        "2",
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """128 MiB bodies, 30 s for a head, and the full wait for 4 heads at a time."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("roomy") / "data",
        "--max-body-bytes",
        str(128 * MiB),
        "--header-timeout",
        "30",
        env={"TIDINGS_MAX_INCOMPLETE_REQUESTS": "4"},
    ).start()
    yield proc
    proc.stop()


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def code(self) -> str:
        code: str = orjson.loads(self.body)["error"]["code"]
        return code


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(GUARD)
    return sock


def read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"closed after {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, v in (x.split(":", 1) for x in lines[1:]))
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed in the body")
        body += chunk
    return Answer(int(lines[0].split()[1]), headers, body[:length])


def is_closed(sock: socket.socket) -> bool:
    """True once the server closes (EOF or reset); False if it sends more."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send while the test reads the answer; the server may stop reading first."""

    def send() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(data)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def publish_head(server: ServerProcess, length: int | None, *, token: bool = True) -> bytes:
    lines = ["POST /v1/notifications HTTP/1.1", "Host: test", "Content-Type: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {server.token('backend', admin=True)}")
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def peak_rss_kib(server: ServerProcess) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# -- heads ------------------------------------------------------------------


def test_a_16_mib_header_gets_431_and_the_connection_is_closed(strict: ServerProcess) -> None:
    sock = connect(strict)
    send_in_background(sock, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (16 * MiB))
    answer = read_answer(sock)
    assert answer.status == 431 and answer.code() == "headers_too_large"
    assert answer.headers["connection"] == "close"
    assert is_closed(sock)
    sock.close()


def test_twenty_thousand_headers_get_431(strict: ServerProcess) -> None:
    sock = connect(strict)
    fields = b"".join(b"X-N%d: 1\r\n" % i for i in range(20_000))
    send_in_background(sock, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n")
    answer = read_answer(sock)
    assert answer.status == 431 and b"more than 100 header fields" in answer.body
    assert is_closed(sock)
    sock.close()


def test_a_head_within_the_limits_is_served(strict: ServerProcess) -> None:
    """Just under the count and size limits: served as usual."""
    headers = {f"x-n{i}": "v" * 660 for i in range(94)}  # + 5 of httpx own
    response = httpx.get(strict.url + "/healthz", headers=headers)
    assert response.status_code == 200


def test_a_websocket_handshake_is_held_to_the_head_limits(strict: ServerProcess) -> None:
    sock = connect(strict)
    fields = b"".join(b"X-N%d: 1\r\n" % i for i in range(200))
    sock.sendall(
        b"GET /ws?userId=a HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + fields
        + b"\r\n"
    )
    assert read_answer(sock).status == 431
    sock.close()


async def test_a_websocket_handshake_still_opens(strict: ServerProcess) -> None:
    ws = await open_ws(strict.ws_url, token=strict.token("alice"))
    await ws.close()


# -- slow requests ----------------------------------------------------------


def test_an_incomplete_head_gets_408_after_the_header_timeout(strict: ServerProcess) -> None:
    for partial in (
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n",
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    ):
        sock = connect(strict)
        sock.sendall(partial)
        answer = read_answer(sock)
        assert answer.status == 408 and answer.code() == "request_timeout"
        assert is_closed(sock)
        sock.close()


def test_a_connection_that_sends_nothing_is_closed(strict: ServerProcess) -> None:
    sock = connect(strict)
    assert is_closed(sock)
    sock.close()


def test_an_incomplete_body_gets_408_after_the_body_timeout(strict: ServerProcess) -> None:
    sock = connect(strict)
    sock.sendall(publish_head(strict, 100) + b'{"userId": "bob",')
    answer = read_answer(sock)
    assert answer.status == 408 and b"body" in answer.body
    assert is_closed(sock)
    sock.close()
    assert "Traceback" not in strict.log()


def test_past_the_cap_half_sent_requests_are_closed_early_and_others_served(
    roomy: ServerProcess,
) -> None:
    """Four connections may take the 30 s header timeout; the next ones get a
    second, which a complete request needs far less of."""
    partial = b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
    within = [connect(roomy) for _ in range(4)]
    for sock in within:
        sock.sendall(partial)
    beyond = [connect(roomy) for _ in range(6)]
    for sock in beyond:
        sock.sendall(partial)
    assert httpx.get(roomy.url + "/healthz").status_code == 200
    for sock in beyond:
        assert read_answer(sock).status == 408
        assert is_closed(sock)
        sock.close()
    for sock in within:
        sock.sendall(b"\r\n")
        assert read_answer(sock).status == 200
        sock.close()


# -- bodies -----------------------------------------------------------------


def test_a_declared_body_over_the_limit_gets_413_before_it_is_sent(strict: ServerProcess) -> None:
    for token in (True, False):
        sock = connect(strict)
        sock.sendall(publish_head(strict, 64 * MiB, token=token))
        answer = read_answer(sock)
        assert answer.status == 413 and answer.code() == "payload_too_large"
        assert is_closed(sock)
        sock.close()


def test_a_body_over_the_limit_sent_anyway_is_dropped_and_answered(strict: ServerProcess) -> None:
    sock = connect(strict)
    send_in_background(sock, publish_head(strict, 8 * MiB) + b" " * (8 * MiB))
    assert read_answer(sock).status == 413
    assert is_closed(sock)
    sock.close()


def test_a_chunked_body_over_the_limit_gets_413(strict: ServerProcess) -> None:
    sock = connect(strict)
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
    send_in_background(sock, publish_head(strict, None) + chunk * 32 + b"0\r\n\r\n")
    answer = read_answer(sock)
    assert answer.status == 413 and answer.code() == "payload_too_large"
    assert is_closed(sock)
    sock.close()
    assert "Traceback" not in strict.log()


def test_a_body_within_the_limit_is_published(strict: ServerProcess) -> None:
    """A chunked publish and one just under the limit (the most ids, padded to it) are stored."""
    headers = {
        "Authorization": f"Bearer {strict.token('backend', admin=True)}",
        "Content-Type": "application/json",
    }
    ids = [f"user-{i:06d}-" + "x" * 88 for i in range(10_000)]
    body = orjson.dumps({"userIds": ids, "message": "m"})
    assert 0.9 * MiB < len(body) < MiB
    response = httpx.post(
        strict.url + "/v1/notifications", content=body, headers=headers, timeout=60
    )
    assert response.status_code == 201, response.text
    assert len(response.json()["recipients"]) == 10_000

    def chunks() -> Iterator[bytes]:
        yield b'{"userId": "bob",'
        yield b' "message": "chunked"}'

    response = httpx.post(strict.url + "/v1/notifications", content=chunks(), headers=headers)
    assert response.status_code == 201


def test_no_token_is_refused_before_the_body_is_read(roomy: ServerProcess) -> None:
    """A 64 MiB body under the limit: 401 before a byte of it is sent; sent
    anyway, it is read and dropped, not held, and the connection serves on."""
    before = peak_rss_kib(roomy)
    sock = connect(roomy)
    sock.sendall(publish_head(roomy, 64 * MiB, token=False))
    answer = read_answer(sock)
    assert answer.status == 401 and answer.code() == "unauthorized"
    sock.sendall(b" " * (64 * MiB))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_answer(sock).status == 200
    sock.close()
    assert peak_rss_kib(roomy) - before < 16 * 1024


def test_the_early_401_is_the_routes_own(roomy: ServerProcess) -> None:
    """Refused before the body or by the route (no body to read): the same answer."""
    bad = {"Authorization": "Bearer not-a-token"}
    for headers in ({}, bad):
        early = httpx.post(roomy.url + "/v1/notifications", json={"x": 1}, headers=headers)
        late = httpx.get(roomy.url + "/v1/users/me/counts", headers=headers)
        assert early.status_code == late.status_code == 401
        assert early.json() == late.json()


def test_blank_lines_between_requests_do_not_hold_the_connection(strict: ServerProcess) -> None:
    """Blank lines the parser skips still count as a request head that never completes."""
    sock = connect(strict)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_answer(sock).status == 200
    sock.sendall(b"\r\n")
    assert read_answer(sock).status == 408
    assert is_closed(sock)
    sock.close()
