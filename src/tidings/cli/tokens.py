"""``tidings token``: mint a signed token for a user."""

from __future__ import annotations

from pathlib import Path

import click

from tidings.cli.common import data_dir_option, secret_option
from tidings.config import load_or_create_secret
from tidings.core.tokens import mint

USER_TOKEN_TTL = 86400
ADMIN_TOKEN_TTL = 30 * 86400


@click.command()
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
