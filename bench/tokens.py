"""HS256 JWTs minted with the standard library, so every part of the harness
(and every venv it runs in) can authenticate against tidings and the peers.

Same claims as ``tidings token``: ``sub`` (the user), ``iat``, ``exp`` and
``"admin": true`` for an admin token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


_HEADER = _b64(b'{"alg":"HS256","typ":"JWT"}')


def mint(secret: str, user: str, *, ttl: int = 6 * 3600, admin: bool = False) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": user, "iat": now, "exp": now + ttl}
    if admin:
        claims["admin"] = True
    signing_input = _HEADER + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode()
