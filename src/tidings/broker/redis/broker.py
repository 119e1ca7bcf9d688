"""Redis pub/sub between nodes.

Every node publishes to and subscribes to one channel, ``<prefix>:pub``
(the URL and its ``prefix`` are described in ``link.py``).

Each publication travels as one pub/sub message: an 11-byte header (format
version, user id length, seq), the user id in UTF-8, then the frame bytes
exactly as the publisher built them; the payload is never decoded or
re-encoded on the way. Publishing goes through one sender, like the store's
group commit: whatever concurrent ``publish`` calls queued while the previous
pipeline was in flight goes out as the next pipeline, in call order. So one
node's publications reach every node in the order it sent them, and a burst
costs a few round trips and one connection, not one of each per call.

Redis pub/sub is at most once: while the link is down, messages are lost.
The link reports ``on_state(False)`` when it drops (or stays silent past a
ping), resubscribes, then reports ``on_state(True)`` so the node repairs
what was missed from the store.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Sequence
from typing import Any

from redis.exceptions import AuthenticationError, NoPermissionError

from tidings.batching import GroupCommitter
from tidings.broker.base import Handler, StateHandler
from tidings.broker.redis.link import (
    DEFAULT_BACKOFF,
    LINK_ERRORS,
    Backoff,
    connect,
    hold,
    split_prefix,
    subscribe,
)
from tidings.core.errors import Unavailable
from tidings.core.models import Publication
from tidings.logs import redact_url

log = logging.getLogger("tidings.broker.redis")

HEADER = struct.Struct(">BHHQ")
"""Format version, byte lengths of the user id and of the topic, seq."""

VERSION = 2

REFUSALS = (AuthenticationError, NoPermissionError)
"""Answers from a Redis that is up but will not take this node as configured."""


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
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self.url = url
        self.channel = f"{prefix}:pub"
        self.backoff = backoff
        self.timeout = backoff.timeout
        """Seconds to connect, subscribe or publish before calling Redis unavailable."""
        self.up = False
        self.published = 0
        self.received = 0
        self._client: Any = None
        self._watcher: asyncio.Task[None] | None = None
        self._on_publication: Handler | None = None
        self._on_state: StateHandler | None = None
        self._sender: GroupCommitter[list[bytes], None] = GroupCommitter(self._send)

    @classmethod
    def from_url(cls, url: str) -> RedisBroker:
        url, prefix = split_prefix(url)
        return cls(url, prefix=prefix)

    # -- lifecycle -----------------------------------------------------------

    async def start(self, on_publication: Handler, on_state: StateHandler) -> None:
        """Subscribe before returning, so nothing published afterwards is missed.

        A Redis that cannot be reached now does not stop the node: it starts
        with the link down (``on_state(False)``, readiness says so), serving its
        own connections from the store, and joins the others when Redis
        answers (``on_state(True)``: the node repairs what it missed). A Redis
        that answers with a refusal (bad credentials, no permission to
        subscribe) raises ``Unavailable``: waiting would not change it.
        """
        self._on_publication = on_publication
        self._on_state = on_state
        self._client = connect(self.url, self.timeout)
        try:
            pubsub = await subscribe(self._client, self.channel, self.timeout)
        except REFUSALS as exc:
            await self._client.aclose()
            self._client = None
            raise Unavailable(
                f"Redis at {redact_url(self.url)!r} refused this node: {exc}"
            ) from None
        except LINK_ERRORS as exc:
            pubsub = None
            log.warning(
                "Redis broker unreachable at start; serving this node's connections, retrying",
                extra={"url": redact_url(self.url), "error": str(exc) or type(exc).__name__},
            )
            on_state(False)
        else:
            self.up = True
        link = hold(
            self._client,
            self.channel,
            name="Redis broker",
            on_message=self._deliver,
            on_up=lambda: self._set_state(True),
            on_down=lambda: self._set_state(False),
            backoff=self.backoff,
            pubsub=pubsub,
        )
        self._watcher = asyncio.create_task(link, name="tidings-redis-watcher")

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
        self.published += sum(len(batch) for batch in batches)
        return [None] * len(batches)

    async def ping(self) -> None:
        if not self.up or self._client is None:
            raise Unavailable("Redis broker is down")
        try:
            await asyncio.wait_for(self._client.ping(), self.timeout)
        except LINK_ERRORS as exc:
            raise Unavailable(f"Redis unreachable: {exc or type(exc).__name__}") from None

    # -- receiving -----------------------------------------------------------

    def _deliver(self, message: bytes) -> None:
        try:
            publication = decode(message)
        except ValueError as exc:
            log.error("dropped a broker message that is not ours", extra={"error": str(exc)})
            return
        handler = self._on_publication
        if handler is None:
            return
        self.received += 1
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
