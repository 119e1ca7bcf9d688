"""The /inbox page end to end in headless Chromium (Debian's, driven by playwright-core).

The scenarios live in clients/js/test/browser.test.mjs; each starts its own
tidings server processes. In CI a missing Chromium or node_modules fails
these tests; elsewhere they skip, naming what is missing.
"""

from __future__ import annotations

import pytest

from tests import node_tests

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scenario", node_tests.test_names("browser.test.mjs"))
def test_browser(scenario: str) -> None:
    node_tests.require_js("ws", "playwright-core")
    node_tests.require_chromium()
    node_tests.check("browser.test.mjs", scenario)
