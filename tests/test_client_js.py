"""The JavaScript client (clients/js/tidings.js) under node's test runner, against real servers."""

from __future__ import annotations

import pytest

from tests import node_tests


@pytest.mark.parametrize("name", node_tests.test_names("client.test.mjs"))
def test_client(name: str) -> None:
    node_tests.require_js("ws")
    node_tests.check("client.test.mjs", name)


@pytest.mark.parametrize("name", node_tests.test_names("inbox.test.mjs"))
def test_inbox_and_topics(name: str) -> None:
    node_tests.require_js("ws")
    node_tests.check("inbox.test.mjs", name)
