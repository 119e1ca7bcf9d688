"""Fixtures that move a whole test module onto a PostgreSQL-backed server.

A module imports ``on_postgres`` and ``server`` from here: every server a test
starts, through the ``server`` fixture or by itself, then finds ``TIDINGS_DB``
naming a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.server import ServerProcess
from tests.services import require_driver, require_postgres
from tests.test_store_contract import admin_fetch


@pytest.fixture(autouse=True)
async def on_postgres(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    require_driver("asyncpg")
    schema = f"tidings_suite_{uuid.uuid4().hex[:12]}"
    url = f"{require_postgres()}?schema={schema}"
    monkeypatch.setenv("TIDINGS_DB", url)
    yield url
    await admin_fetch(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def server(on_postgres: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server on PostgreSQL (the in-process broker), as ``conftest.server``."""
    proc = ServerProcess(tmp_path / "data", "--allow-user-id", "--drain-grace", "0.2").start()
    yield proc
    proc.stop()
