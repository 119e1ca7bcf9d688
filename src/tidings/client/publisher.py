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
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from tidings.client.base import USER_AGENT, answer, new_key, server_urls, unreachable_reason
from tidings.client.errors import RequestFailed, ServerUnreachable

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


class Publisher:
    """A synchronous publisher for backends.

    ``Publisher("http://127.0.0.1:8000", admin_token).publish("bob", "hi")``
    returns the server's answer: ``notificationId``, ``createdAt``,
    ``recipients`` (``userId`` and ``seq`` each) and ``duplicate``. Raises
    ``ServerUnreachable`` or ``RequestFailed`` (``Unauthorized`` for a bad token).
    """

    def __init__(self, url: str, admin_token: str, *, timeout: float = 10.0) -> None:
        self._url = server_urls(url).http
        self._client = httpx.Client(
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
    ) -> dict[str, Any]:
        """Store ``message`` for one user or each of a list, then push it to them.

        ``tags`` (up to 16) and ``expires_at`` (a datetime with a zone, or ISO
        8601) are stored with it."""
        body = _body(message, to=to, data=data, tags=tags, expires_at=expires_at)
        return self._send(body, idempotency_key)

    def broadcast(
        self,
        message: str,
        *,
        topic: str = "everyone",
        data: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        expires_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Store ``message`` once in ``topic`` and push it to every subscriber
        (every user for ``everyone``); the answer has the topic's ``seq``."""
        body = _body(message, topic=topic, data=data, tags=tags, expires_at=expires_at)
        return self._send(body, idempotency_key)

    def _send(self, body: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key or new_key()}
        for delay in (*RETRY_DELAYS, None):
            try:
                return self._post(body, headers)
            except (ServerUnreachable, RequestFailed) as exc:
                if delay is None or not _retryable(exc):
                    raise
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _post(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        try:
            response = self._client.post("/v1/notifications", json=body, headers=headers)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the server at {self._url} ({unreachable_reason(exc)})"
            ) from None
        result: dict[str, Any] = answer(response)
        return result

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncPublisher:
    """``Publisher`` for asyncio code: ``await AsyncPublisher(url, token).publish(...)``."""

    def __init__(self, url: str, admin_token: str, *, timeout: float = 10.0) -> None:
        self._url = server_urls(url).http
        self._client = httpx.AsyncClient(
            base_url=self._url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {admin_token}", "User-Agent": USER_AGENT},
        )

    async def publish(
        self,
        to: str | Sequence[str],
        message: str,
        *,
        data: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        expires_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``Publisher.publish``, awaited."""
        body = _body(message, to=to, data=data, tags=tags, expires_at=expires_at)
        return await self._send(body, idempotency_key)

    async def broadcast(
        self,
        message: str,
        *,
        topic: str = "everyone",
        data: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        expires_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``Publisher.broadcast``, awaited."""
        body = _body(message, topic=topic, data=data, tags=tags, expires_at=expires_at)
        return await self._send(body, idempotency_key)

    async def _send(self, body: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key or new_key()}
        for delay in (*RETRY_DELAYS, None):
            try:
                return await self._post(body, headers)
            except (ServerUnreachable, RequestFailed) as exc:
                if delay is None or not _retryable(exc):
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _post(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        try:
            response = await self._client.post("/v1/notifications", json=body, headers=headers)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the server at {self._url} ({unreachable_reason(exc)})"
            ) from None
        result: dict[str, Any] = answer(response)
        return result

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
