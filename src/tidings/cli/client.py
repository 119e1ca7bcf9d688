"""``tidings listen``, ``tidings send`` and ``tidings revoke``: the service from a terminal."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from tidings.cli.common import data_dir_option, env, run, secret_option, url_option
from tidings.config import load_or_create_secret
from tidings.core.tokens import mint


@click.command()
@click.option("--user", required=True, help="Whose notifications to print.")
@url_option
@click.option("--token", help="A token for USER; default: minted with the secret.", **env("TOKEN"))
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
        run(commands.listen(url, factory, state=store, since=since))
    except commands.CommandError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.option("--to", multiple=True, help="Recipient user id (repeat for more).")
@click.option("--topic", help="Publish to this topic instead ('everyone': every user).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more).")
@click.option("--expires-at", help="When it leaves the inbox (ISO 8601 with a zone).")
@click.argument("message")
@click.option("--data", help="A JSON object, e.g. '{\"order\": 42}'.")
@click.option("--idempotency-key", help="Send again with the same key: stored once.")
@url_option
@click.option(
    "--token", help="An admin token; default: minted with the secret.", **env("ADMIN_TOKEN")
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


@click.command()
@click.option("--user", help="Revoke every token of this user issued until now.")
@click.option("--jti", help="Revoke the one token with this jti (tidings token --check shows it).")
@url_option
@click.option(
    "--token", help="An admin token; default: minted with the secret.", **env("ADMIN_TOKEN")
)
@data_dir_option
@secret_option
def revoke(
    user: str | None,
    jti: str | None,
    url: str,
    token: str | None,
    data_dir: Path,
    secret: str | None,
) -> None:
    """Revoke tokens on every node of the server at --url: refused from now on,
    and connections open with them closed (4403)."""
    import json

    from tidings.client import commands

    if (user is None) == (jti is None):
        raise click.UsageError("give --user or --jti (one of them)")
    if token is None:
        key = secret or load_or_create_secret(data_dir)
        token = mint(key, "cli", ttl_seconds=300, admin=True)
    try:
        answer = commands.revoke(url, token, user=user, jti=jti)
    except commands.CommandError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(answer, separators=(",", ":")))
