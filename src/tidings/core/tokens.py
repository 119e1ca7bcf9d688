"""Identity: HS256 JWTs with ``sub`` (the user id), ``exp`` and optional ``admin``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from tidings.core.errors import AuthError

ALGORITHM = "HS256"
LEEWAY_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    admin: bool = False


def mint(secret: str, user_id: str, *, ttl_seconds: int, admin: bool = False) -> str:
    """A signed token for ``user_id`` that expires in ``ttl_seconds``."""
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": int(time.time()),
        "exp": int(time.time()) + ttl_seconds,
    }
    if admin:
        claims["admin"] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> Identity:
    """The identity a token proves, or ``AuthError`` saying why not (never echoing it)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub or "\x00" in sub or not sub.isprintable():
        raise AuthError("invalid token: sub must be a non-empty printable string")
    return Identity(user_id=sub, admin=claims.get("admin") is True)
