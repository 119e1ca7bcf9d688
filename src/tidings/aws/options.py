"""The API Gateway settings that ``tidings serve``'s options make (the flags are
declared with the others, in ``cli/schema.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidings.aws.routes import build_table, load_file
from tidings.aws.settings import DEFAULT_TIMEOUT, GatewaySettings


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
