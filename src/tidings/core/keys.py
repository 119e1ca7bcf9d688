"""Every key a token may be signed with: HS256 secrets by ``kid``, and the
public keys of an identity provider's JWKS.

Rotating a secret: the new one becomes ``--secret`` and the old one an
``--old-secret``; tokens are minted with the new kid, and tokens signed with
the old secret keep verifying until it is dropped. A secret's kid is derived
from it (``hs-`` and 12 hex digits of a hash), so every node and the
``tidings token`` command agree on it with nothing more to configure.

Public keys (RS*, PS*, ES*, EdDSA) come from a JWKS document that
``tidings.jwks`` fetches and hands to ``Keys.install``; symmetric keys in a
JWKS are ignored, and a public key only ever verifies the algorithms of its
own type, so a token cannot pick HS256 against a public key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from jwt import PyJWK
from jwt.exceptions import PyJWTError

from tidings.core.revocation import Revocations

KID_PREFIX = "hs-"

_FAMILIES = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512", "ES256K"}),
    "OKP": frozenset({"EdDSA"}),
}
ASYMMETRIC = frozenset().union(*_FAMILIES.values())
"""The algorithms a JWKS key may verify (each key only those of its type)."""


class BadKeySet(ValueError):
    """A JWKS document with no usable public key; the keys in use stay."""


class KeyRefresher(Protocol):
    """Fetches the JWKS again when a token names a kid not seen yet."""

    async def refresh(self, kid: str | None) -> bool:
        """Fetch now unless fetched very recently; whether ``kid`` is known afterwards."""
        ...


def derive_kid(secret: str) -> str:
    """The kid of an HS256 secret: stable, and says nothing usable about it."""
    return KID_PREFIX + hashlib.sha256(b"tidings-kid:" + secret.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class PublicKey:
    key: Any
    """What pyjwt verifies with (a ``cryptography`` public key)."""
    algorithms: frozenset[str]


@dataclass(eq=False, slots=True)
class Keys:
    secrets: dict[str, str]
    """kid -> HS256 secret, the current one first."""
    issuer: str | None = None
    """Required ``iss`` of tokens verified with a public key."""
    audience: str | None = None
    """Required in ``aud`` of tokens verified with a public key."""
    public: dict[str | None, PublicKey] = field(default_factory=dict)
    """kid -> public key from the JWKS (None: a key published without kid)."""
    refresher: KeyRefresher | None = None
    """Set when public keys come from a JWKS URL."""
    revoked: Revocations = field(default_factory=Revocations)
    """Tokens refused whatever their signature (kept current by the node)."""

    @classmethod
    def of(
        cls,
        secret: str,
        *,
        old: Iterable[str] = (),
        issuer: str | None = None,
        audience: str | None = None,
    ) -> Keys:
        secrets = {derive_kid(secret): secret}
        for previous in old:
            secrets.setdefault(derive_kid(previous), previous)
        return cls(secrets, issuer=issuer, audience=audience)

    @property
    def current_kid(self) -> str:
        return next(iter(self.secrets))

    @property
    def current(self) -> str:
        """The secret new tokens are signed with (and cursors derive their key from)."""
        return self.secrets[self.current_kid]

    @property
    def takes_public_keys(self) -> bool:
        return self.refresher is not None or bool(self.public)

    def candidates(self, kid: object) -> list[str]:
        """The secrets an HS256 token with this ``kid`` may be signed with:
        its own when known, else each (tokens minted before kids, or elsewhere)."""
        if isinstance(kid, str) and kid in self.secrets:
            return [self.secrets[kid]]
        return list(self.secrets.values())

    def public_key(self, kid: object, algorithm: str) -> PublicKey | None:
        """The key for ``kid`` if it may verify ``algorithm``; a token without
        kid may use the one key published without kid, or the only key."""
        if kid is None and None not in self.public and len(self.public) == 1:
            key: PublicKey | None = next(iter(self.public.values()))
        else:
            key = self.public.get(kid) if kid is None or isinstance(kid, str) else None
        if key is None or algorithm not in key.algorithms:
            return None
        return key

    def install(self, jwks: object) -> int:
        """Use the public keys of a JWKS document instead of the ones before;
        how many. ``BadKeySet`` (and the old keys kept) when none is usable."""
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list):
            raise BadKeySet('a JWKS is a JSON object with a "keys" list')
        found: dict[str | None, PublicKey] = {}
        for entry in entries:
            key = _public_key(entry)
            if key is not None:
                kid = entry.get("kid")
                found[kid if isinstance(kid, str) else None] = key
        if not found:
            raise BadKeySet("the JWKS has no usable signing key (RSA, EC or OKP)")
        self.public = found
        return len(found)


def _public_key(entry: object) -> PublicKey | None:
    """A JWKS entry as a verifying key, or None: not a public signing key."""
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
        return None
    family = _FAMILIES.get(entry.get("kty"))  # type: ignore[arg-type]
    if family is None or "d" in entry:  # symmetric, unknown, or a private key
        return None
    try:
        jwk = PyJWK(entry)
    except PyJWTError:
        return None
    algorithm = entry.get("alg")
    if algorithm is not None:
        return PublicKey(jwk.key, frozenset({algorithm})) if algorithm in family else None
    if entry["kty"] == "RSA":
        return PublicKey(jwk.key, family)
    return PublicKey(jwk.key, frozenset({jwk.algorithm_name}))
