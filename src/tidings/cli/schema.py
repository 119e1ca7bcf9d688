"""Every setting of ``tidings serve``, declared once: its flag, its environment
variable and its config-file key all come from one row here.

``--port`` is ``TIDINGS_PORT`` and ``port = 8000`` in the file (``max-frame-bytes``
or ``max_frame_bytes``, both spellings). A value is taken from the first of:
the flag, the environment, the config file, the default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from tidings.aws.settings import DEFAULT_TIMEOUT
from tidings.config import default_data_dir

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Setting:
    flag: str
    """The flag without its dashes, e.g. ``max-frame-bytes``."""
    help: str
    default: Any = None
    type: Any = None
    dest: str | None = None
    """The parameter's name when it is not the flag's (``routes`` -> ``routes_file``)."""
    is_flag: bool = False
    multiple: bool = False
    metavar: str | None = None
    secret: bool = False
    """Masked by ``tidings config print``."""
    show_default: bool | str = True
    variable: str | None = None
    """The environment variable without ``TIDINGS_``, when it is not the flag's."""
    required: bool = False
    callback: Callable[[click.Context, click.Parameter, Any], Any] | None = None

    @property
    def name(self) -> str:
        return self.dest or self.flag.replace("-", "_")

    @property
    def env(self) -> str:
        return "TIDINGS_" + (self.variable or self.flag.replace("-", "_").upper())

    @property
    def _has_default(self) -> bool:
        return self.default is not None and self.default is not False and self.default != ()

    def option(self) -> Callable[[F], F]:
        extra: dict[str, Any] = {}
        if self.type is not None:
            extra["type"] = self.type
        if self.metavar is not None:
            extra["metavar"] = self.metavar
        return click.option(
            f"--{self.flag}",
            self.name,
            default=self.default,
            is_flag=self.is_flag,
            multiple=self.multiple,
            help=self.help,
            show_default=self.show_default if self._has_default else False,
            envvar=self.env,
            show_envvar=True,
            required=self.required,
            callback=self.callback,
            **extra,
        )


def _ints(low: int, high: int | None = None) -> click.IntRange:
    return click.IntRange(low, high)


def _seconds(low: float) -> click.FloatRange:
    return click.FloatRange(low)


def _rate() -> click.FloatRange:
    """Events a second; 0 turns the limit off."""
    return click.FloatRange(0)


SERVE: tuple[Setting, ...] = (
    Setting("host", "Address to listen on.", "127.0.0.1"),
    Setting("port", "0: any free port.", 8000, _ints(0, 65535)),
    Setting(
        "data-dir",
        "Holds the SQLite file and the generated secret.",
        default_data_dir,
        click.Path(file_okay=False, path_type=Path),
        show_default="$XDG_DATA_HOME/tidings",
    ),
    Setting("db", "Store URL: sqlite:///path.db (default, in the data dir) or postgresql://..."),
    Setting(
        "store-wait",
        "Seconds to wait at start for a store server that does not answer yet (0: fail at once).",
        30.0,
        _seconds(0),
    ),
    Setting("broker", "memory:// (one node) or redis://host:6379/0", "memory://"),
    Setting(
        "secret",
        "HS256 signing secret (32+ chars); default: generated once in the data dir.",
        secret=True,
    ),
    Setting(
        "old-secret",
        "A secret tokens were signed with before --secret: they still verify (repeat; "
        "rotation: the old --secret goes here).",
        dest="old_secrets",
        multiple=True,
        secret=True,
        variable="OLD_SECRETS",
    ),
    Setting(
        "jwks-url",
        "An identity provider's JWKS URL (OIDC jwks_uri): its RS256/ES256/... tokens are "
        "accepted, sub as the user.",
    ),
    Setting("token-issuer", "Required iss of tokens signed with --jwks-url keys."),
    Setting("token-audience", "Required aud of tokens signed with --jwks-url keys."),
    Setting(
        "jwks-refresh",
        "Seconds between background fetches of --jwks-url (also fetched on an unknown kid).",
        300.0,
        _seconds(1),
    ),
    Setting(
        "jwks-min-interval",
        "Seconds between fetches of --jwks-url for tokens naming a kid not seen yet "
        "(other such tokens are refused meanwhile).",
        10.0,
        _seconds(0),
    ),
    Setting(
        "revocation-reload",
        "Seconds between loads of the stored revocations (a node that missed one on "
        "the broker closes its connections then).",
        30.0,
        _seconds(0.1),
    ),
    Setting(
        "token-expiry-notice",
        "Seconds before its token expires that a connection gets tokenExpiring "
        "(then, at exp, close code 4401 unless it sent refreshToken).",
        60.0,
        _seconds(0),
    ),
    Setting("allow-user-id", "INSECURE: accept the seed's ?userId= without a token.", is_flag=True),
    Setting(
        "dev-login",
        "INSECURE: the /inbox page signs in as any user id (POST /dev/login).",
        is_flag=True,
    ),
    Setting(
        "user-send",
        "Whom user tokens may send to over the WebSocket "
        "[default: self; any with --allow-user-id or --dev-login].",
        type=click.Choice(["any", "self", "none"]),
    ),
    Setting(
        "durability",
        "full: fsync every commit; relaxed: survives a crash, not a power cut.",
        "full",
        click.Choice(["full", "relaxed"]),
    ),
    Setting("max-frame-bytes", "Larger client frames close with 1009.", 128 * 1024, _ints(1024)),
    Setting(
        "max-fragments",
        "Frames one client message may be split into; past it the connection closes with 1009.",
        1024,
        _ints(1),
    ),
    Setting(
        "max-fragment-bytes",
        "Larger single client frames close with 1009, whatever the message's size "
        "(32768: API Gateway's frame limit); 0: no limit per frame.",
        0,
        _ints(0),
    ),
    Setting("max-message-chars", "Longest message text.", 32_768, _ints(1)),
    Setting(
        "ping-interval",
        "Seconds of client silence before a ping (0: no heartbeat).",
        20.0,
        _seconds(0),
    ),
    Setting("ping-timeout", "Seconds a pinged client has to answer.", 20.0, _seconds(0)),
    Setting("drain-grace", "Seconds from SIGTERM to closing sockets with 1012.", 5.0, _seconds(0)),
    Setting(
        "send-buffer-limit",
        "Bytes queued for a slow client before it is dropped.",
        4 * 1024 * 1024,
        _ints(1024),
    ),
    Setting(
        "max-connections-per-user",
        "Open connections per user on a node; the newest past it gets 429 (0: unlimited).",
        100,
        _ints(0),
    ),
    Setting(
        "frame-rate",
        "Client frames/s per connection (burst 2x); then rate_limited errors, "
        "then close 4429 (0: off).",
        100.0,
        _rate(),
    ),
    Setting(
        "publish-rate",
        "Notifications/s one user token may send (burst 2x); then rate_limited (0: off).",
        20.0,
        _rate(),
    ),
    Setting(
        "service-publish-rate",
        "Publishes/s one admin token may make, HTTP and WebSocket (burst 2x; 0: off).",
        10_000.0,
        _rate(),
    ),
    Setting(
        "connect-rate-per-ip",
        "New connections/s from one client address (burst 2x); then 429 (0: off).",
        50.0,
        _rate(),
    ),
    Setting(
        "connect-rate",
        "New connections/s on this node from anyone (burst 2x); then 429 (0: off).",
        2_000.0,
        _rate(),
    ),
    Setting("max-header-bytes", "A larger request head gets 431.", 64 * 1024, _ints(1024)),
    Setting("max-headers", "More header fields get 431.", 100, _ints(1)),
    Setting(
        "max-body-bytes",
        "A larger request body gets 413 (from Content-Length, before reading it).",
        12 * 1024 * 1024,
        _ints(1024),
    ),
    Setting(
        "header-timeout",
        "Seconds to send a request head (and a WebSocket handshake); then 408.",
        10.0,
        _seconds(0.1),
    ),
    Setting(
        "body-timeout",
        "Seconds to send a request body after its head; then 408.",
        30.0,
        _seconds(0.1),
    ),
    Setting(
        "max-incomplete-requests",
        "Connections sending a head with the full --header-timeout; others get 1 s.",
        1024,
        _ints(1),
    ),
    Setting(
        "allowed-origins",
        "Comma-separated browser origins allowed for CORS and WebSocket handshakes "
        "(others get 403); empty: no CORS, WebSocket from any origin; '*': any.",
        "",
    ),
    Setting(
        "forwarded-allow-ips",
        "Comma-separated proxy addresses or networks whose X-Forwarded-For names the "
        "client (HTTP API and WebSocket sourceIp); '*': any.",
        "127.0.0.1",
    ),
    Setting(
        "default-ttl",
        "Seconds a notification is kept when published without expiresAt (0: forever).",
        0.0,
        _seconds(0),
    ),
    Setting(
        "max-stored-per-user",
        "Each user's stream keeps its newest N notifications (older ones go as if "
        "expired); 0: no cap.",
        10_000,
        _ints(0),
    ),
    Setting(
        "sweep-interval", "Seconds between sweeps of expired notifications.", 1.0, _seconds(0.05)
    ),
    Setting(
        "node-ttl",
        "With --broker redis://: seconds without a heartbeat before peers count a node dead.",
        10.0,
        _seconds(0.3),
    ),
    Setting(
        "log-level", "How much to log.", "info", click.Choice(["debug", "info", "warning", "error"])
    ),
    Setting(
        "metrics",
        "on: serve Prometheus metrics at /metrics (see docs/metrics.md); off: no metrics.",
        "on",
        click.Choice(["on", "off"]),
    ),
    Setting(
        "metrics-listen",
        "HOST:PORT serving only /metrics (e.g. an internal address, not behind the "
        "balancer); empty: /metrics on the main port.",
        "",
        metavar="HOST:PORT",
    ),
    # API Gateway compatibility (tidings.aws.options builds its settings from these).
    Setting(
        "routes",
        "A JSON or TOML (.toml) route table: route keys ($connect, $disconnect, "
        "$default, custom) to HTTP integration URLs (see docs/aws-migration.md).",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        dest="routes_file",
    ),
    Setting(
        "route",
        "One route, e.g. '$connect=http://127.0.0.1:3000/ws' (repeat; wins over --routes).",
        dest="route_flags",
        multiple=True,
        metavar="KEY=URL",
    ),
    Setting(
        "two-way",
        "Send that route's integration body back to the client (repeat).",
        multiple=True,
        metavar="KEY",
    ),
    Setting(
        "route-selection-expression",
        "Which message field picks the route [default: $request.body.action].",
    ),
    Setting(
        "integration-timeout",
        f"Seconds a route's integration has to answer [default: {DEFAULT_TIMEOUT:g}].",
        type=click.FloatRange(0, 3600, min_open=True),
    ),
    Setting(
        "stage",
        "Stage name: WebSocket also at /STAGE and /STAGE/ws, management at "
        "/STAGE/@connections [default: $default].",
    ),
    Setting(
        "domain-name",
        "requestContext.domainName in events [default: the Host clients connect to].",
    ),
    Setting("aws-access-key-id", "Accept @connections calls signed (AWS SigV4) with this key id."),
    Setting(
        "aws-secret-access-key",
        "The secret of --aws-access-key-id (32+ characters).",
        secret=True,
    ),
)

BY_KEY = {setting.flag: setting for setting in SERVE}


def options(settings: tuple[Setting, ...]) -> Callable[[F], F]:
    """A decorator adding each setting's flag to a command, in order."""

    def add(command: F) -> F:
        for setting in reversed(settings):
            command = setting.option()(command)
        return command

    return add


serve_options = options(SERVE)
