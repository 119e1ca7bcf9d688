"""``tidings token``: mint a signed token for a user, or say what one is."""

from __future__ import annotations

import time
from pathlib import Path

import click

from tidings.cli.common import data_dir_option, secret_option
from tidings.config import load_or_create_secret
from tidings.core.errors import AuthError
from tidings.core.keys import Keys
from tidings.core.models import iso_ms
from tidings.core.tokens import claims_of, mint, verify

USER_TOKEN_TTL = 86400
ADMIN_TOKEN_TTL = 30 * 86400


@click.command()
@click.argument("user", required=False)
@click.option("--admin", is_flag=True, help="May publish over HTTP and manage any inbox.")
@click.option(
    "--ttl",
    default=None,
    type=click.IntRange(1),
    help="Lifetime in seconds [default: 1 day; 30 days with --admin].",
)
@click.option(
    "--check",
    metavar="TOKEN",
    help="Say whom TOKEN is for and when it expires, instead of minting one "
    "(exit status 1 if the server would refuse it).",
)
@data_dir_option
@secret_option
def token(
    user: str | None,
    admin: bool,
    ttl: int | None,
    check: str | None,
    data_dir: Path,
    secret: str | None,
) -> None:
    """Print a signed token for USER (or, with --check, what a token is)."""
    key = secret or load_or_create_secret(data_dir)
    if check is not None:
        click.echo(describe(key, check))
        return
    if user is None:
        raise click.UsageError("give the USER to mint a token for (or --check TOKEN)")
    if ttl is None:
        # A leaked admin token works until it expires or is revoked (tidings revoke).
        ttl = ADMIN_TOKEN_TTL if admin else USER_TOKEN_TTL
    click.echo(mint(Keys.of(key), user, ttl_seconds=ttl, admin=admin))


def describe(secret: str, token: str) -> str:
    """``alice (user token), expires ... (in 23 h 59 min)``; ``AuthError`` if refused."""
    claims = claims_of(secret, token)
    exp = claims.get("exp")
    try:
        who = verify(secret, token)
    except AuthError as exc:
        if isinstance(exp, int) and exp <= time.time():
            raise AuthError(f"token expired at {iso_ms(exp * 1000)} ({_span(exp)} ago)") from None
        raise exc from None
    kind = "admin token" if who.admin else "user token"
    until = ""
    if isinstance(exp, int):
        left = "in " + _span(exp) if exp > time.time() else _span(exp) + " ago, within the leeway"
        until = f"expires {iso_ms(exp * 1000)} ({left})"
    jti = f", jti {who.token_id}" if who.token_id else ""
    return f"{who.user_id} ({kind}), {until or 'never expires'}{jti}"


def _span(when: int) -> str:
    seconds = abs(int(when - time.time()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"
