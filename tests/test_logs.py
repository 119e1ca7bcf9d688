from __future__ import annotations

import contextlib
import logging
import time

import orjson
import pytest

from tests.server import ServerProcess
from tidings.logs import JsonFormatter, redact


def test_redact_tokens_in_queries_and_bearer_headers() -> None:
    assert redact("GET /ws?token=abc.def.ghi&since=3") == "GET /ws?token=[redacted]&since=3"
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer [redacted]"
    assert redact("/x?access_token=zz") == "/x?access_token=[redacted]"
    offered = "Sec-WebSocket-Protocol: tidings.v1, bearer.abc.def-ghi"
    assert redact(offered) == "Sec-WebSocket-Protocol: tidings.v1, bearer.[redacted]"


def test_json_lines_carry_context_fields() -> None:
    record = logging.makeLogRecord(
        {
            "msg": "connected %s",
            "args": ("?token=sekrit",),
            "levelname": "INFO",
            "name": "tidings.ws",
            "conn": "c1",
            "user": "bob",
        }
    )
    line = orjson.loads(JsonFormatter().format(record))
    assert line["event"] == "connected ?token=[redacted]"
    assert line["conn"] == "c1" and line["user"] == "bob" and line["level"] == "info"


async def test_no_token_reaches_the_server_log(server: ServerProcess) -> None:
    import httpx

    from tests.wsclient import open_ws

    token = server.token("alice")
    ws = await open_ws(server.ws_url, token=token)
    await ws.close()
    httpx.get(f"{server.url}/healthz?token={token}")
    bad = token[:-4] + "AAAA"
    with contextlib.suppress(Exception):
        await open_ws(server.ws_url, token=bad)
    server.stop()
    text = server.log()
    assert '"user":"alice"' in text
    assert token not in text and bad not in text
    assert token.split(".")[2] not in text


def test_a_long_garbage_collection_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from tidings import app as server

    with caplog.at_level(logging.WARNING, logger="tidings.server"):
        server._log_long_pause("start", {"generation": 2})
        server._log_long_pause("stop", {"generation": 2, "collected": 3})
        assert not caplog.records  # microseconds: nothing to say
        server._log_long_pause("start", {"generation": 2})
        time.sleep(server.GC_PAUSE_LOGGED + 0.01)
        server._log_long_pause("stop", {"generation": 2, "collected": 3})
    [record] = caplog.records
    assert record.getMessage() == "long garbage collection"
    assert record.generation == 2 and record.ms >= server.GC_PAUSE_LOGGED * 1000  # type: ignore[attr-defined]
