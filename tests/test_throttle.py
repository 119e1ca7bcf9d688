"""Token buckets and the transports' rate rules, on a clock the test moves."""

from __future__ import annotations

import pytest

from tests.test_handshake import SECRET, decide, refusal
from tidings.config import Settings
from tidings.core.errors import RateLimited
from tidings.core.ratelimit import Bucket, Buckets, Rate
from tidings.core.tokens import Identity, mint
from tidings.web.handshake import HandshakeRefused
from tidings.web.throttle import STRIKES, Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = Bucket(Rate(10), now=0.0)  # burst 20
    assert [bucket.take(0.0) for _ in range(20)] == [0.0] * 20
    wait = bucket.take(0.0)
    assert wait == pytest.approx(0.1)  # one token every 0.1 s
    assert bucket.take(0.05) == pytest.approx(0.05)
    assert bucket.take(0.1) == 0.0
    assert bucket.take(0.1) > 0
    # Refills to the burst, never beyond it.
    assert sum(bucket.take(100.0) == 0.0 for _ in range(25)) == 20


def test_a_fractional_rate_and_an_explicit_burst() -> None:
    bucket = Bucket(Rate(0.5, burst_of=1), now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(2.0)
    assert bucket.take(2.0) == 0.0


def test_buckets_are_per_key_and_full_ones_are_forgotten() -> None:
    buckets = Buckets(Rate(1), sweep_at=4)  # burst 2
    for key in "abcd":
        assert buckets.take(key, 0.0) == 0.0
        assert buckets.take(key, 0.0) == 0.0
        assert buckets.take(key, 0.0) > 0  # each key has its own
    assert len(buckets) == 4
    # At 10 s every bucket is full again: the fifth key sweeps them away.
    assert buckets.take("e", 10.0) == 0.0
    assert len(buckets) == 1
    # Busy keys are kept: a key that is still empty keeps its debt.
    for key in "fgh":
        buckets.take(key, 10.0)
        buckets.take(key, 10.0)
    assert buckets.take("i", 10.0) == 0.0 and buckets.take("f", 10.0) > 0


def test_publishes_are_limited_per_user_and_per_admin_token_apart() -> None:
    clock = Clock()
    throttle = Throttle(
        Settings(publish_rate=1, service_publish_rate=2), clock=clock
    )  # bursts 2 and 4
    alice, bob = Identity(user_id="alice"), Identity(user_id="bob")
    service = Identity(user_id="alice", admin=True)
    throttle.publish(alice)
    throttle.publish(alice)
    with pytest.raises(RateLimited) as caught:
        throttle.publish(alice)
    assert caught.value.status == 429 and caught.value.code == "rate_limited"
    assert caught.value.retry_after == pytest.approx(1.0)
    assert caught.value.retry_after_header == "1"
    assert "retry after 1 s" in caught.value.message
    throttle.publish(bob)  # another user is not affected
    for _ in range(4):
        throttle.publish(service)  # an admin token of the same name counts apart
    with pytest.raises(RateLimited, match="admin token"):
        throttle.publish(service)
    clock.now += 1.0
    throttle.publish(alice)


def test_zero_turns_a_limit_off() -> None:
    off = Throttle(
        Settings(
            publish_rate=0,
            service_publish_rate=0,
            frame_rate=0,
            connect_rate=0,
            connect_rate_per_ip=0,
        )
    )
    for _ in range(10_000):
        off.publish(Identity(user_id="alice"))
        off.connect("10.0.0.1")
    assert off.frames() is None


def test_new_connections_per_address_then_overall() -> None:
    clock = Clock()
    throttle = Throttle(Settings(connect_rate_per_ip=1, connect_rate=3), clock=clock)
    throttle.connect("10.0.0.1")
    throttle.connect("10.0.0.1")
    with pytest.raises(RateLimited, match="from this address"):
        throttle.connect("10.0.0.1")
    for address in ("10.0.0.2", "10.0.0.2", "10.0.0.3", "10.0.0.3"):
        throttle.connect(address)  # the overall burst (6) is now used up
    with pytest.raises(RateLimited, match="to this server"):
        throttle.connect("10.0.0.4")


def test_a_connection_has_its_frames_and_then_its_strikes() -> None:
    clock = Clock()
    allowance = Throttle(Settings(frame_rate=5), clock=clock).frames()
    assert allowance is not None
    assert all(allowance.take(clock.now) == 0.0 for _ in range(10))
    assert allowance.take(clock.now) > 0
    strikes = int(STRIKES.burst)
    assert [allowance.strike(clock.now) for _ in range(strikes + 1)] == [False] * strikes + [True]


def test_the_handshake_is_throttled_by_the_resolved_client_address() -> None:
    token = mint(SECRET, "bob", ttl_seconds=60)
    seen: list[str] = []

    def throttle(address: str) -> None:
        seen.append(address)
        if len(seen) > 1:
            raise RateLimited("too many new connections from this address", retry_after=0.2)

    forwarded = {"x-forwarded-for": "203.0.113.9"}
    assert decide(f"/ws?token={token}", forwarded, peer_ip="127.0.0.1", throttle=throttle)
    with pytest.raises(HandshakeRefused) as caught:
        decide("/ws?token=junk", forwarded, peer_ip="127.0.0.1", throttle=throttle)
    assert seen == ["203.0.113.9", "203.0.113.9"]
    # 429 before the bad token is looked at (401 without the throttle).
    assert (caught.value.status, caught.value.retry_after) == (429, "1")
    assert refusal("/ws?token=junk")[0] == 401
