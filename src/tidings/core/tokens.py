"""Identity: HS256 JWTs with ``sub`` (the user id), ``exp`` and optional ``admin``.

Every WebSocket handshake checks one, so the common case has a fast path:
a token shaped like the ones ``mint`` makes (header ``alg``/``typ`` only,
claims among ``sub``, ``exp``, ``iat``, ``nbf``, ``admin`` as integers and
strings) is checked here in a few microseconds. Anything else, and every
token this path does not accept (a bad signature, an expired or not yet
valid token), goes through pyjwt, which decides and says why: the fast path
only ever accepts what pyjwt would accept.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from jwt.algorithms import HMACAlgorithm

from tidings.core.errors import AuthError

ALGORITHM = "HS256"
LEEWAY_SECONDS = 5

_PYJWT = jwt.PyJWT(options={"require": ["sub", "exp"]})
"""Options merged once, not on every decode."""
_ALGORITHMS = [ALGORITHM]
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_PLAIN_HEADER = frozenset({"alg", "typ"})
_PLAIN_CLAIMS = frozenset({"sub", "exp", "iat", "nbf", "admin"})
_HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)


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


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def verify(secret: str, token: str) -> Identity:
    """The identity a token proves, or ``AuthError`` saying why not (never echoing it)."""
    claims = _plain_claims(secret, token)
    if claims is None:
        claims = _decode(secret, token)
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub or "\x00" in sub or not sub.isprintable():
        raise AuthError("invalid token: sub must be a non-empty printable string")
    return Identity(user_id=sub, admin=claims.get("admin") is True)


def claims_of(secret: str, token: str) -> dict[str, Any]:
    """A token's claims once its signature checks, expired or not (for telling
    an operator about it); ``AuthError`` for anything not signed with ``secret``."""
    try:
        claims: dict[str, Any] = _PYJWT.decode(
            token, secret, algorithms=_ALGORITHMS, options={"verify_exp": False}
        )
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    return claims


def _decode(secret: str, token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = _PYJWT.decode(
            token, secret, algorithms=_ALGORITHMS, leeway=LEEWAY_SECONDS
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    return claims


def _plain_claims(secret: str, token: str) -> dict[str, Any] | None:
    """The claims of a valid token of the plain shape, or None: let pyjwt decide.

    Accepts only what pyjwt accepts too: canonical base64url segments, an
    HS256 header, a matching signature (compared in constant time), ``exp``
    after now less the leeway, ``iat`` and ``nbf`` (when present) before now
    plus the leeway, a string ``sub``. Tokens with other claims (``aud``,
    ``iss``, ``jti``...) or other value types go to pyjwt.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts):
        return None
    head, body, signature = parts
    key = _hmac_key(secret)
    if key is None:
        return None
    expected = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    given = _segment(signature)
    if given is None or not hmac.compare_digest(expected, given):
        return None
    try:
        header = orjson.loads(_segment(head) or b"")
        claims = orjson.loads(_segment(body) or b"")
    except orjson.JSONDecodeError:
        return None
    if (
        not isinstance(header, dict)
        or header.get("alg") != ALGORITHM
        or not _PLAIN_HEADER.issuperset(header)
        or not isinstance(claims, dict)
        or not _PLAIN_CLAIMS.issuperset(claims)
    ):
        return None
    now = time.time()
    exp, iat, nbf = claims.get("exp"), claims.get("iat", 0), claims.get("nbf", 0)
    if (
        type(claims.get("sub")) is not str
        or type(exp) is not int
        or type(iat) is not int
        or type(nbf) is not int
        or exp <= now - LEEWAY_SECONDS
        or max(iat, nbf) > now + LEEWAY_SECONDS
    ):
        return None
    return claims


@functools.lru_cache(maxsize=8)
def _hmac_key(secret: str) -> bytes | None:
    """The secret as pyjwt's HS256 key, checked once, not per token; None when
    pyjwt refuses it (it looks like an asymmetric key or a JWK)."""
    try:
        return _HS256.prepare_key(secret)
    except jwt.InvalidKeyError:
        return None


def _segment(text: str) -> bytes | None:
    """A base64url segment (no padding) decoded, or None unless canonical."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        return None
    return raw
