"""``tidings backup --to FILE``: a consistent copy of the SQLite store, taken
while the server runs (PostgreSQL has ``pg_dump`` for that)."""

from __future__ import annotations

from pathlib import Path

import click

from tidings.cli.common import data_dir_option, db_option
from tidings.config import Settings
from tidings.core.errors import ConfigError
from tidings.logs import redact_url


@click.command()
@data_dir_option
@db_option
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The new file to write (an existing one is refused).",
)
def backup(data_dir: Path, db: str | None, target: Path) -> None:
    """Copy the SQLite store to FILE while the server keeps serving.

    The copy is one consistent snapshot, checked and fsynced before it gets its
    name; writers are not blocked meanwhile.
    """
    from tidings.store.sqlite.backup import backup as copy
    from tidings.store.sqlite.store import SQLiteStore

    url = Settings(data_dir=data_dir, db=db).store_url
    if not url.lower().startswith("sqlite:"):
        raise ConfigError(
            f"tidings backup copies SQLite stores; for {redact_url(url)} use pg_dump "
            "(see docs/deploy.md, Backups)"
        )
    done = copy(SQLiteStore.from_url(url).path, target)
    click.echo(
        f"backed up {url} to {done.target}: {done.users} users, "
        f"schema version {done.schema_version}, {done.bytes} bytes"
    )
