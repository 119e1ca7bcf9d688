"""One Redis link, shared by the Redis broker and the Redis cluster.

URL: ``redis://[user:password@]host:6379/0[?prefix=NAME]`` (``rediss://`` for
TLS). ``prefix`` (``tidings`` by default) keeps deployments sharing a Redis
apart; every other query parameter goes to redis-py. A subscription is held
by ``hold``: it listens while the link is up, notices a silent link by
pinging, and resubscribes with capped exponential backoff, reporting each
loss and return so its owner can repair what was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tidings.core.errors import ConfigError
from tidings.logs import redact_url

log = logging.getLogger("tidings.broker.redis")

LINK_ERRORS = (RedisError, OSError, TimeoutError)
"""What redis-py raises when the server is unreachable, gone or silent."""

DEFAULT_PREFIX = "tidings"


def split_prefix(url: str) -> tuple[str, str]:
    """``(url for redis-py, prefix)``: tidings' own ``prefix`` option taken off."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "prefix"]
    rest = [(name, value) for name, value in query if name != "prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
    if not prefix:
        raise ConfigError(f"empty prefix in Redis URL {redact_url(url)!r}")
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix


def connect(url: str, timeout: float) -> Any:
    """A client that fails fast (no retries of its own): ``hold`` does the retrying."""
    try:
        return Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {redact_url(url)!r}: {exc}") from None


async def subscribe(client: Any, channel: str, timeout: float) -> Any:
    """A new pub/sub connection, returned once Redis confirmed the subscription."""
    pubsub = client.pubsub()
    try:
        async with asyncio.timeout(timeout):
            await pubsub.subscribe(channel)
            while True:
                message = await pubsub.get_message(timeout=timeout)
                if message is not None and message["type"] == "subscribe":
                    return pubsub
    except BaseException:
        await pubsub.aclose()
        raise


async def listen(pubsub: Any, ping_interval: float, on_message: Callable[[bytes], None]) -> None:
    """Hand every message of ``pubsub`` to ``on_message``; raise ``TimeoutError``
    when Redis stays silent for ``ping_interval`` after a ping (a dead link that
    the socket alone would not reveal)."""
    loop = asyncio.get_running_loop()
    heard = loop.time()
    pinged = False
    while True:
        message = await pubsub.get_message(timeout=ping_interval)
        if message is None:
            if pinged and loop.time() - heard >= ping_interval:
                raise TimeoutError(f"no answer from Redis for {ping_interval:g}s")
            if not pinged:
                await pubsub.ping()
                pinged = True
            continue
        heard = loop.time()
        pinged = False
        if message["type"] == "message":
            on_message(message["data"])


@dataclass(frozen=True, slots=True)
class Backoff:
    timeout: float = 2.0
    """Seconds to connect or subscribe before trying again."""
    ping_interval: float = 5.0
    """Idle seconds before pinging; no answer within as long again means the
    link is dead even if the socket never said so."""
    min_delay: float = 0.1
    max_delay: float = 2.0


DEFAULT_BACKOFF = Backoff()


async def hold(
    client: Any,
    channel: str,
    *,
    name: str,
    on_message: Callable[[bytes], None],
    on_up: Callable[[], None],
    on_down: Callable[[], None],
    backoff: Backoff,
    pubsub: Any = None,
) -> None:
    """Keep ``channel`` subscribed until cancelled: ``on_up`` once each
    subscription holds, ``on_down`` each time it is lost. ``pubsub``: one
    already subscribed (its ``on_up`` was the caller's)."""
    delay = backoff.min_delay
    lost = waited = False
    while True:
        if pubsub is None:
            try:
                pubsub = await subscribe(client, channel, backoff.timeout)
            except Exception as exc:
                log.debug("%s link still down", name, extra={"error": str(exc)})
                waited = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, backoff.max_delay)
                continue
            delay = backoff.min_delay
            with contextlib.suppress(*LINK_ERRORS):
                # Idle command connections still point at the lost server.
                await client.connection_pool.disconnect(inuse_connections=False)
            if lost:
                log.warning("%s link restored", name)
            elif waited:
                log.warning("%s link up", name)
            on_up()
        try:
            await listen(pubsub, backoff.ping_interval, on_message)
        except Exception as exc:
            # Anything but a link error is a bug, yet the link must outlive it.
            report = log.warning if isinstance(exc, LINK_ERRORS) else log.exception
            report("%s link lost", name, extra={"error": str(exc)})
            lost = True
            on_down()
        finally:
            await pubsub.aclose()
            pubsub = None
