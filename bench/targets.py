"""The servers under test and how to start each one.

Every server gets a fresh process per workload, pinned to the server core,
on a free loopback port, with the benchmark's secret. A target names its
dialect (tidings' JSON frames or Socket.IO), how a broadcast reaches it, and
whether it stores what it delivers (only tidings does).
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tidings.loadtest.wire import SOCKETIO, TIDINGS

REPO = Path(__file__).resolve().parent.parent
FD_LIMIT = 65536


@dataclass(frozen=True, slots=True)
class Runtimes:
    """Interpreters and binaries the targets run on."""

    project_python: str
    """Has tidings installed (the project's venv)."""
    peer_python: str | None
    """Has the Python peers' packages (the bench venv; the project's in smoke mode)."""
    node: str | None


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    label: str
    dialect: str
    broadcast: str
    """``userIds``: an HTTP publish to every user (tidings); ``action``: an admin emit-to-all."""
    http_publish: bool
    stores: bool
    runtime: str
    """Which of ``Runtimes`` runs it: project, peer or node."""
    argv: Callable[[Runtimes, int, str, Path], list[str]]
    note: str
    broadcast_topic: str | None = None
    """tidings: also run the fan-out as a publish to this topic (reported as ``<name>-topic``)."""

    def available(self, runtimes: Runtimes) -> bool:
        if self.runtime == "node":
            return runtimes.node is not None
        if self.runtime == "peer":
            return runtimes.peer_python is not None
        return True

    def ws_url(self, port: int) -> str:
        return f"ws://127.0.0.1:{port}" + ("/ws" if self.dialect == TIDINGS else "")

    def http_url(self, port: int) -> str | None:
        return f"http://127.0.0.1:{port}" if self.http_publish else None


def _tidings(rt: Runtimes, port: int, secret: str, data: Path) -> list[str]:
    return [
        rt.project_python,
        "-m",
        "tidings",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--secret",
        secret,
        "--log-level",
        "warning",
        "--drain-grace",
        "0",
        "--user-send",
        "any",
        # The workloads send and connect from a few addresses as fast as the
        # server goes: every rate limit is checked (its cost is in the figures)
        # at a rate no workload reaches.
        *(part for flag in RATE_FLAGS for part in (flag, "1e9")),
    ]


def _peer(module: str) -> Callable[[Runtimes, int, str, Path], list[str]]:
    def argv(rt: Runtimes, port: int, secret: str, data: Path) -> list[str]:
        assert rt.peer_python is not None
        return [
            rt.peer_python,
            "-m",
            f"bench.peers.{module}",
            "--port",
            str(port),
            "--secret",
            secret,
        ]

    return argv


def _node(rt: Runtimes, port: int, secret: str, data: Path) -> list[str]:
    assert rt.node is not None
    script = REPO / "bench" / "peers" / "node-socketio" / "server.js"
    return [rt.node, str(script), "--port", str(port), "--secret", secret]


RATE_FLAGS = (
    "--frame-rate",
    "--publish-rate",
    "--service-publish-rate",
    "--connect-rate",
    "--connect-rate-per-ip",
)


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            "tidings",
            "tidings",
            TIDINGS,
            "userIds",
            True,
            True,
            "project",
            _tidings,
            "stores every notification (SQLite, fsync on commit)",
            broadcast_topic="everyone",
        ),
        Target(
            "python-socketio",
            "python-socketio 5 (uvicorn)",
            SOCKETIO,
            "action",
            True,
            False,
            "peer",
            _peer("socketio_server"),
            "rooms, stores nothing",
        ),
        Target(
            "node-socketio",
            "node socket.io 4",
            SOCKETIO,
            "action",
            True,
            False,
            "node",
            _node,
            "rooms, stores nothing",
        ),
        Target(
            "picows",
            "bare picows",
            TIDINGS,
            "action",
            False,
            False,
            "peer",
            _peer("picows_server"),
            "send loop, stores nothing",
        ),
        Target(
            "websockets",
            "bare websockets broadcast()",
            TIDINGS,
            "action",
            False,
            False,
            "peer",
            _peer("websockets_server"),
            "broadcast(), stores nothing",
        ),
    )
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cpu: int | None) -> Callable[[], None]:
    """A ``preexec_fn``: pin the child to ``cpu`` and let it open many sockets."""

    def setup() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, max(hard, FD_LIMIT)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return setup


class Server:
    """One target process; ``with`` starts it and stops it."""

    def __init__(
        self,
        target: Target,
        runtimes: Runtimes,
        *,
        secret: str,
        data: Path,
        log: Path,
        cpu: int | None,
    ) -> None:
        self.target = target
        self.port = free_port()
        self.argv = target.argv(runtimes, self.port, secret, data)
        self.log_path = log
        self.cpu = cpu
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Server:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                preexec_fn=pinned(self.cpu),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.target.name} exited with {self.proc.returncode}:\n" + self.log_tail()
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    time.sleep(0.3)
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.target.name} did not listen within {timeout} s:\n" + self.log_tail()
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
