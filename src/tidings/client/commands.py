"""``tidings listen``, ``tidings send`` and ``tidings revoke``: the SDK from a terminal.

``listen`` prints each notification as one JSON line and keeps its position
in a small state file, so the next run (or the same run, after the server
restarts) resumes where it stopped. Both turn every failure into one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
import orjson

from tidings.client.base import USER_AGENT, answer, server_urls, unreachable_reason
from tidings.client.connection import TidingsClient, TokenFactory
from tidings.client.errors import ClientError, RequestFailed, ServerUnreachable, Unauthorized
from tidings.client.publisher import Publisher


class CommandError(Exception):
    """One line for the user; the command exits 1."""


def one_line(exc: ClientError) -> str:
    if isinstance(exc, RequestFailed) and not isinstance(exc, Unauthorized):
        return f"{exc.message} ({exc.code})"
    return exc.message


class JsonFileState:
    """A listener's position in a JSON file, replaced atomically on each save."""

    def __init__(self, path: Path, *, ignore_saved: bool = False) -> None:
        self.path = path
        self.ignore_saved = ignore_saved

    def load(self) -> dict[str, Any] | None:
        if self.ignore_saved or not self.path.exists():
            return None
        try:
            saved = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return saved if isinstance(saved, dict) else None

    def save(self, position: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_bytes(orjson.dumps(position))
        os.replace(temp, self.path)


def default_state_path(data_dir: Path, user: str, url: str) -> Path:
    """``DATA_DIR/listen/USER@HOST_PORT.json``: one position per user and server."""
    netloc = urlsplit(server_urls(url).http).netloc
    return data_dir / "listen" / (re.sub(r"[^\w.@-]", "_", f"{user}@{netloc}") + ".json")


async def listen(
    url: str,
    token_factory: TokenFactory,
    *,
    state: JsonFileState,
    since: int | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> None:
    """Print notifications until interrupted; raise ``CommandError`` on a failure."""

    lost = False

    def on_state(name: str) -> None:
        nonlocal lost
        if name == "reconnecting" and not lost:
            lost = True
            print(f"tidings: connection lost; reconnecting to {url}", file=err, flush=True)
        elif name == "connected" and lost:
            lost = False
            print("tidings: reconnected", file=err, flush=True)

    client = TidingsClient(
        url, token_factory=token_factory, since=since, state=state, on_state=on_state
    )
    try:
        async for notification in client.notifications():
            out.write(orjson.dumps(notification).decode() + "\n")
            out.flush()
    except ClientError as exc:
        raise CommandError(one_line(exc)) from None
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def send(
    url: str,
    admin_token: str,
    to: Sequence[str],
    message: str,
    *,
    topic: str | None = None,
    data: dict[str, Any] | None = None,
    tags: Sequence[str] = (),
    expires_at: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Publish over HTTP to users, or to a topic; the server's answer, or ``CommandError``."""
    recipients: str | Sequence[str] = to[0] if len(to) == 1 else list(to)
    try:
        with Publisher(url, admin_token) as publisher:
            if topic is not None:
                return publisher.broadcast(
                    message,
                    topic=topic,
                    data=data,
                    tags=tags,
                    expires_at=expires_at,
                    idempotency_key=idempotency_key,
                )
            return publisher.publish(
                recipients,
                message,
                data=data,
                tags=tags,
                expires_at=expires_at,
                idempotency_key=idempotency_key,
            )
    except ClientError as exc:
        raise CommandError(one_line(exc)) from None


def revoke(
    url: str, admin_token: str, *, user: str | None = None, jti: str | None = None
) -> dict[str, Any]:
    """Revoke a user's tokens issued until now, or one token by its jti, on every
    node; the server's answer, or ``CommandError``."""
    body = {"userId": user} if user is not None else {"tokenId": jti}
    try:
        with httpx.Client(
            base_url=server_urls(url).http,
            headers={"Authorization": f"Bearer {admin_token}", "User-Agent": USER_AGENT},
            timeout=10.0,
        ) as http:
            try:
                response = http.post("/v1/revocations", json=body)
            except httpx.TransportError as exc:
                raise ServerUnreachable(
                    f"cannot reach the server at {server_urls(url).http} "
                    f"({unreachable_reason(exc)})"
                ) from None
            found: dict[str, Any] = answer(response)
            return found
    except ClientError as exc:
        raise CommandError(one_line(exc)) from None
