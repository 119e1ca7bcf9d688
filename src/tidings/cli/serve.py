"""``tidings serve`` and ``tidings migrate``: the service and its schema."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path
from typing import Any

import click

from tidings import logs
from tidings.aws.options import gateway_settings
from tidings.cli.common import data_dir_option, db_option, run, store_wait_option
from tidings.cli.config_file import config_option
from tidings.cli.schema import SERVE, serve_options
from tidings.config import Settings
from tidings.core.publish import Limits
from tidings.logs import redact_url


def settings_from(options: dict[str, Any]) -> Settings:
    """The settings the parsed options say, checked together (``ConfigError``)."""
    settings = Settings(
        **{name: options[name] for name in SAME_NAME},
        durable=options["durability"] == "full",
        metrics=options["metrics"] == "on",
        limits=Limits(max_message_chars=options["max_message_chars"]),
        allowed_origins=_listed(options["allowed_origins"]),
        forwarded_allow_ips=_listed(options["forwarded_allow_ips"]),
        gateway=gateway_settings(options),
    )
    settings.validate()
    return settings


def _listed(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


SERVE_NAMES = {setting.name for setting in SERVE}

CONVERTED = ("allowed_origins", "forwarded_allow_ips", "metrics")
"""Settings fields whose option is converted: comma-separated strings, on/off."""

SAME_NAME = tuple(
    f.name
    for f in dataclasses.fields(Settings)
    if f.name in SERVE_NAMES and f.name not in CONVERTED
)
"""Options that are the ``Settings`` field of the same name, as they are."""


@click.command()
@config_option
@serve_options
def serve(**options: Any) -> None:
    """Run the service (HTTP API and WebSocket endpoint /ws on one port)."""
    settings = settings_from(options)
    from tidings.app import bind
    from tidings.app import serve as run_server

    logs.setup(settings.log_level)
    if settings.db is None:
        from tidings.config import ensure_data_dir

        ensure_data_dir(settings.data_dir)
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {settings.port} on {settings.host} is in use (choose another with --port)"
            ) from None
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
    run(run_server(settings, sock))


@click.command()
@data_dir_option
@db_option
@store_wait_option
@click.option(
    "--status",
    is_flag=True,
    help="Say which schema version the database is at and what would be applied; change nothing.",
)
def migrate(data_dir: Path, db: str | None, store_wait: float, status: bool) -> None:
    """Create or upgrade the store's schema, say from which version to which, then exit.

    Waits for a store server that does not answer yet, as serve does (a
    migration job started beside its database); refuses a database migrated
    by a newer tidings (exit status 1).
    """
    from tidings.store import open_store
    from tidings.store.base import SchemaTooNew, SchemaVersions
    from tidings.store.waiting import open_store_waiting

    settings = Settings(data_dir=data_dir, db=db)
    store = open_store(settings.store_url)
    where = redact_url(settings.store_url)
    if status:
        found: SchemaVersions = run(store.schema_versions())
        click.echo(f"{where}: {found.describe()}")
        if found.database > found.code:
            raise SchemaTooNew(found.database, found.code)
        return

    async def upgrade() -> SchemaVersions | None:
        await open_store_waiting(store, wait=store_wait)
        await store.close()
        return store.migrated

    done = run(upgrade())
    assert done is not None
    if done.database == done.code:
        click.echo(f"{where}: schema version {done.code}, up to date; nothing applied")
    else:
        click.echo(f"{where}: schema migrated from version {done.database} to {done.code}")
