"""RELIABILITY.md names the tests behind each promise: every one it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_named_in_reliability_md_exists() -> None:
    text = (ROOT / "RELIABILITY.md").read_text()
    named = re.findall(r"`(test_\w+\.py)(?:::(\w+))?(?:\[[\w-]+\])?`", text)
    assert len(named) > 10, "RELIABILITY.md should name the tests behind its promises"
    for module, function in named:
        path = ROOT / "tests" / module
        assert path.exists(), f"RELIABILITY.md names {module}, which does not exist"
        if function:
            source = path.read_text()
            assert re.search(rf"^(async )?def {function}\(", source, re.M), (
                f"RELIABILITY.md names {module}::{function}, which does not exist"
            )
