"""Run real tidings server processes for tests, on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tidings.core.tokens import mint

SECRET = "test-secret-" + "x" * 32

UNLIMITED_RATES = {
    "TIDINGS_FRAME_RATE": "0",
    "TIDINGS_PUBLISH_RATE": "0",
    "TIDINGS_SERVICE_PUBLISH_RATE": "0",
    "TIDINGS_CONNECT_RATE_PER_IP": "0",
    "TIDINGS_CONNECT_RATE": "0",
}
"""Most tests send and connect from one address far faster than a client may
in production; the rate limits have tests of their own (``rate_limits=True``).
Flags given to the server still win over these."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``tidings serve`` in a child process; the handle knows its URLs and mints tokens."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        rate_limits: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.port = port or free_port()
        self.env = {**({} if rate_limits else UNLIMITED_RATES), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def token(self, user: str, *, admin: bool = False, ttl: int = 3600) -> str:
        return mint(SECRET, user, ttl_seconds=ttl, admin=admin)

    def start(self, timeout: float = 15.0) -> ServerProcess:
        env = {**os.environ, "TIDINGS_SECRET": SECRET, **self.env}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidings",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--drain-grace",
                "0.1",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.send_signal(signal.SIGINT)  # second signal: no drain grace
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
