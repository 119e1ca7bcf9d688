from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server on the embedded default (SQLite, in-process broker)."""
    proc = ServerProcess(tmp_path / "data", "--allow-user-id", "--drain-grace", "0.2").start()
    yield proc
    proc.stop()
