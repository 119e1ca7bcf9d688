"""``tidings listen`` and ``tidings send`` against real server processes."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.server import SECRET, ServerProcess


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    return {**clean, "TIDINGS_SECRET": SECRET, **extra}


def tidings(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env(**extra),
    )


class Listener:
    """``tidings listen`` in a child process, its output lines read as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tidings", "listen", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put)).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors.append)).start()

    @staticmethod
    def _pump(stream: IO[str], sink: object) -> None:
        for line in stream:
            sink(line.rstrip("\n"))  # type: ignore[operator]

    def take(self, n: int, timeout: float = 10) -> list[dict[str, object]]:
        return [json.loads(self.lines.get(timeout=timeout)) for _ in range(n)]

    def assert_quiet(self, seconds: float = 0.5) -> None:
        with pytest.raises(queue.Empty):
            self.lines.get(timeout=seconds)

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


def caught_up(home: Path, timeout: float = 10) -> Path:
    """The listener's state file, written once it has caught up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((home / "listen").glob("bob@*.json"))
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("the listener did not catch up")


def send(server: ServerProcess, user: str, message: str, *extra: str) -> dict[str, object]:
    out = tidings("send", "--to", user, message, "--url", server.url, *extra)
    assert out.returncode == 0, out.stderr
    answer: dict[str, object] = json.loads(out.stdout)
    return answer


def test_listen_prints_json_lines_and_resumes_across_restarts(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        listen_and_resume(server, tmp_path)
    finally:
        server.stop()


def listen_and_resume(server: ServerProcess, tmp_path: Path) -> None:
    home = tmp_path / "cli"
    listener = Listener("--user", "bob", "--url", server.url, "--data-dir", str(home))
    try:
        caught_up(home)
        send(server, "alice", "not for bob")
        listener.assert_quiet()  # prints only bob's
        send(server, "bob", "one", "--data", '{"order": 42}')
        send(server, "bob", "two")
        first = listener.take(2)
        assert [(n["seq"], n["message"]) for n in first] == [(1, "one"), (2, "two")]
        assert first[0]["data"] == {"order": 42} and first[0]["sender"] == "cli"

        # The server goes away; another node on its data directory stores two more.
        server.stop()
        other = ServerProcess(tmp_path / "data").start()
        try:
            send(other, "bob", "three")
            send(other, "bob", "four")
        finally:
            other.stop()
        server.start()
        resumed = listener.take(2, timeout=20)
        assert [(n["seq"], n["message"]) for n in resumed] == [(3, "three"), (4, "four")]
        listener.assert_quiet()
        assert listener.interrupt() == 130
        assert any("reconnecting" in line for line in listener.errors), listener.errors
    finally:
        listener.kill()

    # The next run starts where this one stopped.
    assert json.loads(caught_up(home).read_text())["seq"] == 4
    send(server, "bob", "five")
    again = Listener("--user", "bob", "--url", server.url, "--data-dir", str(home))
    try:
        assert [n["message"] for n in again.take(1)] == ["five"]
        again.assert_quiet()
    finally:
        again.kill()


def test_send_prints_the_answer_and_is_idempotent(server: ServerProcess) -> None:
    first = send(server, "bob", "hi", "--to", "carol", "--idempotency-key", "k-1")
    again = send(server, "bob", "hi", "--to", "carol", "--idempotency-key", "k-1")
    assert first["recipients"] == [{"userId": "bob", "seq": 1}, {"userId": "carol", "seq": 1}]
    assert again["duplicate"] is True and again["notificationId"] == first["notificationId"]


@pytest.mark.parametrize("command", ["send", "listen"])
def test_errors_are_one_line_and_exit_non_zero(server: ServerProcess, command: str) -> None:
    args = ["send", "--to", "bob", "hi"] if command == "send" else ["listen", "--user", "bob"]
    down = ServerProcess(server.data_dir)  # never started: nothing listens there
    out = tidings(*args, "--url", down.url)
    assert out.returncode == 1
    assert (
        out.stderr
        == f"tidings: error: cannot reach the server at {down.url} (connection refused)\n"
    )

    out = tidings(*args, "--url", server.url, "--token", "not-a-token")
    assert out.returncode == 1
    assert out.stderr.startswith("tidings: error: the server refused the token (")
    assert len(out.stderr.splitlines()) == 1

    out = tidings(*args, "--url", server.url, TIDINGS_SECRET="another-secret-" + "y" * 32)
    assert out.returncode == 1 and "refused the token" in out.stderr


def test_send_rejects_data_that_is_not_an_object(server: ServerProcess) -> None:
    out = tidings("send", "--to", "bob", "hi", "--url", server.url, "--data", "[1, 2]")
    assert out.returncode == 2 and "--data" in out.stderr and "JSON object" in out.stderr


def test_send_to_a_topic_with_tags(server: ServerProcess) -> None:
    out = tidings("send", "--topic", "everyone", "all hands", "--tag", "ops", "--url", server.url)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["topic"] == "everyone" and answer["seq"] == 1
    tagged = send(server, "bob", "expiring", "--tag", "a", "--expires-at", "2999-01-01T00:00:00Z")
    assert [r["userId"] for r in tagged["recipients"]] == ["bob"]  # type: ignore[union-attr]
    for args in ([], ["--to", "bob", "--topic", "news"]):
        out = tidings("send", "hi", *args, "--url", server.url)
        assert out.returncode == 2 and "--to" in out.stderr and "--topic" in out.stderr
