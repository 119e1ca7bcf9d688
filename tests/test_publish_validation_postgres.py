"""The wire tests of ``test_publish_validation`` again, on a PostgreSQL-backed server."""

from __future__ import annotations

from tests import test_publish_validation as suite
from tests.on_postgres import on_postgres, server

__all__ = ["on_postgres", "server"]

test_http_publish_of_unstorable_input_is_a_400_and_stores_nothing = (
    suite.test_http_publish_of_unstorable_input_is_a_400_and_stores_nothing
)
test_websocket_send_of_unstorable_input_stores_nothing_and_the_victim_keeps_receiving = (
    suite.test_websocket_send_of_unstorable_input_stores_nothing_and_the_victim_keeps_receiving
)
test_stored_rows_equal_acked_recipients_under_mixed_valid_and_invalid_sends = (
    suite.test_stored_rows_equal_acked_recipients_under_mixed_valid_and_invalid_sends
)
