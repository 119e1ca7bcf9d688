"""A consistent copy of a SQLite store taken while its server keeps writing.

Copying the database file with ``cp`` while a node serves can catch a commit
half in the file and half in the WAL: the copy may not open. SQLite's online
backup API copies the pages of one read snapshot instead; in WAL mode that
reader blocks no writer, so publishes and acks go on during the copy. The
copy goes to a temporary file beside the target, is checked
(``PRAGMA quick_check``), fsynced and only then renamed into place, so a
failed or interrupted backup never leaves a file that looks like one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tidings.core.errors import ConfigError, Unavailable
from tidings.store.sqlite.schema import version as schema_version


@dataclass(frozen=True, slots=True)
class Backup:
    target: Path
    bytes: int
    schema_version: int
    users: int
    """Users with a stream in the copy (a sanity figure for the operator)."""


def backup(source: Path, target: Path) -> Backup:
    """Copy the store at ``source`` to the new file ``target``, consistently.

    Refuses a missing source and an existing target (nothing is overwritten);
    raises ``Unavailable`` when SQLite cannot read the source or write the copy.
    """
    if not source.is_file():
        raise ConfigError(f"no SQLite store at {str(source)!r}")
    if target.exists() or target.is_symlink():
        raise ConfigError(f"{str(target)!r} exists: back up to a new file")
    if not target.parent.is_dir():
        raise ConfigError(f"{str(target.parent)!r} is not a directory")
    partial = target.with_name(f".{target.name}.partial")
    try:
        found = _copy(source, partial)
        os.replace(partial, target)
        _fsync_dir(target.parent)
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise Unavailable(f"backup of {str(source)!r} to {str(target)!r} failed: {exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return Backup(target, target.stat().st_size, *found)


def _copy(source: Path, partial: Path) -> tuple[int, int]:
    """One-step backup into ``partial``, checked; (schema version, users)."""
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    # Not ``mode=ro``: on a store in WAL mode whose server is stopped, a read-only
    # connection creates the -wal and -shm files and cannot remove them, and
    # they would stay owned by whoever ran the backup. This one reads only and,
    # as the last connection, removes them when it closes.
    src = sqlite3.connect(source)
    try:
        src.execute("PRAGMA busy_timeout = 5000")
        src.execute("PRAGMA query_only = ON")
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # every page in one step: one snapshot, writers not blocked
            # The copy stands alone: no WAL beside it, readable by any SQLite.
            dst.execute("PRAGMA journal_mode = DELETE")
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"the copy fails its check: {check}")
            version = schema_version(dst)
            if version == 0:
                raise ConfigError(f"{str(source)!r} is not a tidings store (no schema)")
            users = dst.execute("SELECT count(*) FROM streams").fetchone()[0]
        finally:
            dst.close()
    finally:
        src.close()
    with open(partial, "rb") as copy:
        os.fsync(copy.fileno())
    return version, users


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
