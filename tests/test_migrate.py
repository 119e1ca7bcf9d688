"""``tidings migrate``: it says what it did, ``--status`` changes nothing, and a
database migrated by a newer tidings is refused, by ``migrate`` and by ``serve``.

Run on SQLite and on a fresh PostgreSQL schema, through the real command.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.services import require_driver, require_postgres
from tests.test_cli import tidings
from tests.test_store_contract import admin_fetch
from tidings.store.sqlite import schema as sqlite_schema

LATEST = len(sqlite_schema.MIGRATIONS)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'data' / 'tidings.db'}"


@pytest.fixture
async def postgres_db() -> AsyncIterator[str]:
    require_driver("asyncpg")
    schema = f"tidings_migrate_{uuid.uuid4().hex[:12]}"
    yield f"{require_postgres()}?schema={schema}"
    await admin_fetch(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def migrate(db: str, *extra: str) -> tuple[int, str]:
    done = tidings("migrate", "--db", db, *extra)
    return done.returncode, (done.stdout + done.stderr).strip()


def check_fresh_then_current(db: str) -> None:
    code, out = migrate(db, "--status")
    assert code == 0, out
    assert f"schema version 0, {LATEST} migration(s) to version {LATEST}" in out
    code, out = migrate(db, "--status")  # --status created nothing
    assert code == 0 and "schema version 0," in out, out
    code, out = migrate(db)
    assert code == 0 and f"schema migrated from version 0 to {LATEST}" in out, out
    code, out = migrate(db)
    assert code == 0 and f"schema version {LATEST}, up to date; nothing applied" in out, out
    code, out = migrate(db, "--status")
    assert code == 0 and f"schema version {LATEST}, up to date" in out, out


def check_newer_is_refused(db: str, tmp_path: Path) -> None:
    for extra in ((), ("--status",)):
        code, out = migrate(db, *extra)
        assert code == 1, out
        assert f"newer than this tidings knows ({LATEST})" in out, out
    served = tidings("serve", "--port", "0", "--db", db, "--data-dir", str(tmp_path / "d"))
    assert served.returncode == 1, served.stdout + served.stderr
    last = served.stderr.strip().splitlines()[-1]
    assert last.startswith("tidings: error: ") and "newer than this tidings" in last, last


def test_sqlite_says_what_it_did(sqlite_db: str) -> None:
    check_fresh_then_current(sqlite_db)


def test_sqlite_from_an_older_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", sqlite_schema.MIGRATIONS[:3])
    assert sqlite_schema.migrate(conn).code == 3
    conn.close()
    code, out = migrate(f"sqlite:///{path}", "--status")
    assert code == 0 and f"schema version 3, {LATEST - 3} migration(s)" in out, out
    code, out = migrate(f"sqlite:///{path}")
    assert code == 0 and f"schema migrated from version 3 to {LATEST}" in out, out


def test_sqlite_newer_than_the_code_is_refused(sqlite_db: str, tmp_path: Path) -> None:
    assert migrate(sqlite_db)[0] == 0
    conn = sqlite3.connect(sqlite_db.removeprefix("sqlite:///"), isolation_level=None)
    conn.execute("UPDATE schema_version SET version = ?", (LATEST + 1,))
    conn.close()
    check_newer_is_refused(sqlite_db, tmp_path)


def test_postgres_says_what_it_did(postgres_db: str) -> None:
    check_fresh_then_current(postgres_db)


async def test_postgres_newer_than_the_code_is_refused(postgres_db: str, tmp_path: Path) -> None:
    assert migrate(postgres_db)[0] == 0
    schema = postgres_db.rsplit("schema=", 1)[1]
    await admin_fetch(f"UPDATE {schema}.schema_version SET version = {LATEST + 1}")
    check_newer_is_refused(postgres_db, tmp_path)
