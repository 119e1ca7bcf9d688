"""The /inbox and /admin pages end to end in headless Chromium (Debian's,
driven by playwright-core).

The scenarios live in clients/js/test/browser.test.mjs (the inbox page's
connection), inbox-page.test.mjs (its inbox features) and admin-page.test.mjs
(the operator page); each starts its own tidings server processes. In CI a
missing Chromium or node_modules fails these tests; elsewhere they skip,
naming what is missing.
"""

from __future__ import annotations

import pytest

from tests import node_tests

pytestmark = pytest.mark.slow

FILES = ("browser.test.mjs", "inbox-page.test.mjs", "admin-page.test.mjs")


@pytest.mark.parametrize(
    ("file", "scenario"),
    [(file, name) for file in FILES for name in node_tests.test_names(file)],
)
def test_browser(file: str, scenario: str) -> None:
    node_tests.require_js("ws", "playwright-core")
    node_tests.require_chromium()
    node_tests.check(file, scenario)
