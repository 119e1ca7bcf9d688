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
