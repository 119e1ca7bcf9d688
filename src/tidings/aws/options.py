"""The ``tidings serve`` flags for API Gateway compatibility, and the settings they make."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from tidings.aws.routes import build_table, load_file
from tidings.aws.settings import DEFAULT_TIMEOUT, GatewaySettings

F = TypeVar("F", bound=Callable[..., Any])


def _env(name: str) -> dict[str, Any]:
    return {"envvar": f"TIDINGS_{name}", "show_envvar": True}


_OPTIONS = [
    click.option(
        "--routes",
        "routes_file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="A JSON or TOML (.toml) route table: route keys ($connect, $disconnect, "
        "$default, custom) to HTTP integration URLs (see docs/aws-migration.md).",
        **_env("ROUTES"),
    ),
    click.option(
        "--route",
        "route_flags",
        multiple=True,
        metavar="KEY=URL",
        help="One route, e.g. '$connect=http://127.0.0.1:3000/ws' (repeat; wins over --routes).",
        **_env("ROUTE"),
    ),
    click.option(
        "--two-way",
        "two_way",
        multiple=True,
        metavar="KEY",
        help="Send that route's integration body back to the client (repeat).",
        **_env("TWO_WAY"),
    ),
    click.option(
        "--route-selection-expression",
        help="Which message field picks the route [default: $request.body.action].",
        **_env("ROUTE_SELECTION_EXPRESSION"),
    ),
    click.option(
        "--integration-timeout",
        type=click.FloatRange(0, 3600, min_open=True),
        help=f"Seconds a route's integration has to answer [default: {DEFAULT_TIMEOUT:g}].",
        **_env("INTEGRATION_TIMEOUT"),
    ),
    click.option(
        "--stage",
        help="Stage name: WebSocket also at /STAGE and /STAGE/ws, management at "
        "/STAGE/@connections [default: $default].",
        **_env("STAGE"),
    ),
    click.option(
        "--domain-name",
        help="requestContext.domainName in events [default: the Host clients connect to].",
        **_env("DOMAIN_NAME"),
    ),
    click.option(
        "--aws-access-key-id",
        help="Accept @connections calls signed (AWS SigV4) with this key id.",
        **_env("AWS_ACCESS_KEY_ID"),
    ),
    click.option(
        "--aws-secret-access-key",
        help="The secret of --aws-access-key-id (32+ characters).",
        **_env("AWS_SECRET_ACCESS_KEY"),
    ),
]


def gateway_options(command: F) -> F:
    """Add the flags to a click command (its options then carry them)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def gateway_settings(options: Mapping[str, Any]) -> GatewaySettings:
    """Settings from the parsed flags; ``ConfigError`` for a bad route table."""
    path = options.get("routes_file")
    file = load_file(path) if path is not None else None
    table = build_table(
        file,
        options.get("route_flags") or (),
        options.get("two_way") or (),
        options.get("route_selection_expression"),
    )
    timeout = options.get("integration_timeout")
    if timeout is None:
        timeout = file.timeout if file and file.timeout is not None else DEFAULT_TIMEOUT
    settings = GatewaySettings(
        routes=table,
        integration_timeout=float(timeout),
        stage=options.get("stage") or None,
        domain_name=options.get("domain_name") or None,
        access_key_id=options.get("aws_access_key_id") or None,
        secret_access_key=options.get("aws_secret_access_key") or None,
    )
    settings.validate()
    return settings
