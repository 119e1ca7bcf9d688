"""Publishing from a backend: ``POST /v1/notifications`` with an admin token.

Every publish carries an idempotency key (a random one unless you give
yours), so a publish retried after a dropped connection or a 503 is stored
once; the server answers a repeat with the first answer and
``"duplicate": true``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import httpx

from tidings.client.base import new_key, server_urls, unreachable_reason
from tidings.client.connection import USER_AGENT, answer
from tidings.client.errors import RequestFailed, ServerUnreachable

RETRY_DELAYS = (0.2, 1.0)
"""Seconds before each retry of a publish that could not be answered."""


def _body(
    to: str | Sequence[str],
    message: str,
    data: dict[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if isinstance(to, str):
        body["userId"] = to
    else:
        body["userIds"] = list(to)
    if data is not None:
        body["data"] = data
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
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Store ``message`` for one user or each of a list, then push it to them."""
        headers = {"Idempotency-Key": idempotency_key or new_key()}
        body = _body(to, message, data)
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
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Store ``message`` for one user or each of a list, then push it to them."""
        headers = {"Idempotency-Key": idempotency_key or new_key()}
        body = _body(to, message, data)
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
