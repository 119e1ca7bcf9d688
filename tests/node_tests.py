"""Run the JavaScript client's ``node --test`` files and report each of their tests to pytest.

Each JS test becomes one pytest test (names are read from the file), so the
project's one test command shows them one by one. A missing Node.js, npm
package or Chromium fails the test in CI (``CI`` set) and skips it elsewhere,
naming what is missing; the Makefile's ``browser-deps`` target installs them.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import missing

JS_DIR = Path(__file__).resolve().parent.parent / "clients" / "js"
TEST_DIR = JS_DIR / "test"
CHROMIUM = Path(os.environ.get("TIDINGS_CHROMIUM", "/usr/bin/chromium"))
_TEST_CALL = re.compile(r"""^\s*test\(\s*(["'])(.+?)\1,""", re.MULTILINE)
_RESULT = re.compile(r"^(\s*)(ok|not ok) \d+ - (.*?)(?: # (SKIP|TODO)\b ?(.*))?$")


@dataclass(frozen=True, slots=True)
class Result:
    passed: bool
    skip: str | None
    details: str


def require(what: str, ok: bool) -> None:
    """Fail (CI) or skip (elsewhere) unless ``ok``."""
    if not ok:
        missing(what, "`make browser-deps` installs it")


def require_js(*packages: str) -> None:
    require("Node.js (node on PATH)", shutil.which("node") is not None)
    for package in packages:
        require(
            f"the npm package {package} in clients/js/node_modules",
            (JS_DIR / "node_modules" / package).is_dir(),
        )


def require_chromium() -> None:
    require(f"Chromium at {CHROMIUM} (Debian package chromium)", CHROMIUM.exists())


def test_names(file: str) -> list[str]:
    """The top-level and nested ``test("name", ...)`` names of a JS test file."""
    return [match[1] for match in _TEST_CALL.findall((TEST_DIR / file).read_text())]


@functools.cache
def run(file: str) -> tuple[dict[str, Result], str]:
    """Run one JS test file once; its results by test name, and the whole output."""
    out = subprocess.run(
        ["node", "--test", "--test-reporter=tap", str(TEST_DIR / file)],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TIDINGS_PYTHON": sys.executable},
    )
    lines = out.stdout.splitlines()
    results: dict[str, Result] = {}
    for i, line in enumerate(lines):
        match = _RESULT.match(line)
        if not match:
            continue
        indent, status, name, directive, reason = match.groups()
        block = []
        for follow in lines[i + 1 :]:
            if _RESULT.match(follow) or follow.startswith(indent + "# Subtest"):
                break
            block.append(follow)
        results[name.replace("\\#", "#")] = Result(
            passed=status == "ok",
            skip=(reason or "skipped") if directive == "SKIP" else None,
            details="\n".join(block),
        )
    return results, out.stdout + out.stderr


def check(file: str, name: str) -> None:
    """Pass, skip or fail as the JS test ``name`` in ``file`` did."""
    results, output = run(file)
    result = results.get(name)
    if result is None:
        pytest.fail(f"{name!r} did not run; node's output:\n{output[-6000:]}", pytrace=False)
    if not result.passed:
        pytest.fail(f"{name!r} failed:\n{result.details}", pytrace=False)
    if result.skip is not None:
        missing(f"what the JS test {name!r} needs", result.skip)
