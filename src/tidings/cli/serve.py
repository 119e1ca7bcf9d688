"""``tidings serve`` and ``tidings migrate``: the service and its schema."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import click

from tidings import logs
from tidings.aws.options import gateway_options, gateway_settings
from tidings.cli.common import data_dir_option, env, run, secret_option
from tidings.config import Settings
from tidings.core.publish import Limits
from tidings.logs import redact_url


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, **env("HOST"))
@click.option(
    "--port",
    default=8000,
    type=click.IntRange(0, 65535),
    show_default=True,
    help="0: any free port.",
    **env("PORT"),
)
@data_dir_option
@click.option(
    "--db",
    help="Store URL: sqlite:///path.db (default, in the data dir) or postgresql://...",
    **env("DB"),
)
@click.option(
    "--broker",
    default="memory://",
    show_default=True,
    help="memory:// (one node) or redis://host:6379/0",
    **env("BROKER"),
)
@secret_option
@click.option(
    "--allow-user-id",
    is_flag=True,
    help="INSECURE: accept the seed's ?userId= without a token.",
    **env("ALLOW_USER_ID"),
)
@click.option(
    "--dev-login",
    is_flag=True,
    help="INSECURE: the /inbox page signs in as any user id (POST /dev/login).",
    **env("DEV_LOGIN"),
)
@click.option(
    "--user-send",
    type=click.Choice(["any", "self", "none"]),
    default=None,
    help="Whom user tokens may send to over the WebSocket "
    "[default: self; any with --allow-user-id or --dev-login].",
    **env("USER_SEND"),
)
@click.option(
    "--durability",
    type=click.Choice(["full", "relaxed"]),
    default="full",
    show_default=True,
    help="full: fsync every commit; relaxed: survives a crash, not a power cut.",
    **env("DURABILITY"),
)
@click.option(
    "--max-frame-bytes",
    default=128 * 1024,
    type=click.IntRange(1024),
    show_default=True,
    help="Larger client frames close with 1009.",
    **env("MAX_FRAME_BYTES"),
)
@click.option(
    "--max-fragments",
    default=1024,
    type=click.IntRange(1),
    show_default=True,
    help="Frames one client message may be split into; past it the connection closes with 1009.",
    **env("MAX_FRAGMENTS"),
)
@click.option(
    "--max-message-chars",
    default=32_768,
    type=click.IntRange(1),
    show_default=True,
    **env("MAX_MESSAGE_CHARS"),
)
@click.option(
    "--ping-interval",
    default=20.0,
    type=click.FloatRange(0),
    show_default=True,
    help="Seconds of client silence before a ping (0: no heartbeat).",
    **env("PING_INTERVAL"),
)
@click.option(
    "--ping-timeout",
    default=20.0,
    type=click.FloatRange(0),
    show_default=True,
    help="Seconds a pinged client has to answer.",
    **env("PING_TIMEOUT"),
)
@click.option(
    "--drain-grace",
    default=5.0,
    type=click.FloatRange(0),
    show_default=True,
    help="Seconds from SIGTERM to closing sockets with 1012.",
    **env("DRAIN_GRACE"),
)
@click.option(
    "--send-buffer-limit",
    default=4 * 1024 * 1024,
    type=click.IntRange(1024),
    show_default=True,
    help="Bytes queued for a slow client before it is dropped.",
    **env("SEND_BUFFER_LIMIT"),
)
@click.option(
    "--max-connections-per-user",
    default=0,
    type=click.IntRange(0),
    show_default=True,
    help="0: unlimited; past it handshakes get 429.",
    **env("MAX_CONNECTIONS_PER_USER"),
)
@click.option(
    "--max-header-bytes",
    default=64 * 1024,
    type=click.IntRange(1024),
    show_default=True,
    help="A larger request head gets 431.",
    **env("MAX_HEADER_BYTES"),
)
@click.option(
    "--max-headers",
    default=100,
    type=click.IntRange(1),
    show_default=True,
    help="More header fields get 431.",
    **env("MAX_HEADERS"),
)
@click.option(
    "--max-body-bytes",
    default=12 * 1024 * 1024,
    type=click.IntRange(1024),
    show_default=True,
    help="A larger request body gets 413 (from Content-Length, before reading it).",
    **env("MAX_BODY_BYTES"),
)
@click.option(
    "--header-timeout",
    default=10.0,
    type=click.FloatRange(0.1),
    show_default=True,
    help="Seconds to send a request head (and a WebSocket handshake); then 408.",
    **env("HEADER_TIMEOUT"),
)
@click.option(
    "--body-timeout",
    default=30.0,
    type=click.FloatRange(0.1),
    show_default=True,
    help="Seconds to send a request body after its head; then 408.",
    **env("BODY_TIMEOUT"),
)
@click.option(
    "--max-incomplete-requests",
    default=1024,
    type=click.IntRange(1),
    show_default=True,
    help="Connections sending a head with the full --header-timeout; others get 1 s.",
    **env("MAX_INCOMPLETE_REQUESTS"),
)
@click.option(
    "--allowed-origins",
    default="",
    help="Comma-separated browser origins allowed for CORS and WebSocket handshakes "
    "(others get 403); empty: no CORS, WebSocket from any origin; '*': any.",
    **env("ALLOWED_ORIGINS"),
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    help="Comma-separated proxy addresses or networks whose X-Forwarded-For names the "
    "client (HTTP API and WebSocket sourceIp); '*': any.",
    **env("FORWARDED_ALLOW_IPS"),
)
@click.option(
    "--default-ttl",
    default=0.0,
    type=click.FloatRange(0),
    show_default=True,
    help="Seconds a notification is kept when published without expiresAt (0: forever).",
    **env("DEFAULT_TTL"),
)
@click.option(
    "--max-stored-per-user",
    default=10_000,
    type=click.IntRange(0),
    show_default=True,
    help="Each user's stream keeps its newest N notifications (older ones go as if "
    "expired); 0: no cap.",
    **env("MAX_STORED_PER_USER"),
)
@click.option(
    "--sweep-interval",
    default=1.0,
    type=click.FloatRange(0.05),
    show_default=True,
    help="Seconds between sweeps of expired notifications.",
    **env("SWEEP_INTERVAL"),
)
@click.option(
    "--node-ttl",
    default=10.0,
    type=click.FloatRange(0.3),
    show_default=True,
    help="With --broker redis://: seconds without a heartbeat before peers count a node dead.",
    **env("NODE_TTL"),
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    **env("LOG_LEVEL"),
)
@gateway_options
def serve(**options: Any) -> None:
    """Run the service (HTTP API and WebSocket endpoint /ws on one port)."""
    settings = Settings(
        host=options["host"],
        port=options["port"],
        data_dir=options["data_dir"],
        db=options["db"],
        broker=options["broker"],
        secret=options["secret"],
        allow_user_id=options["allow_user_id"],
        dev_login=options["dev_login"],
        user_send=options["user_send"],
        durable=options["durability"] == "full",
        max_frame_bytes=options["max_frame_bytes"],
        max_fragments=options["max_fragments"],
        limits=Limits(max_message_chars=options["max_message_chars"]),
        ping_interval=options["ping_interval"],
        ping_timeout=options["ping_timeout"],
        drain_grace=options["drain_grace"],
        send_buffer_limit=options["send_buffer_limit"],
        max_connections_per_user=options["max_connections_per_user"],
        max_header_bytes=options["max_header_bytes"],
        max_headers=options["max_headers"],
        max_body_bytes=options["max_body_bytes"],
        header_timeout=options["header_timeout"],
        body_timeout=options["body_timeout"],
        max_incomplete_requests=options["max_incomplete_requests"],
        allowed_origins=tuple(
            o.strip() for o in options["allowed_origins"].split(",") if o.strip()
        ),
        forwarded_allow_ips=tuple(
            ip.strip() for ip in options["forwarded_allow_ips"].split(",") if ip.strip()
        ),
        default_ttl=options["default_ttl"],
        sweep_interval=options["sweep_interval"],
        max_stored_per_user=options["max_stored_per_user"],
        node_ttl=options["node_ttl"],
        log_level=options["log_level"],
        gateway=gateway_settings(options),
    )
    settings.validate()
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
@click.option("--db", help="Store URL (default: the SQLite file in the data dir).", **env("DB"))
@click.option(
    "--status",
    is_flag=True,
    help="Say which schema version the database is at and what would be applied; change nothing.",
)
def migrate(data_dir: Path, db: str | None, status: bool) -> None:
    """Create or upgrade the store's schema, say from which version to which, then exit.

    Refuses a database migrated by a newer tidings (exit status 1).
    """
    from tidings.store import open_store
    from tidings.store.base import SchemaTooNew, SchemaVersions

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
        await store.open()
        await store.close()
        return store.migrated

    done = run(upgrade())
    assert done is not None
    if done.database == done.code:
        click.echo(f"{where}: schema version {done.code}, up to date; nothing applied")
    else:
        click.echo(f"{where}: schema migrated from version {done.database} to {done.code}")
