"""Revoked tokens: every token of a user issued before a moment, or one token by
its ``jti``. Held in memory on every node (loaded from the store, kept in step
through the broker), so checking a token costs a dictionary lookup or two.

A user's revocation covers tokens whose ``iat`` (whole seconds) is before the
revocation's second or in it, and tokens without ``iat``: a token minted in
the same second as the revocation counts as before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from tidings.core.errors import BadRequest

if TYPE_CHECKING:
    from tidings.core.tokens import Identity

USER = "user"
TOKEN = "token"
KINDS = (USER, TOKEN)
CHANNEL = "\x00revocations"
"""The broker topic revocations travel on (no topic a client can name)."""
MAX_SUBJECT_CHARS = 256


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: str
    """``user`` (every token of ``subject`` issued until now) or ``token`` (the ``jti``)."""
    subject: str
    revoked_at_ms: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadRequest(f"a revocation is of a user or a token, not {self.kind!r:.40}")
        if not 0 < len(self.subject) <= MAX_SUBJECT_CHARS or not self.subject.isprintable():
            raise BadRequest(f"the {self.kind} to revoke must be 1 to 256 printable characters")

    def covers(self, identity: Identity) -> bool:
        """Whether this revocation ends a connection of ``identity``."""
        if self.kind == TOKEN:
            return identity.token_id == self.subject
        return identity.user_id == self.subject and _issued_by(identity, self.revoked_at_ms)

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.kind, self.subject, self.revoked_at_ms])

    @classmethod
    def from_bytes(cls, raw: bytes) -> Revocation:
        kind, subject, at = orjson.loads(raw)
        return cls(str(kind), str(subject), int(at))


@dataclass(slots=True)
class Revocations:
    users: dict[str, int] = field(default_factory=dict)
    """user id -> the latest revocation's Unix milliseconds."""
    tokens: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.users or self.tokens)

    def add(self, revocation: Revocation) -> bool:
        """Whether it revokes more than was revoked already."""
        if revocation.kind == TOKEN:
            new = revocation.subject not in self.tokens
            self.tokens.add(revocation.subject)
            return new
        before = self.users.get(revocation.subject, -1)
        self.users[revocation.subject] = max(before, revocation.revoked_at_ms)
        return revocation.revoked_at_ms > before

    def revokes(self, identity: Identity) -> bool:
        if identity.token_id is not None and identity.token_id in self.tokens:
            return True
        at_ms = self.users.get(identity.user_id)
        return at_ms is not None and _issued_by(identity, at_ms)


def _issued_by(identity: Identity, at_ms: int) -> bool:
    """Issued in the revocation's second or before (or when, the token does not say)."""
    return identity.issued_at is None or identity.issued_at <= at_ms // 1000
