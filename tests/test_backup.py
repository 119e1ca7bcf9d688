"""``tidings backup``: a copy of the SQLite store taken while a server keeps
publishing is whole (each stream's seqs gapless up to its head, the file
checked), stands alone (no WAL), and a server started on it serves what it
held. Bad input is refused in one line and overwrites nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.server import ServerProcess
from tests.test_cli import tidings

USERS = [f"u{n}" for n in range(20)]


async def publish_until(server: ServerProcess, stop: asyncio.Event, sent: list[int]) -> None:
    """Publish to every user, one notification after another, counting in ``sent``."""
    admin = {"Authorization": f"Bearer {server.token('backend', admin=True)}"}
    async with httpx.AsyncClient(base_url=server.url, headers=admin, timeout=10) as http:
        while not stop.is_set():
            response = await http.post(
                "/v1/notifications", json={"userIds": USERS, "message": f"n{sent[0]}"}
            )
            assert response.status_code == 201, response.text
            sent[0] += 1


async def more_than(sent: list[int], count: int) -> None:
    while sent[0] <= count:
        await asyncio.sleep(0.01)


async def backup_while_publishing(server: ServerProcess, target: Path) -> tuple[int, str]:
    stop, sent = asyncio.Event(), [0]
    publishing = asyncio.create_task(publish_until(server, stop, sent))
    await asyncio.wait_for(more_than(sent, 2), 30)
    done = await asyncio.to_thread(
        tidings, "backup", "--data-dir", str(server.data_dir), "--to", str(target)
    )
    await asyncio.wait_for(more_than(sent, sent[0] + 2), 30)  # publishing went on after it
    stop.set()
    await publishing
    assert done.returncode == 0, done.stderr
    return sent[0], done.stdout.strip()


async def test_a_backup_taken_while_publishing_is_whole_and_restores(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    target = tmp_path / "backups" / "tidings-1.db"
    target.parent.mkdir()
    try:
        sent, said = await backup_while_publishing(server, target)
    finally:
        server.stop()
    assert said.startswith(f"backed up sqlite:///{tmp_path / 'data' / 'tidings.db'} to {target}:")
    assert f"{len(USERS)} users" in said
    assert sorted(p.name for p in target.parent.iterdir()) == ["tidings-1.db"]  # no WAL, no partial

    copy = sqlite3.connect(target)
    try:
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        heads = dict(copy.execute("SELECT user_id, head FROM streams").fetchall())
        assert set(heads) == set(USERS)
        for user, head in heads.items():
            seqs = [
                s
                for (s,) in copy.execute("SELECT seq FROM notifications WHERE user_id = ?", (user,))
            ]
            assert sorted(seqs) == list(range(1, head + 1)), user  # one snapshot: no gap, no extra
        copied = set(heads.values())
    finally:
        copy.close()
    assert len(copied) == 1 and 0 < copied.pop() < sent  # taken mid-stream

    # Restore: the copy becomes a data dir's tidings.db (the secret is TIDINGS_SECRET).
    restored = tmp_path / "restored"
    restored.mkdir()
    target.rename(restored / "tidings.db")
    again = ServerProcess(restored).start()
    try:
        admin = {"Authorization": f"Bearer {again.token('backend', admin=True)}"}
        history = httpx.get(f"{again.url}/v1/users/u7/history", headers=admin, timeout=10).json()
        assert history["head"] == heads["u7"]
        assert [item["message"] for item in history["items"]][:2] == ["n0", "n1"]
    finally:
        again.stop()


def refused(*args: str) -> str:
    done = tidings("backup", *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    done = tidings("migrate", "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    return tmp_path / "data"


def test_a_stopped_store_is_left_as_it_was(store: Path, tmp_path: Path) -> None:
    """No -wal or -shm file is left beside it (they would belong to whoever ran
    the backup, and a server running as another user could not open the store)."""
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    done = tidings("backup", "--data-dir", str(store), "--to", str(tmp_path / "copy.db"))
    assert done.returncode == 0, done.stderr
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before
    assert sorted(before) == ["tidings.db"]


def test_an_existing_file_is_never_overwritten(store: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.db"
    kept.write_bytes(b"an older backup")
    line = refused("--data-dir", str(store), "--to", str(kept))
    assert line == f"tidings: error: {str(kept)!r} exists: back up to a new file"
    assert kept.read_bytes() == b"an older backup"


def test_what_is_not_a_tidings_store_is_refused(store: Path, tmp_path: Path) -> None:
    to = str(tmp_path / "b.db")
    assert refused("--data-dir", str(tmp_path / "none"), "--to", to) == (
        f"tidings: error: no SQLite store at {str(tmp_path / 'none' / 'tidings.db')!r}"
    )
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    assert "file is not a database" in refused("--db", f"sqlite:///{junk}", "--to", to)
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    assert refused("--db", f"sqlite:///{tmp_path / 'other.db'}", "--to", to).endswith(
        "is not a tidings store (no schema)"
    )
    assert "pg_dump" in refused("--db", "postgresql://tidings@db.internal/tidings", "--to", to)
    assert "is not a directory" in refused("--data-dir", str(store), "--to", f"{tmp_path}/x/b.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "junk.db", "other.db"]
