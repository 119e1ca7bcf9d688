"""A PostgreSQL server of a test's own, to stop and start under load.

The shared server on 5432 serves other tests at the same time and is never
stopped; this one lives in a temporary directory on a free port. initdb
refuses to run as root, so as root the cluster belongs to the ``postgres``
user and every server command runs as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import free_port
from tests.services import missing, require_driver

BIN = Path(os.environ.get("TIDINGS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _skip_or_fail(reason: str) -> None:
    missing("a private PostgreSQL", reason)


class PrivatePostgres:
    """initdb + pg_ctl in a temporary directory; ``url`` reaches database ``postgres``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tidings-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.owner: str | None = None
        if os.geteuid() == 0:
            self.owner = "postgres"
            try:
                pwd.getpwnam(self.owner)
            except KeyError:
                _skip_or_fail("running as root and there is no postgres user for initdb")
            shutil.chown(self.root, self.owner)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        argv = list(command)
        if self.owner is not None:
            argv = ["runuser", "-u", self.owner, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    def init(self) -> None:
        if not (BIN / "initdb").exists():
            _skip_or_fail(f"no initdb in {BIN}")
        self._run(
            str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip

    def start(self, command: str = "start", *extra: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.root} -c max_connections=100"
        )
        self._run(
            str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path),
            "-o", options, "-w", "-t", "60", *extra, command,
        )  # fmt: skip

    def restart(self, mode: str = "fast") -> None:
        """Stop (``fast``: sessions are told the server is shutting down) and start again."""
        self.start("restart", "-m", mode)

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    require_driver("asyncpg")
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()
