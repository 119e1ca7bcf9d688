"""Revoking tokens while they are in use: by user (every token issued until
now) or by token id (``jti``).

A revocation is stored first (so it outlives restarts and reaches nodes that
start later), then published on the broker: every node adds it to the
revoked set its keys check at each handshake, HTTP call and token refresh,
and closes its open connections that it covers with 4403, within the
broker's delivery time. A node that missed the message (its broker link was
down) loads the store's revocations every ``--revocation-reload`` seconds
(30) and applies what is new.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from tidings.core.errors import BadRequest, Unavailable
from tidings.core.keys import Keys
from tidings.core.models import Publication, iso_ms
from tidings.core.revocation import CHANNEL, TOKEN, USER, Revocation
from tidings.core.tokens import Identity
from tidings.node import Node
from tidings.web.deps import admin
from tidings.web.errors import ErrorResponse

log = logging.getLogger("tidings.revocation")

CLOSE_TOKEN_REVOKED = 4403
REVOKED_REASON = "token revoked"


class Revoker:
    def __init__(self, node: Node, keys: Keys) -> None:
        self.node = node
        self.keys = keys
        node.on_revocation = self._received

    async def load(self) -> int:
        """Apply every stored revocation not known here yet (one a node missed
        on the broker closes its connections now); how many are new."""
        new = 0
        for revocation in await self.node.store.revocations():
            if self.keys.revoked.add(revocation):
                self._close_covered(revocation)
                new += 1
        return new

    async def run(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.load()
            except Unavailable as exc:
                log.warning("cannot load revocations", extra={"error": exc.message})

    async def revoke(self, kind: str, subject: str) -> Revocation:
        """Store, apply here and tell every node; ``Unavailable`` if it cannot be stored."""
        revocation = Revocation(kind, subject, time.time_ns() // 1_000_000)
        await self.node.store.revoke(revocation)
        self._apply(revocation)
        try:
            await self.node.broker.publish([Publication("", 0, revocation.to_bytes(), CHANNEL)])
        except Unavailable as exc:
            log.warning(
                "revocation stored; other nodes load it from the store",
                extra={"kind": kind, "error": exc.message},
            )
        return revocation

    def _received(self, payload: bytes) -> None:
        try:
            revocation = Revocation.from_bytes(payload)
        except (ValueError, TypeError, BadRequest) as exc:
            log.error("unreadable revocation from the broker", extra={"error": str(exc)})
            return
        self._apply(revocation)

    def _apply(self, revocation: Revocation) -> None:
        self.keys.revoked.add(revocation)
        self._close_covered(revocation)

    def _close_covered(self, revocation: Revocation) -> None:
        hub = self.node.hub
        conns = hub.of_user(revocation.subject) if revocation.kind == USER else list(hub)
        closed = 0
        for conn in conns:
            identity = conn.identity
            if identity is not None and revocation.covers(identity):
                conn.close(CLOSE_TOKEN_REVOKED, REVOKED_REASON)
                closed += 1
        if closed:
            log.info("revoked connections closed", extra={"kind": revocation.kind, "count": closed})


class RevocationBody(BaseModel):
    userId: str | None = Field(None, min_length=1, max_length=256)
    """Revoke every token of this user issued until now."""
    tokenId: str | None = Field(None, min_length=1, max_length=256)
    """Revoke the one token with this ``jti``."""


class RevocationAnswer(BaseModel):
    kind: str
    subject: str
    revokedAt: str


def revocation_router(revoker: Revoker) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/revocations",
        status_code=201,
        response_model=RevocationAnswer,
        responses={503: {"model": ErrorResponse, "description": "store unavailable"}},
        tags=["tokens"],
        summary="Revoke a user's tokens issued until now, or one token by its jti (admin)",
    )
    async def revoke(
        body: RevocationBody, who: Annotated[Identity, Depends(admin)]
    ) -> RevocationAnswer:
        """Refused from now on at every handshake, HTTP call and token refresh, on
        every node; open connections they opened are closed with 4403."""
        if (body.userId is None) == (body.tokenId is None):
            raise BadRequest("give exactly one of userId and tokenId")
        kind, subject = (USER, body.userId) if body.userId is not None else (TOKEN, body.tokenId)
        assert subject is not None
        revocation = await revoker.revoke(kind, subject)
        log.info("revoked", extra={"kind": kind, "by": who.user_id})
        return RevocationAnswer(
            kind=kind, subject=subject, revokedAt=iso_ms(revocation.revoked_at_ms)
        )

    return router
