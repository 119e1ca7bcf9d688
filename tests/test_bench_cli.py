"""``tidings bench`` against a real server: counts that must add up, and one-line refusals.

Each run is a subprocess with a token from ``tidings token``, a few
connections and about two seconds of sending. No timing is asserted: every
send the server acked is stored once in the user's inbox and delivered to
every connection of that user, the senders' included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import SECRET, ServerProcess, free_port
from tests.test_cli import tidings as run_tidings


def tidings(*args: str, secret: str = SECRET) -> subprocess.CompletedProcess[str]:
    return run_tidings(*args, env={"TIDINGS_SECRET": secret})


def user_token(user: str, *, secret: str = SECRET) -> str:
    made = tidings("token", user, "--data-dir", os.devnull, secret=secret)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerProcess]:
    # No history cap: the counts below check that every acked send is stored.
    proc = ServerProcess(tmp_path / "data", "--max-stored-per-user", "0").start()
    yield proc
    proc.stop()


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tidings: error: "), lines[0]
    return lines[0]


def stored(server: ServerProcess, token: str) -> int:
    answer = httpx.get(
        f"{server.url}/v1/users/me/counts", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    total: int = answer.json()["total"]
    return total


def run_bench(server: ServerProcess, token: str, out: Path, *extra: str) -> dict[str, Any]:
    done = tidings(
        "bench",
        "--url",
        server.ws_url,
        "--token",
        token,
        "--connections",
        "4",
        "--senders",
        "2",
        "--duration",
        "2",
        "--out",
        str(out),
        *extra,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.log()[-2000:]}"
    for label in ("connections", "sent", "acked", "delivered", "latency", "errors"):
        assert f"  {label} " in done.stdout, done.stdout
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def check_counts(result: dict[str, Any]) -> None:
    assert result["user"] == "bench-user"
    assert result["connections"] == 4 and result["senders"] == 2
    assert result["failed_connections"] == 0 and result["first_error"] is None
    assert result["copies"] == 6
    assert result["sent"] > 0
    assert result["acked"] == result["sent"]
    assert result["errors"] == 0 and result["first_send_error"] is None
    assert result["disconnected"] == 0
    assert result["delivered_after_drain"] == result["sent"] * 6
    assert result["expected_deliveries"] == result["sent"] * 6
    assert result["unanswered"] == 0
    assert result["latency"]["samples"] > 0
    for key in ("p50_ms", "p99_ms", "p999_ms"):
        assert result["latency"][key] >= 0


def test_bench_saturation_and_fixed_rate_add_up(served: ServerProcess, tmp_path: Path) -> None:
    token = user_token("bench-user")
    saturated = run_bench(served, token, tmp_path / "saturation.json")
    assert saturated["mode"] == "saturation"
    check_counts(saturated)
    at_rate = run_bench(served, token, tmp_path / "rate.json", "--rate", "100")
    assert at_rate["mode"] == "rate" and at_rate["target_rate"] == 100
    check_counts(at_rate)
    # Every acked send stored once, plus the one send each run makes before it starts.
    assert stored(served, token) == saturated["acked"] + at_rate["acked"] + 2


def test_a_token_the_server_refuses_is_one_line_with_the_status(served: ServerProcess) -> None:
    forged = user_token("bench-user", secret="another-secret-" + "y" * 32)
    done = tidings("bench", "--url", served.ws_url, "--token", forged, "--duration", "1")
    assert done.returncode == 1
    line = one_error_line(done)
    assert "refused the token: HTTP 401" in line, line
    assert forged not in done.stderr


def test_a_server_that_refuses_user_sends_is_one_line(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--user-send", "none").start()
    try:
        done = tidings(
            "bench", "--url", server.ws_url, "--token", user_token("u"), "--duration", "1"
        )
    finally:
        server.stop()
    assert done.returncode == 1
    assert "refused a send as 'u' (forbidden:" in one_error_line(done)


def test_bad_urls_and_unreachable_servers_are_one_line() -> None:
    token = user_token("u")
    http = tidings("bench", "--url", "http://127.0.0.1:8000/ws", "--token", token)
    assert http.returncode == 2
    assert "must start with ws:// or wss://, not http://" in one_error_line(http)
    query = tidings("bench", "--url", "ws://127.0.0.1:8000/ws?token=x", "--token", token)
    assert query.returncode == 2 and "no query" in one_error_line(query)
    nobody = tidings("bench", "--url", f"ws://127.0.0.1:{free_port()}/ws", "--token", token)
    assert nobody.returncode == 1
    assert "cannot reach 127.0.0.1:" in one_error_line(nobody)
    too_long = tidings(
        "bench", "--url", "ws://127.0.0.1:8000/ws", "--token", token, "--duration=1e9"
    )
    assert too_long.returncode == 2 and "--duration" in one_error_line(too_long)


def test_without_picows_it_says_which_extra_to_install() -> None:
    hide = (
        "import sys; sys.modules['picows'] = None; "
        "sys.argv = ['tidings', 'bench', '--url', 'ws://127.0.0.1:1/ws', '--token', 't']; "
        "from tidings.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert one_error_line(done) == (
        "tidings: error: tidings bench needs picows (the bench extra): pip install picows"
    )


def test_help_names_the_env_vars() -> None:
    text = " ".join(tidings("bench", "--help").stdout.split())
    for name in ("BENCH_URL", "TOKEN", "BENCH_CONNECTIONS", "BENCH_DURATION", "BENCH_RATE"):
        assert f"TIDINGS_{name}" in text
    assert "No admin token is needed" in text
