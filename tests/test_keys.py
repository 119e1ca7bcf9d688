"""Signing keys without I/O: HS256 rotation by kid, JWKS keys and their checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.jwks_server import AUDIENCE, ISSUER, SigningKey
from tidings.core.errors import AuthError
from tidings.core.keys import BadKeySet, Keys, derive_kid
from tidings.core.tokens import Identity, UnknownKey, claims_of, mint, verify

OLD = "o" * 40
NEW = "n" * 40


def test_tokens_are_minted_with_the_current_kid_and_old_kids_still_verify() -> None:
    before = Keys.of(OLD)
    old_token = mint(before, "alice", ttl_seconds=60)
    assert jwt.get_unverified_header(old_token)["kid"] == derive_kid(OLD)
    rotated = Keys.of(NEW, old=[OLD])
    new_token = mint(rotated, "bob", ttl_seconds=60)
    assert jwt.get_unverified_header(new_token)["kid"] == derive_kid(NEW) != derive_kid(OLD)
    assert verify(rotated, old_token) == Identity("alice")
    assert verify(rotated, new_token) == Identity("bob")
    with pytest.raises(AuthError):
        verify(before, new_token)  # the old server does not know the new secret
    with pytest.raises(AuthError):
        verify(Keys.of(NEW), old_token)  # the old secret dropped: its tokens end


def test_tokens_without_kid_or_with_a_foreign_kid_try_each_secret() -> None:
    rotated = Keys.of(NEW, old=[OLD])
    plain = mint(OLD, "carol", ttl_seconds=60)  # minted before kids, or by a backend
    assert "kid" not in jwt.get_unverified_header(plain)
    assert verify(rotated, plain) == Identity("carol")
    claims = {"sub": "dan", "exp": int(time.time()) + 60}
    foreign = jwt.encode(claims, OLD, algorithm="HS256", headers={"kid": "2024-06"})
    assert verify(rotated, foreign) == Identity("dan")
    assert claims_of(rotated, foreign)["sub"] == "dan"


def test_a_kid_of_the_wrong_type_is_refused_as_pyjwt_refuses_it() -> None:
    head = _b64(b'{"alg":"HS256","kid":7}')
    body = _b64(json.dumps({"sub": "eve", "exp": int(time.time()) + 60}).encode())
    mac = hmac.new(NEW.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(AuthError):
        verify(Keys.of(NEW), f"{head}.{body}.{_b64(mac)}")


def test_public_keys_verify_with_issuer_and_audience() -> None:
    rsa, ec = SigningKey("r1", "RS256"), SigningKey("e1", "ES256")
    keys = Keys.of(NEW, issuer=ISSUER, audience=AUDIENCE)
    assert keys.install({"keys": [rsa.jwk, ec.jwk]}) == 2
    assert verify(keys, rsa.token("alice")) == Identity("alice")
    assert verify(keys, ec.token("bob")) == Identity("bob")
    assert verify(keys, rsa.token("x", aud=[AUDIENCE, "account"])).user_id == "x"
    for bad, why in [
        (rsa.token("a", iss="https://evil.example"), "issuer"),
        (rsa.token("a", aud="someone-else"), "audience"),
        (rsa.token("a", ttl=-60), "expired"),
    ]:
        with pytest.raises(AuthError, match=f"(?i){why}"):
            verify(keys, bad)
    # Admin tokens are the server's own: a provider's token is a user's, whatever it claims.
    assert verify(keys, rsa.token("a", admin=True)) == Identity("a", admin=False)
    missing_iss = jwt.encode(
        {"sub": "a", "exp": int(time.time()) + 60, "aud": AUDIENCE},
        rsa.private,
        algorithm="RS256",
        headers={"kid": "r1"},
    )
    with pytest.raises(AuthError, match="iss"):
        verify(keys, missing_iss)


def test_an_unknown_kid_says_so_and_a_key_verifies_only_its_own_algorithms() -> None:
    keys = Keys.of(NEW)
    rsa = SigningKey("r1")
    with pytest.raises(AuthError, match="only HS256"):
        verify(keys, rsa.token("a"))  # no JWKS configured at all
    keys.install({"keys": [rsa.jwk]})
    with pytest.raises(UnknownKey) as unknown:
        verify(keys, SigningKey("r2").token("a"))
    assert unknown.value.kid == "r2"
    # The classic confusion: HS256 "signed" with the public key's PEM as a secret.
    pem = rsa.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = _b64(b'{"alg":"HS256","kid":"r1"}')
    body = _b64(b'{"sub":"admin","exp":9999999999,"admin":true}')
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(AuthError):
        verify(keys, f"{head}.{body}.{_b64(mac)}")
    es_key = SigningKey("r1", "ES256")  # same kid, other key type
    with pytest.raises(AuthError):
        verify(keys, es_key.token("a"))


def test_a_jwks_without_usable_keys_keeps_the_keys_in_use() -> None:
    keys = Keys.of(NEW)
    rsa = SigningKey("r1")
    keys.install({"keys": [rsa.jwk]})
    for bad in [
        {},
        {"keys": "x"},
        {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]},  # symmetric: never
        {"keys": [{**rsa.jwk, "use": "enc"}]},
        {"keys": [{**rsa.jwk, "alg": "HS256"}]},
    ]:
        with pytest.raises(BadKeySet):
            keys.install(bad)
    assert verify(keys, rsa.token("still")) == Identity("still")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
