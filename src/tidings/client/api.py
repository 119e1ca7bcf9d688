"""The HTTP API as one user: a lazily opened session whose token is refreshed once on a 401."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tidings.client.base import USER_AGENT, answer, unreachable_reason
from tidings.client.errors import ServerUnreachable

TokenValue = Callable[..., Awaitable[str]]
"""``token(fresh=bool)``: the current token, or a new one from the factory."""


class UserApi:
    def __init__(self, base_url: str, token: TokenValue, *, refreshable: bool) -> None:
        self.base_url = base_url
        self._token = token
        self._refreshable = refreshable
        self._http: httpx.AsyncClient | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """One call; the answer's JSON, or ``RequestFailed``/``Unauthorized``."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.base_url, timeout=10.0, headers={"User-Agent": USER_AGENT}
            )
        query = {k: v for k, v in (params or {}).items() if v is not None}
        for fresh in (False, True):
            token = await self._token(fresh=fresh)
            try:
                response = await self._http.request(
                    method,
                    path,
                    params=query,
                    json=json,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.TransportError as exc:
                raise ServerUnreachable(
                    f"cannot reach the server at {self.base_url} ({unreachable_reason(exc)})"
                ) from None
            if response.status_code == 401 and not fresh and self._refreshable:
                continue
            return answer(response)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
