"""What the doc snippets run against: one tidings server per doc file, the values
a reader is assumed to have (tokens, secrets, a connection id), and test values
for the placeholders the docs show (``...``, ``***``, ``db.internal``).

``PLACEHOLDERS`` maps the exact text a doc shows to what a test runs instead;
``GIVEN`` holds the names snippets use without defining them. A snippet that
needs something else fails until one of them says what to use.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.server import SECRET, ServerProcess
from tests.services import (
    REDIS_URL,
    missing,
    require_driver,
    require_postgres,
    require_redis,
    with_query,
)

MANAGEMENT_SECRET = "management-secret-" + "m" * 32
"""The AWS access key's secret: the doc server's, and ``management-secret``'s content."""
SERVER_ARGS = (
    # What the docs' examples say they need: ?userId= for the seed's client (and with it
    # user tokens sending to others: alice writes to bob), the seed's stage and key pair.
    *("--allow-user-id", "--stage", "production"),
    *("--aws-access-key-id", "AKIDTIDINGS0001", "--aws-secret-access-key", MANAGEMENT_SECRET),
)
FILES = {"management-secret": MANAGEMENT_SECRET}
"""Files a snippet reads from its directory without the doc showing them."""

PLACEHOLDERS: dict[str, Callable[[Scene], str]] = {
    # the reader's deployment -> this doc's server
    "127.0.0.1:8000": lambda s: f"127.0.0.1:{s.server.port}",
    "https://notify.example.com": lambda s: s.server.url,
    "wss://notify.example.com": lambda s: f"ws://127.0.0.1:{s.server.port}",
    "TIDINGS_SECRET=...": lambda s: f"TIDINGS_SECRET={SECRET}",
    # the shared PostgreSQL and Redis, in a schema and a key prefix of their own
    "postgresql://tidings:***@db.internal:5432/tidings?": lambda s: s.postgres + "&",
    "postgresql://tidings:***@db.internal:5432/tidings": lambda s: s.postgres,
    "redis://redis.internal:6379/0?prefix=tidings": lambda s: s.redis,
    # a load test's size, shrunk to a test's
    "--connections 1000": lambda s: "--connections 4",
    "--connections 2000": lambda s: "--connections 4",
    "--duration 30": lambda s: "--duration 1",
    "--rate 500": lambda s: "--rate 500 --connections 4 --duration 1",
    # certificates
    "/etc/nginx/tls/notify.example.com.fullchain.pem": lambda s: s.certificate[0],
    "/etc/nginx/tls/notify.example.com.key": lambda s: s.certificate[1],
    "/etc/haproxy/notify.pem": lambda s: s.certificate[2],
}

GIVEN: dict[str, Callable[[Scene], str]] = {
    "TOKEN": lambda s: s.server.token("loadtest"),
    "ADMIN_TOKEN": lambda s: s.server.token("my-backend", admin=True),
    "ALICE_TOKEN": lambda s: s.server.token("alice"),
    "BOB_TOKEN": lambda s: s.server.token("bob"),
    "SECRET": lambda s: MANAGEMENT_SECRET,
    "secret": lambda s: MANAGEMENT_SECRET,
    "connection_id": lambda s: s.connection_id,
}
PYTHON_GIVEN = (
    "import logging\nlog = logging.getLogger('docs')\ndef get_token():\n    return ALICE_TOKEN\n"
)
"""Python names that are code: a token factory (alice's) and a logger."""


def uses(text: str, name: str) -> bool:
    return (
        re.search(rf"(?<![\w$]){re.escape(name)}(?!\w)|\$\{{?{re.escape(name)}\b", text) is not None
    )


class Scene:
    """One doc file's surroundings: its working directory, its server, its private
    schema and key prefix. ``close()`` removes what was made."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cwd = tmp / "cwd"
        self.cwd.mkdir(parents=True)
        (self.cwd / ".venv").symlink_to(sys.prefix)  # the docs say .venv/bin/tidings
        for name, content in FILES.items():
            (self.cwd / name).write_text(content + "\n")
        self.cleanups: list[Callable[[], None]] = []
        self.stack = contextlib.ExitStack()
        self.haproxy: dict[str, str] = {}
        """The sections of the doc's last whole HAProxy configuration."""

    @functools.cached_property
    def server(self) -> ServerProcess:
        proc = ServerProcess(self.tmp / "server", *SERVER_ARGS).start()
        self.cleanups.append(proc.stop)
        return proc

    @functools.cached_property
    def postgres(self) -> str:
        require_driver("asyncpg")
        schema = f"tidings_docs_{uuid.uuid4().hex[:12]}"
        url = with_query(require_postgres(), f"schema={schema}")
        self.cleanups.append(functools.partial(drop_schema, schema))
        return url

    @functools.cached_property
    def redis(self) -> str:
        require_driver("redis")
        prefix = f"tidings-docs-{uuid.uuid4().hex[:12]}"
        self.cleanups.append(functools.partial(delete_keys, prefix))
        return with_query(require_redis(), f"prefix={prefix}")

    @functools.cached_property
    def certificate(self) -> tuple[str, str, str]:
        """A self-signed certificate, its key, and both in one PEM (HAProxy's form)."""
        cert, key, both = (self.tmp / name for name in ("cert.pem", "key.pem", "both.pem"))
        done = subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-subj", "/CN=notify.example.com", "-keyout", str(key), "-out", str(cert)),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        both.write_text(cert.read_text() + key.read_text())
        return str(cert), str(key), str(both)

    @functools.cached_property
    def socket(self) -> ClientConnection:
        """A live WebSocket whose id snippets get as ``connection_id``."""
        socket = self.stack.enter_context(connect(f"{self.server.ws_url}?userId=doc-connection"))
        self.cleanups.append(self.stack.close)
        return socket

    @property
    def connection_id(self) -> str:
        self.socket  # noqa: B018 - opens it
        ids: list[str] = self.presence("doc-connection")["connectionIds"]
        assert len(ids) == 1, ids
        return ids[0]

    def presence(self, user: str) -> dict[str, object]:
        answer = self.http().get(f"/v1/users/{user}/presence")
        answer.raise_for_status()
        result: dict[str, object] = answer.json()
        return result

    def http(self) -> httpx.Client:
        admin = self.server.token("doc-test", admin=True)
        return httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {admin}"}, timeout=10
        )

    def publish(self, user: str, message: str) -> None:
        with self.http() as http:
            http.post(
                "/v1/notifications", json={"userId": user, "message": message}
            ).raise_for_status()

    def fill(self, text: str) -> str:
        """``text`` with each placeholder it shows replaced (longest first)."""
        for key in sorted(PLACEHOLDERS, key=len, reverse=True):
            if key in text:
                text = text.replace(key, PLACEHOLDERS[key](self))
        return text

    def given(self, text: str) -> dict[str, str]:
        """The given names that ``text`` uses, with their values."""
        return {name: value(self) for name, value in GIVEN.items() if uses(text, name)}

    def env(self, text: str) -> dict[str, str]:
        """A shell's environment: no TIDINGS_* of the test's own; this scene's venv
        first on PATH, its server as the default URL, the given variables."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        return {
            **clean,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "TIDINGS_URL": self.server.url,
            "TIDINGS_SECRET": SECRET,
            "TIDINGS_DATA_DIR": str(self.cwd / "data"),
            **self.given(text),
        }

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            cleanup()


def drop_schema(schema: str) -> None:
    from tests.test_store_contract import admin_fetch

    asyncio.run(admin_fetch(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


def delete_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def require_program(name: str) -> None:
    import shutil

    if shutil.which(name) is None:
        missing(name, "`make test-deps` installs it")
