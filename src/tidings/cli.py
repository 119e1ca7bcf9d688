"""The ``tidings`` command: parses arguments and hands off. Errors are one line."""

from __future__ import annotations

import asyncio
import errno
import functools
import sys
from pathlib import Path
from typing import Any

import click

from tidings import __version__, logs
from tidings.aws.options import gateway_options, gateway_settings
from tidings.config import Settings, default_data_dir, load_or_create_secret
from tidings.core.errors import TidingsError
from tidings.core.publish import Limits
from tidings.core.tokens import mint
from tidings.logs import redact_url


def _env(name: str) -> dict[str, Any]:
    return {"envvar": f"TIDINGS_{name}", "show_envvar": True}


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_data_dir,
    show_default="$XDG_DATA_HOME/tidings",
    help="Holds the SQLite file and the generated secret.",
    **_env("DATA_DIR"),
)
secret_option = click.option(
    "--secret",
    help="HS256 signing secret (32+ chars); default: generated once in the data dir.",
    **_env("SECRET"),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tidings")
def cli() -> None:
    """tidings: self-hosted real-time notifications."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, **_env("HOST"))
@click.option(
    "--port",
    default=8000,
    type=click.IntRange(0, 65535),
    show_default=True,
    help="0: any free port.",
    **_env("PORT"),
)
@data_dir_option
@click.option(
    "--db",
    help="Store URL: sqlite:///path.db (default, in the data dir) or postgresql://...",
    **_env("DB"),
)
@click.option(
    "--broker",
    default="memory://",
    show_default=True,
    help="memory:// (one node) or redis://host:6379/0",
    **_env("BROKER"),
)
@secret_option
@click.option(
    "--allow-user-id",
    is_flag=True,
    help="INSECURE: accept the seed's ?userId= without a token.",
    **_env("ALLOW_USER_ID"),
)
@click.option(
    "--dev-login",
    is_flag=True,
    help="INSECURE: the /inbox page signs in as any user id (POST /dev/login).",
    **_env("DEV_LOGIN"),
)
@click.option(
    "--user-send",
    type=click.Choice(["any", "self", "none"]),
    default=None,
    help="Whom user tokens may send to over the WebSocket "
    "[default: self; any with --allow-user-id or --dev-login].",
    **_env("USER_SEND"),
)
@click.option(
    "--durability",
    type=click.Choice(["full", "relaxed"]),
    default="full",
    show_default=True,
    help="full: fsync every commit; relaxed: survives a crash, not a power cut.",
    **_env("DURABILITY"),
)
@click.option(
    "--max-frame-bytes",
    default=128 * 1024,
    type=click.IntRange(1024),
    show_default=True,
    help="Larger client frames close with 1009.",
    **_env("MAX_FRAME_BYTES"),
)
@click.option(
    "--max-fragments",
    default=1024,
    type=click.IntRange(1),
    show_default=True,
    help="Frames one client message may be split into; past it the connection closes with 1009.",
    **_env("MAX_FRAGMENTS"),
)
@click.option(
    "--max-message-chars",
    default=32_768,
    type=click.IntRange(1),
    show_default=True,
    **_env("MAX_MESSAGE_CHARS"),
)
@click.option(
    "--ping-interval",
    default=20.0,
    type=click.FloatRange(0),
    show_default=True,
    help="Seconds of client silence before a ping (0: no heartbeat).",
    **_env("PING_INTERVAL"),
)
@click.option(
    "--ping-timeout",
    default=20.0,
    type=click.FloatRange(0),
    show_default=True,
    help="Seconds a pinged client has to answer.",
    **_env("PING_TIMEOUT"),
)
@click.option(
    "--drain-grace",
    default=5.0,
    type=click.FloatRange(0),
    show_default=True,
    help="Seconds from SIGTERM to closing sockets with 1012.",
    **_env("DRAIN_GRACE"),
)
@click.option(
    "--send-buffer-limit",
    default=4 * 1024 * 1024,
    type=click.IntRange(1024),
    show_default=True,
    help="Bytes queued for a slow client before it is dropped.",
    **_env("SEND_BUFFER_LIMIT"),
)
@click.option(
    "--max-connections-per-user",
    default=0,
    type=click.IntRange(0),
    show_default=True,
    help="0: unlimited; past it handshakes get 429.",
    **_env("MAX_CONNECTIONS_PER_USER"),
)
@click.option(
    "--max-header-bytes",
    default=64 * 1024,
    type=click.IntRange(1024),
    show_default=True,
    help="A larger request head gets 431.",
    **_env("MAX_HEADER_BYTES"),
)
@click.option(
    "--max-headers",
    default=100,
    type=click.IntRange(1),
    show_default=True,
    help="More header fields get 431.",
    **_env("MAX_HEADERS"),
)
@click.option(
    "--max-body-bytes",
    default=12 * 1024 * 1024,
    type=click.IntRange(1024),
    show_default=True,
    help="A larger request body gets 413 (from Content-Length, before reading it).",
    **_env("MAX_BODY_BYTES"),
)
@click.option(
    "--header-timeout",
    default=10.0,
    type=click.FloatRange(0.1),
    show_default=True,
    help="Seconds to send a request head (and a WebSocket handshake); then 408.",
    **_env("HEADER_TIMEOUT"),
)
@click.option(
    "--body-timeout",
    default=30.0,
    type=click.FloatRange(0.1),
    show_default=True,
    help="Seconds to send a request body after its head; then 408.",
    **_env("BODY_TIMEOUT"),
)
@click.option(
    "--max-incomplete-requests",
    default=1024,
    type=click.IntRange(1),
    show_default=True,
    help="Connections sending a head with the full --header-timeout; others get 1 s.",
    **_env("MAX_INCOMPLETE_REQUESTS"),
)
@click.option(
    "--allowed-origins",
    default="",
    help="Comma-separated browser origins allowed for CORS and WebSocket handshakes "
    "(others get 403); empty: no CORS, WebSocket from any origin; '*': any.",
    **_env("ALLOWED_ORIGINS"),
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    help="Comma-separated proxy addresses or networks whose X-Forwarded-For names the "
    "client (HTTP API and WebSocket sourceIp); '*': any.",
    **_env("FORWARDED_ALLOW_IPS"),
)
@click.option(
    "--default-ttl",
    default=0.0,
    type=click.FloatRange(0),
    show_default=True,
    help="Seconds a notification is kept when published without expiresAt (0: forever).",
    **_env("DEFAULT_TTL"),
)
@click.option(
    "--max-stored-per-user",
    default=10_000,
    type=click.IntRange(0),
    show_default=True,
    help="Each user's stream keeps its newest N notifications (older ones go as if "
    "expired); 0: no cap.",
    **_env("MAX_STORED_PER_USER"),
)
@click.option(
    "--sweep-interval",
    default=1.0,
    type=click.FloatRange(0.05),
    show_default=True,
    help="Seconds between sweeps of expired notifications.",
    **_env("SWEEP_INTERVAL"),
)
@click.option(
    "--node-ttl",
    default=10.0,
    type=click.FloatRange(0.3),
    show_default=True,
    help="With --broker redis://: seconds without a heartbeat before peers count a node dead.",
    **_env("NODE_TTL"),
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    **_env("LOG_LEVEL"),
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
    _run(run_server(settings, sock))


USER_TOKEN_TTL = 86400
ADMIN_TOKEN_TTL = 30 * 86400


@cli.command()
@click.argument("user")
@click.option("--admin", is_flag=True, help="May publish over HTTP and manage any inbox.")
@click.option(
    "--ttl",
    default=None,
    type=click.IntRange(1),
    help="Lifetime in seconds [default: 1 day; 30 days with --admin].",
)
@data_dir_option
@secret_option
def token(user: str, admin: bool, ttl: int | None, data_dir: Path, secret: str | None) -> None:
    """Print a signed token for USER."""
    if ttl is None:
        # Until tokens can be revoked, an admin token's lifetime is its exposure.
        ttl = ADMIN_TOKEN_TTL if admin else USER_TOKEN_TTL
    key = secret or load_or_create_secret(data_dir)
    click.echo(mint(key, user, ttl_seconds=ttl, admin=admin))


@cli.command()
@data_dir_option
@click.option("--db", help="Store URL (default: the SQLite file in the data dir).", **_env("DB"))
def migrate(data_dir: Path, db: str | None) -> None:
    """Create or upgrade the store's schema, then exit."""
    from tidings.store import open_store

    settings = Settings(data_dir=data_dir, db=db)

    async def run() -> None:
        store = open_store(settings.store_url)
        await store.open()
        await store.close()

    _run(run())
    click.echo(f"schema up to date: {redact_url(settings.store_url)}")


url_option = click.option(
    "--url", default="http://127.0.0.1:8000", show_default=True, help="The server.", **_env("URL")
)


@cli.command()
@click.option("--user", required=True, help="Whose notifications to print.")
@url_option
@click.option("--token", help="A token for USER; default: minted with the secret.", **_env("TOKEN"))
@click.option(
    "--since",
    type=click.IntRange(0),
    help="Start after this seq (0: all stored) instead of where the last listen stopped.",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File keeping the position [default: DATA_DIR/listen/USER@HOST_PORT.json].",
)
@data_dir_option
@secret_option
def listen(
    user: str,
    url: str,
    token: str | None,
    since: int | None,
    state: Path | None,
    data_dir: Path,
    secret: str | None,
) -> None:
    """Print USER's notifications as they arrive, one JSON line each, resuming where it stopped."""
    from tidings.client import commands

    if token is None:
        key = secret or load_or_create_secret(data_dir)
        factory = functools.partial(mint, key, user, ttl_seconds=3600)
    else:
        factory = functools.partial(str, token)
    path = state or commands.default_state_path(data_dir, user, url)
    store = commands.JsonFileState(path, ignore_saved=since is not None)
    try:
        _run(commands.listen(url, factory, state=store, since=since))
    except commands.CommandError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option("--to", multiple=True, help="Recipient user id (repeat for more).")
@click.option("--topic", help="Publish to this topic instead ('everyone': every user).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more).")
@click.option("--expires-at", help="When it leaves the inbox (ISO 8601 with a zone).")
@click.argument("message")
@click.option("--data", help="A JSON object, e.g. '{\"order\": 42}'.")
@click.option("--idempotency-key", help="Send again with the same key: stored once.")
@url_option
@click.option(
    "--token", help="An admin token; default: minted with the secret.", **_env("ADMIN_TOKEN")
)
@click.option("--sender", default="cli", show_default=True, help="Sender of a minted token.")
@data_dir_option
@secret_option
def send(
    to: tuple[str, ...],
    topic: str | None,
    tags: tuple[str, ...],
    expires_at: str | None,
    message: str,
    data: str | None,
    idempotency_key: str | None,
    url: str,
    token: str | None,
    sender: str,
    data_dir: Path,
    secret: str | None,
) -> None:
    """Publish MESSAGE to the --to users (or a --topic) over HTTP; prints the
    server's answer as JSON."""
    import json

    from tidings.client import commands

    if bool(to) == (topic is not None):
        raise click.UsageError("give --to (one or more users) or --topic, not both")

    payload = None
    if data is not None:
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
        if not isinstance(payload, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--data")
    if token is None:
        key = secret or load_or_create_secret(data_dir)
        token = mint(key, sender, ttl_seconds=300, admin=True)
    try:
        answer = commands.send(
            url,
            token,
            to,
            message,
            topic=topic,
            data=payload,
            tags=tags,
            expires_at=expires_at,
            idempotency_key=idempotency_key,
        )
    except commands.CommandError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(answer, separators=(",", ":")))


class _Unavailable(click.ClickException):
    exit_code = 2


def _check_ws_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from tidings.loadtest.wire import url_problem

    problem = url_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


@cli.command()
@click.option(
    "--url",
    required=True,
    callback=_check_ws_url,
    help="The deployment's WebSocket endpoint, ws://HOST:PORT/ws or wss://HOST/ws "
    "(wss: the certificate is checked against the system's CAs; SSL_CERT_FILE adds one).",
    **_env("BENCH_URL"),
)
@click.option(
    "--token",
    required=True,
    help="A user token (tidings token USER). Every connection is that user and every "
    "send is stored in that user's inbox: use a user kept for load tests. No admin "
    "token is needed (sends go over the WebSocket; the server must allow them, "
    "--user-send any or self).",
    **_env("TOKEN"),
)
@click.option(
    "--connections",
    default=100,
    type=click.IntRange(1, 50_000),
    show_default=True,
    help="Receiving connections (each gets every send; mind --max-connections-per-user).",
    **_env("BENCH_CONNECTIONS"),
)
@click.option(
    "--senders",
    default=1,
    type=click.IntRange(1, 64),
    show_default=True,
    help="Connections that send (they receive every send too).",
    **_env("BENCH_SENDERS"),
)
@click.option(
    "--duration",
    default=10.0,
    type=click.FloatRange(0.5, 3600),
    show_default=True,
    help="Seconds of measured sending (then up to 3 s of drain).",
    **_env("BENCH_DURATION"),
)
@click.option(
    "--rate",
    default=0.0,
    type=click.FloatRange(0, 1_000_000),
    show_default=True,
    help="Sends a second, for latency at a fixed load; 0: saturation (each sender keeps "
    "8 sends awaiting their acks).",
    **_env("BENCH_RATE"),
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the raw results here as JSON.",
    **_env("BENCH_OUT"),
)
def bench(
    url: str,
    token: str,
    connections: int,
    senders: int,
    duration: float,
    rate: float,
    out: Path | None,
) -> None:
    """Load-test a deployment with one user's token, using the benchmark's load generator.

    Opens the connections, sends notifications to that user for --duration
    seconds and prints connections, handshakes/s, sends, acks and deliveries
    per second, latency (send to receipt) and errors. Needs picows. Exit
    status 1: the server refused or could not be reached; 2: bad options or no
    picows.
    """
    import importlib.util
    import json

    if importlib.util.find_spec("picows") is None:
        raise _Unavailable("tidings bench needs picows: pip install 'tidings[bench]'")
    from tidings.loadtest import deployment

    try:
        result = _run(
            deployment.bench_url(
                url,
                token,
                connections=connections,
                senders=senders,
                duration=duration,
                rate=rate or None,
            )
        )
    except deployment.LoadTestError as exc:
        raise click.ClickException(str(exc)) from None
    if out is not None:
        try:
            out.write_text(json.dumps(result, indent=1) + "\n")
        except OSError as exc:
            raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    for line in deployment.summary(result):
        click.echo(line)
    if out is not None:
        click.echo(f"  results      {out}")


def _run(main: Any) -> Any:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    except ImportError:
        return asyncio.run(main)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "tidings"
        click.echo(f"tidings: error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"tidings: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except TidingsError as exc:
        click.echo(f"tidings: error: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
