"""Property-based run of schemathesis against the served OpenAPI description.

Checks, for an admin and for a user token: no 5xx ever, every status code and
body is the documented one. Time-bounded; the seed is printed on failure.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import ServerProcess
from tests.services import missing

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def schemathesis() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if found is None:
        missing("schemathesis", "the `st` command is not installed")
    return found


@pytest.mark.parametrize("admin", [True, False], ids=["admin-token", "user-token"])
def test_openapi_fuzzing_finds_no_5xx_and_no_undocumented_answer(
    tmp_path: Path, admin: bool
) -> None:
    st = schemathesis()
    server = ServerProcess(tmp_path / "data", "--log-level", "warning").start()
    try:
        result = subprocess.run(
            [
                st,
                "run",
                f"{server.url}/openapi.json",
                "-H",
                f"Authorization: Bearer {server.token('fuzz', admin=admin)}",
                "--checks",
                CHECKS,
                "--max-time",
                "25",
                "--workers",
                "2",
                "--phases",
                # The coverage phase crashes inside schemathesis on CPython 3.11.7
                # ("AST constructor recursion depth mismatch"), whatever the API.
                "examples,fuzzing",
                "--warnings",
                "off",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=tmp_path,
        )
    finally:
        server.stop()
    tail = result.stdout[-4000:]
    assert result.returncode == 0, tail
    assert "5xx" not in tail and "Server error" not in tail
