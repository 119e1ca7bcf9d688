from __future__ import annotations

import random
import threading

from tidings.core.ids import IdGenerator, encode, floor_id, timestamp_ms


def test_ids_minted_in_one_millisecond_are_distinct_and_ordered() -> None:
    gen = IdGenerator(clock_ms=lambda: 1_700_000_000_000)
    ids = [gen.new() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert ids == sorted(ids)
    assert {timestamp_ms(i) for i in ids} == {1_700_000_000_000}


def test_ids_sort_by_time_and_survive_a_clock_step_back() -> None:
    clock = iter([1000, 2000, 1500, 3000])
    gen = IdGenerator(clock_ms=lambda: next(clock))
    ids = [gen.new() for _ in range(4)]
    assert ids == sorted(ids)
    assert [timestamp_ms(i) for i in ids] == [1000, 2000, 2000, 3000]


def test_random_part_overflow_moves_to_next_millisecond() -> None:
    gen = IdGenerator(clock_ms=lambda: 5, random_bits=lambda: (1 << 81) - 2)
    first, second = gen.new(), gen.new()
    assert first < second
    assert timestamp_ms(second) == 6


def test_ids_from_many_threads_never_collide() -> None:
    gen = IdGenerator()
    out: list[list[str]] = [[] for _ in range(8)]

    def work(bucket: list[str]) -> None:
        bucket.extend(gen.new() for _ in range(2000))

    threads = [threading.Thread(target=work, args=(b,)) for b in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({i for bucket in out for i in bucket}) == 16_000


def test_encoding_is_26_crockford_chars_and_floor_id_bounds_a_millisecond() -> None:
    value = encode(0)
    assert value == "0" * 26
    ulid = IdGenerator(clock_ms=lambda: 123_456).new()
    assert len(ulid) == 26
    assert floor_id(123_456) <= ulid < floor_id(123_457)


def test_encoding_matches_five_bits_per_character() -> None:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    rng = random.Random(5)
    for bits in (1, 5, 48, 80, 128):
        value = rng.getrandbits(bits)
        expected = "".join(alphabet[(value >> (5 * (25 - i))) & 31] for i in range(26))
        assert encode(value) == expected
    draws = iter([rng.getrandbits(80) for _ in range(3)])
    clock = iter([1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_001])
    gen = IdGenerator(clock_ms=lambda: next(clock), random_bits=lambda: next(draws))
    first, second, third = gen.new(), gen.new(), gen.new()
    assert int_of(second) == int_of(first) + 1
    assert timestamp_ms(third) == 1_700_000_000_001
    assert first < second < third


def int_of(ulid: str) -> int:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = 0
    for char in ulid:
        value = value * 32 + alphabet.index(char)
    return value
