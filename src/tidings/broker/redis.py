"""Redis pub/sub between nodes.

URL: ``redis://[user:password@]host:6379/0[?prefix=NAME]`` (``rediss://`` for
TLS). Every node publishes to and subscribes to one channel,
``<prefix>:pub`` (prefix ``tidings`` by default), so deployments sharing a
Redis keep apart by prefix. Other query parameters go to redis-py.

Each publication travels as one pub/sub message: an 11-byte header (format
version, user id length, seq), the user id in UTF-8, then the frame bytes
exactly as the publisher built them; the payload is never decoded or
re-encoded on the way. Publishing goes through one sender, like the store's
group commit: whatever concurrent ``publish`` calls queued while the previous
pipeline was in flight goes out as the next pipeline, in call order. So one
node's publications reach every node in the order it sent them, and a burst
costs a few round trips and one connection, not one of each per call.

Redis pub/sub is at most once: while the link is down, messages are lost.
A watcher task owns the subscription; when the link drops (or stays silent
past a ping) it reports ``on_state(False)``, reconnects with capped
exponential backoff, re-subscribes, then reports ``on_state(True)`` so the
node repairs what was missed from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tidings.batching import GroupCommitter
from tidings.broker.base import Handler, StateHandler
from tidings.core.errors import ConfigError, Unavailable
from tidings.core.models import Publication
from tidings.logs import redact_url

log = logging.getLogger("tidings.broker.redis")

HEADER = struct.Struct(">BHHQ")
"""Format version, byte lengths of the user id and of the topic, seq."""

VERSION = 2

LINK_ERRORS = (RedisError, OSError, TimeoutError)
"""What redis-py raises when the server is unreachable, gone or silent."""


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


def encode(publication: Publication) -> bytes:
    """One publication as one pub/sub message: header, user id, topic, payload as is."""
    user = publication.user_id.encode()
    topic = (publication.topic or "").encode()
    if len(user) > 0xFFFF or len(topic) > 0xFFFF:
        raise ValueError("user id or topic too long for the broker")
    header = HEADER.pack(VERSION, len(user), len(topic), publication.seq)
    return header + user + topic + publication.payload


def decode(message: bytes) -> Publication:
    """The inverse of ``encode``; raises ``ValueError`` for anything else."""
    if len(message) < HEADER.size:
        raise ValueError(f"broker message too short: {len(message)} bytes")
    version, user_len, topic_len, seq = HEADER.unpack_from(message)
    if version != VERSION:
        raise ValueError(f"unknown broker message version {version!r}")
    start = HEADER.size
    end = start + user_len + topic_len
    if len(message) < end:
        raise ValueError("broker message cut inside its header fields")
    user = message[start : start + user_len].decode()
    topic = message[start + user_len : end].decode() or None
    return Publication(user_id=user, seq=seq, payload=bytes(message[end:]), topic=topic)


class RedisBroker:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tidings",
        min_backoff: float = 0.1,
        max_backoff: float = 2.0,
        ping_interval: float = 5.0,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.channel = f"{prefix}:pub"
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.ping_interval = ping_interval
        """Idle seconds before the watcher pings; no answer within as long again
        means the link is dead even if the socket never said so."""
        self.timeout = timeout
        """Seconds to connect, subscribe or publish before calling Redis unavailable."""
        self.up = False
        self._client: Any = None
        self._watcher: asyncio.Task[None] | None = None
        self._on_publication: Handler | None = None
        self._on_state: StateHandler | None = None
        self._sender: GroupCommitter[list[bytes], None] = GroupCommitter(self._send)

    @classmethod
    def from_url(cls, url: str) -> RedisBroker:
        """Take tidings' own ``prefix`` option off the URL; redis-py gets the rest."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefixes = [value for name, value in query if name == "prefix"]
        rest = [(name, value) for name, value in query if name != "prefix"]
        prefix = prefixes[-1] if prefixes else "tidings"
        if not prefix:
            raise ConfigError(f"empty prefix in Redis URL {redact_url(url)!r}")
        return cls(urlunsplit(parts._replace(query=urlencode(rest))), prefix=prefix)

    # -- lifecycle -----------------------------------------------------------

    async def start(self, on_publication: Handler, on_state: StateHandler) -> None:
        """Subscribe before returning, so nothing published afterwards is missed.

        Raises ``Unavailable`` if Redis cannot be reached now: a node should not
        come up believing it is connected to the others.
        """
        self._on_publication = on_publication
        self._on_state = on_state
        try:
            self._client = Redis.from_url(
                self.url,
                socket_connect_timeout=self.timeout,
                socket_timeout=self.timeout,
                socket_keepalive=True,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL {redact_url(self.url)!r}: {exc}") from None
        try:
            pubsub = await self._subscribe()
        except LINK_ERRORS as exc:
            await self._client.aclose()
            self._client = None
            raise Unavailable(
                f"cannot reach Redis at {redact_url(self.url)!r}: {exc or type(exc).__name__}"
            ) from None
        self.up = True
        self._watcher = asyncio.create_task(self._watch(pubsub), name="tidings-redis-watcher")

    async def stop(self) -> None:
        await self._sender.wait_idle()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            try:
                await watcher
            except asyncio.CancelledError:
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise
        self.up = False
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- sending -------------------------------------------------------------

    async def publish(self, publications: Sequence[Publication]) -> None:
        if not publications:
            return
        if not self.up or self._client is None:
            raise Unavailable("Redis broker is down; publications are not sent")
        await self._sender.submit([encode(publication) for publication in publications])

    async def _send(self, batches: list[list[bytes]]) -> list[None]:
        """One pipeline for everything queued, in order."""
        if self._client is None:
            raise Unavailable("Redis broker is stopped")
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for batch in batches:
                    for message in batch:
                        pipe.publish(self.channel, message)
                await pipe.execute()
        except LINK_ERRORS as exc:
            raise Unavailable(f"Redis publish failed: {exc or type(exc).__name__}") from None
        return [None] * len(batches)

    async def ping(self) -> None:
        if not self.up or self._client is None:
            raise Unavailable("Redis broker is down")
        try:
            await asyncio.wait_for(self._client.ping(), self.timeout)
        except LINK_ERRORS as exc:
            raise Unavailable(f"Redis unreachable: {exc or type(exc).__name__}") from None

    # -- receiving -----------------------------------------------------------

    async def _subscribe(self) -> Any:
        """A new pub/sub connection, returned once Redis confirmed the subscription."""
        pubsub = self._client.pubsub()
        try:
            async with asyncio.timeout(self.timeout):
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=self.timeout)
                    if message is not None and message["type"] == "subscribe":
                        return pubsub
        except BaseException:
            await pubsub.aclose()
            raise

    async def _watch(self, pubsub: Any) -> None:
        """Listen while the link holds; on loss report it and reconnect until back."""
        delay = self.min_backoff
        while True:
            if pubsub is None:
                try:
                    pubsub = await self._subscribe()
                except Exception as exc:
                    log.debug("Redis still unreachable", extra={"error": str(exc)})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
                    continue
                delay = self.min_backoff
                with contextlib.suppress(*LINK_ERRORS):
                    # Idle publish connections still point at the lost server.
                    await self._client.connection_pool.disconnect(inuse_connections=False)
                log.warning("Redis broker link restored")
                self._set_state(True)
            try:
                await self._listen(pubsub)
            except Exception as exc:
                # Anything but a link error is a bug, yet the watcher must outlive it.
                report = log.warning if isinstance(exc, LINK_ERRORS) else log.exception
                report("Redis broker link lost", extra={"error": str(exc)})
                self._set_state(False)
            finally:
                await pubsub.aclose()
                pubsub = None

    async def _listen(self, pubsub: Any) -> None:
        await listen(pubsub, self.ping_interval, self._deliver)

    def _deliver(self, message: bytes) -> None:
        try:
            publication = decode(message)
        except ValueError as exc:
            log.error("dropped a broker message that is not ours", extra={"error": str(exc)})
            return
        handler = self._on_publication
        if handler is None:
            return
        try:
            handler(publication)
        except Exception:
            log.exception("publication handler failed", extra={"user": publication.user_id})

    def _set_state(self, up: bool) -> None:
        if up == self.up:
            return
        self.up = up
        handler = self._on_state
        if handler is None:
            return
        try:
            handler(up)
        except Exception:
            log.exception("broker state handler failed")
