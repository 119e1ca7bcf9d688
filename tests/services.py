"""Real backing services for tests: PostgreSQL and Redis on 127.0.0.1.

In CI (``CI`` set) a missing service FAILS the tests that need it; locally
they skip with a message naming the service.
"""

from __future__ import annotations

import importlib
import os
import socket
from typing import Any, NoReturn

import pytest

POSTGRES_URL = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def missing(what: str, why: str) -> NoReturn:
    """``what`` a test needs is not here: in CI (``CI`` set), where every test
    must run, that fails the test; elsewhere it skips, saying why."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI: {why}", pytrace=False)
    pytest.skip(f"requires {what}: {why}")


def require(service: str, host: str, port: int) -> None:
    """Fail (CI) or skip (locally) unless ``service`` listens on host:port."""
    if not reachable(host, port):
        missing(service, f"not reachable on {host}:{port} (.ci/run starts it)")


def require_postgres() -> str:
    require("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


def require_redis() -> str:
    require("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def require_driver(module: str) -> Any:
    """The backend's driver module; in CI its absence fails, locally it skips."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing(f"the {module!r} driver", str(exc))


def with_query(url: str, query: str) -> str:
    """``url`` with one more query parameter."""
    return f"{url}{'&' if '?' in url else '?'}{query}"
