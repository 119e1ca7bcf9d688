"""Publishing from a backend: ``POST /v1/notifications`` with an admin token.

``publish`` reaches one user or a list (one item each); ``broadcast``
reaches a topic's subscribers, or every user (``everyone``), with one stored
item. Every publish carries an idempotency key (a random one unless you give
yours), so a publish retried after a dropped connection or a 503 is stored
once; the server answers a repeat with the first answer and
``"duplicate": true``. ``Publisher`` and ``AsyncPublisher`` differ only in
waiting: the request and its retries are built by the same functions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx

from tidings.client.base import USER_AGENT, answer, new_key, server_urls, unreachable_reason
from tidings.client.errors import RequestFailed, ServerUnreachable

R = TypeVar("R")

PATH = "/v1/notifications"
KEY = "Idempotency-Key"

RETRY_DELAYS = (0.2, 1.0)
"""Seconds before each retry of a publish that could not be answered."""


def _body(
    message: str,
    *,
    to: str | Sequence[str] | None = None,
    topic: str | None = None,
    data: dict[str, Any] | None = None,
    tags: Sequence[str] = (),
    expires_at: datetime | str | None = None,
) -> dict[str, Any]:
    """The JSON body of a publish, to users or to a topic."""
    body: dict[str, Any] = {"message": message}
    if topic is not None:
        body["topic"] = topic
    elif isinstance(to, str):
        body["userId"] = to
    else:
        body["userIds"] = list(to or [])
    if data is not None:
        body["data"] = data
    if tags:
        body["tags"] = list(tags)
    if expires_at is not None:
        body["expiresAt"] = expires_at if isinstance(expires_at, str) else expires_at.isoformat()
    return body


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, ServerUnreachable) or (
        isinstance(exc, RequestFailed) and exc.status == 503
    )


class _Publishing(Generic[R]):
    """What both publishers say; ``R`` is the answer, or an awaitable of it."""

    def __init__(self, url: str, admin_token: str, client: type[Any], timeout: float) -> None:
        self._url = server_urls(url).http
        self._client = client(
            base_url=self._url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {admin_token}", "User-Agent": USER_AGENT},
        )

    def publish(
        self,
        to: str | Sequence[str],
        message: str,
        *,
        data: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        expires_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """Store ``message`` for one user or each of a list, then push it to them.

        ``tags`` (up to 16) and ``expires_at`` (a datetime with a zone, or ISO
        8601) are stored with it."""
        body = _body(message, to=to, data=data, tags=tags, expires_at=expires_at)
        return self._send(body, idempotency_key or new_key())

    def broadcast(
        self,
        message: str,
        *,
        topic: str = "everyone",
        data: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        expires_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """Store ``message`` once in ``topic`` and push it to every subscriber
        (every user for ``everyone``); the answer has the topic's ``seq``."""
        body = _body(message, topic=topic, data=data, tags=tags, expires_at=expires_at)
        return self._send(body, idempotency_key or new_key())

    def _send(self, body: dict[str, Any], key: str) -> R:
        raise NotImplementedError

    def _wait(self, exc: Exception, delay: float | None) -> float:
        """Seconds before retrying after ``exc``; raises it (as the client's error)
        when it is not worth a retry or the retries are spent."""
        if isinstance(exc, httpx.TransportError):
            reason = unreachable_reason(exc)
            exc = ServerUnreachable(f"cannot reach the server at {self._url} ({reason})")
        if delay is None or not _retryable(exc):
            raise exc from None
        return delay


class Publisher(_Publishing[dict[str, Any]]):
    """A synchronous publisher for backends.

    ``Publisher("http://127.0.0.1:8000", admin_token).publish("bob", "hi")``
    returns the server's answer: ``notificationId``, ``createdAt``,
    ``recipients`` (``userId`` and ``seq`` each) and ``duplicate``. Raises
    ``ServerUnreachable`` or ``RequestFailed`` (``Unauthorized`` for a bad token).
    """

    def __init__(self, url: str, admin_token: str, *, timeout: float = 10.0) -> None:
        super().__init__(url, admin_token, httpx.Client, timeout)

    def _send(self, body: dict[str, Any], key: str) -> dict[str, Any]:
        for delay in (*RETRY_DELAYS, None):
            try:
                return answer(self._client.post(PATH, json=body, headers={KEY: key}))  # type: ignore[no-any-return]
            except (httpx.TransportError, RequestFailed) as exc:
                time.sleep(self._wait(exc, delay))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncPublisher(_Publishing[Awaitable[dict[str, Any]]]):
    """``Publisher`` for asyncio code: ``await AsyncPublisher(url, token).publish(...)``."""

    def __init__(self, url: str, admin_token: str, *, timeout: float = 10.0) -> None:
        super().__init__(url, admin_token, httpx.AsyncClient, timeout)

    async def _send(self, body: dict[str, Any], key: str) -> dict[str, Any]:
        for delay in (*RETRY_DELAYS, None):
            try:
                return answer(await self._client.post(PATH, json=body, headers={KEY: key}))  # type: ignore[no-any-return]
            except (httpx.TransportError, RequestFailed) as exc:
                await asyncio.sleep(self._wait(exc, delay))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
