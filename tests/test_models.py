from __future__ import annotations

import random
from datetime import UTC, datetime

from tidings.core.models import iso_ms


def test_iso_ms_is_the_utc_instant_to_the_millisecond() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(-1) == "1969-12-31T23:59:59.999Z"
    assert iso_ms(1_795_788_320_123) == "2026-11-27T14:05:20.123Z"
    rng = random.Random(3)
    for _ in range(2000):
        ms = rng.randrange(0, 4_102_444_800_000)
        stamp = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
        assert iso_ms(ms) == stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
