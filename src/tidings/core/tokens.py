"""Identity: JWTs with ``sub`` (the user id), ``exp`` and optional ``admin``,
signed with one of the server's HS256 secrets or an identity provider's
public key (``core/keys.py``).

Every WebSocket handshake checks one, so the common case has a fast path:
a token shaped like the ones ``mint`` makes (header ``alg``/``typ``/``kid`` only,
claims among ``sub``, ``exp``, ``iat``, ``nbf``, ``admin``, ``jti`` as integers and
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
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
from jwt.algorithms import HMACAlgorithm
from jwt.types import Options

from tidings.core.errors import AuthError
from tidings.core.keys import ASYMMETRIC, Keys

ALGORITHM = "HS256"
LEEWAY_SECONDS = 5
SUBPROTOCOL = "tidings.v1"
"""The WebSocket subprotocol a browser offers with ``bearer.<token>`` (it cannot
set headers); the server answers it alone, never the token."""
BEARER_PREFIX = "bearer."

_PYJWT = jwt.PyJWT(options={"require": ["sub", "exp"]})
"""Options merged once, not on every decode."""
_ALGORITHMS = [ALGORITHM]
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_PLAIN_HEADER = frozenset({"alg", "typ", "kid"})
_PLAIN_CLAIMS = frozenset({"sub", "exp", "iat", "nbf", "admin", "jti"})
_HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    admin: bool = False
    expires_at: int | None = field(default=None, compare=False)
    """The token's ``exp`` (Unix seconds): an open connection ends then unless refreshed."""
    issued_at: int | None = field(default=None, compare=False)
    """The token's ``iat``, if it has one (revoking a user revokes what was issued before)."""
    token_id: str | None = field(default=None, compare=False)
    """The token's ``jti``, if it has one (a single token can be revoked by it)."""


class UnknownKey(AuthError):
    """Signed with a public key whose kid is not known (yet): worth fetching the JWKS again."""

    def __init__(self, kid: str | None) -> None:
        super().__init__(f"invalid token: no signing key with kid {str(kid)[:64]!r}")
        self.kid = kid


def mint(keys: Keys | str, user_id: str, *, ttl_seconds: int, admin: bool = False) -> str:
    """A token for ``user_id`` that expires in ``ttl_seconds``, signed with the
    current secret (and its kid, when given ``Keys``)."""
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": int(time.time()),
        "exp": int(time.time()) + ttl_seconds,
        "jti": secrets.token_urlsafe(12),
    }
    if admin:
        claims["admin"] = True
    if isinstance(keys, str):
        return jwt.encode(claims, keys, algorithm=ALGORITHM)
    return jwt.encode(claims, keys.current, algorithm=ALGORITHM, headers={"kid": keys.current_kid})


def without_bearer(subprotocols: str) -> str:
    """A ``Sec-WebSocket-Protocol`` value with its ``bearer.<token>`` entries
    dropped (what may be shown or passed on)."""
    offered = (protocol.strip() for protocol in subprotocols.split(","))
    return ", ".join(p for p in offered if p and not p.startswith(BEARER_PREFIX))


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def verify(keys: Keys | str, token: str) -> Identity:
    """The identity a token proves, or ``AuthError`` saying why not (never echoing
    it); ``UnknownKey`` when it names a public key not fetched yet."""
    if isinstance(keys, str):
        keys = _of_secret(keys)
    claims = _plain_claims(keys, token)
    if claims is None:
        claims = _decode(keys, token)
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub or "\x00" in sub or not sub.isprintable():
        raise AuthError("invalid token: sub must be a non-empty printable string")
    exp, iat, jti = claims.get("exp"), claims.get("iat"), claims.get("jti")
    identity = Identity(
        user_id=sub,
        admin=claims.get("admin") is True,
        expires_at=int(exp) if isinstance(exp, int | float) else None,
        issued_at=int(iat) if isinstance(iat, int | float) else None,
        token_id=jti if isinstance(jti, str) else None,
    )
    if keys.revoked and keys.revoked.revokes(identity):
        raise AuthError("token revoked")
    return identity


async def verify_fresh(keys: Keys, token: str) -> Identity:
    """``verify``, fetching the provider's keys once more when the token names
    a kid not known yet (the refresher limits how often that fetches)."""
    try:
        return verify(keys, token)
    except UnknownKey as exc:
        if keys.refresher is None or not await keys.refresher.refresh(exc.kid):
            raise
    return verify(keys, token)


def claims_of(keys: Keys | str, token: str) -> dict[str, Any]:
    """A token's claims once its signature checks, expired or not (for telling
    an operator about it); ``AuthError`` for anything not signed with ``keys``."""
    return _decode(_of_secret(keys) if isinstance(keys, str) else keys, token, check_exp=False)


def _decode(keys: Keys, token: str, *, check_exp: bool = True) -> dict[str, Any]:
    """The claims of a token pyjwt accepts with one of ``keys``, or ``AuthError``."""
    try:
        header = jwt.get_unverified_header(token)
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm == ALGORITHM:
            return _decode_secret(keys.candidates(kid), token, check_exp)
        if algorithm not in ASYMMETRIC:
            raise AuthError(f"invalid token: algorithm {str(algorithm)[:16]!r} is not accepted")
        if not keys.takes_public_keys:
            raise AuthError("invalid token: only HS256 tokens are accepted (no --jwks-url)")
        key = keys.public_key(kid, algorithm)
        if key is None:
            raise UnknownKey(kid if isinstance(kid, str) else None)
        claims: dict[str, Any] = _PYJWT.decode(
            token,
            key.key,
            algorithms=[algorithm],
            leeway=LEEWAY_SECONDS,
            issuer=keys.issuer,
            audience=keys.audience,
            options={
                "verify_exp": check_exp,
                "verify_aud": keys.audience is not None,
                "require": ["sub", "exp", *(["iss"] if keys.issuer else [])],
            },
        )
        claims.pop("admin", None)  # admin tokens are the server's own, never a provider's
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    return claims


def _decode_secret(secrets: list[str], token: str, check_exp: bool) -> dict[str, Any]:
    """Claims of an HS256 token signed with one of ``secrets`` (tried in order)."""
    options: Options = {"verify_exp": check_exp}
    for secret in secrets[:-1]:
        try:
            claims: dict[str, Any] = _PYJWT.decode(
                token, secret, algorithms=_ALGORITHMS, leeway=LEEWAY_SECONDS, options=options
            )
        except jwt.InvalidSignatureError:
            continue
        return claims
    return _PYJWT.decode(
        token, secrets[-1], algorithms=_ALGORITHMS, leeway=LEEWAY_SECONDS, options=options
    )


@functools.lru_cache(maxsize=8)
def _of_secret(secret: str) -> Keys:
    """``Keys`` of one secret (callers that hold only a string)."""
    return Keys.of(secret)


def _plain_claims(keys: Keys, token: str) -> dict[str, Any] | None:
    """The claims of a valid token of the plain shape, or None: let pyjwt decide.

    Accepts only what pyjwt accepts too: canonical base64url segments, an
    HS256 header, a signature matching the secret of its kid (else the current
    one), compared in constant time, ``exp``
    after now less the leeway, ``iat`` and ``nbf`` (when present) before now
    plus the leeway, a string ``sub`` (and ``jti``). Tokens with other claims
    (``aud``, ``iss``...) or other value types go to pyjwt.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts):
        return None
    head, body, signature = parts
    try:
        header = orjson.loads(_segment(head) or b"")
    except orjson.JSONDecodeError:
        return None
    if (
        not isinstance(header, dict)
        or header.get("alg") != ALGORITHM
        or not _PLAIN_HEADER.issuperset(header)
        or type(header.get("kid", "")) is not str
    ):
        return None
    key = _hmac_key(keys.candidates(header.get("kid"))[0])
    if key is None:
        return None
    expected = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    given = _segment(signature)
    if given is None or not hmac.compare_digest(expected, given):
        return None
    try:
        claims = orjson.loads(_segment(body) or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(claims, dict) or not _PLAIN_CLAIMS.issuperset(claims):
        return None
    now = time.time()
    exp, iat, nbf = claims.get("exp"), claims.get("iat", 0), claims.get("nbf", 0)
    if (
        type(claims.get("sub")) is not str
        or type(claims.get("jti", "")) is not str
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
