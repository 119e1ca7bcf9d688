from __future__ import annotations

import time

import jwt
import pytest

from tidings.core.errors import AuthError
from tidings.core.tokens import Identity, mint, verify

SECRET = "s" * 40


def test_round_trip_user_and_admin() -> None:
    assert verify(SECRET, mint(SECRET, "alice", ttl_seconds=60)) == Identity("alice", admin=False)
    assert verify(SECRET, mint(SECRET, "ops", ttl_seconds=60, admin=True)) == Identity("ops", True)


def test_expired_wrong_key_and_garbage_are_refused_without_echo() -> None:
    expired = jwt.encode({"sub": "a", "exp": int(time.time()) - 60}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="expired"):
        verify(SECRET, expired)
    other = mint("o" * 40, "alice", ttl_seconds=60)
    with pytest.raises(AuthError) as info:
        verify(SECRET, other)
    assert other not in info.value.message
    with pytest.raises(AuthError):
        verify(SECRET, "garbage")


def test_missing_exp_or_sub_and_other_algorithms_are_refused() -> None:
    with pytest.raises(AuthError):
        verify(SECRET, jwt.encode({"sub": "a"}, SECRET, algorithm="HS256"))
    with pytest.raises(AuthError):
        verify(SECRET, jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"))
    none_alg = jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(AuthError):
        verify(SECRET, none_alg)


def test_admin_claim_must_be_true_exactly() -> None:
    token = jwt.encode(
        {"sub": "a", "exp": int(time.time()) + 60, "admin": "yes"}, SECRET, algorithm="HS256"
    )
    assert verify(SECRET, token).admin is False


def test_tokens_of_other_shapes_still_verify() -> None:
    now = int(time.time())
    for claims, headers in [
        ({"sub": "a", "exp": now + 60.5}, None),
        ({"sub": "a", "exp": now + 60, "jti": "j1"}, None),
        ({"sub": "a", "exp": now + 60}, {"kid": "k1"}),
    ]:
        token = jwt.encode(claims, SECRET, algorithm="HS256", headers=headers)
        assert verify(SECRET, token) == Identity("a")


def test_a_token_is_accepted_exactly_when_pyjwt_accepts_it() -> None:
    now = int(time.time())
    valid = mint(SECRET, "a", ttl_seconds=60)
    tokens = [valid]
    for claims in (
        {"sub": "a", "exp": now - 3},
        {"sub": "a", "exp": now - 6},
        {"sub": "a", "exp": now + 60, "iat": now + 3},
        {"sub": "a", "exp": now + 60, "iat": now + 30},
        {"sub": "a", "exp": now + 60, "nbf": now + 30},
        {"sub": "a", "exp": True},
        {"sub": 7, "exp": now + 60},
        {"sub": "a", "exp": now + 60, "aud": "x"},
    ):
        tokens.append(jwt.encode(claims, SECRET, algorithm="HS256"))
    head, body, signature = valid.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bits = alphabet[alphabet.index(signature[-1]) ^ 1]  # decodes to the same bytes
    tokens += [
        f"{head}.{body}.{signature[:-1]}{same_bits}",
        f"{head}.{body}.{signature[:-2]}AA",
        f"{head}.{body}x.{signature}",
        f"{head}.{body}.{signature}=",
        f"{head}.{body}",
        f"{head}.{body}.{signature}.{signature}",
        f"{head}.{body}.",
        "a.b.c",
        "",
    ]
    for token in tokens:
        try:
            jwt.decode(
                token, SECRET, algorithms=["HS256"], options={"require": ["sub", "exp"]}, leeway=5
            )
        except jwt.InvalidTokenError:
            expected = False
        else:
            expected = True
        try:
            verify(SECRET, token)
        except AuthError:
            accepted = False
        else:
            accepted = True
        assert accepted == expected, token
