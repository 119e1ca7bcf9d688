"""The inbox tests of ``test_inbox`` again, against a real server on PostgreSQL.

The test functions are the same objects; only the store differs. Every server a
test starts, through the ``server`` fixture or by itself, finds ``TIDINGS_DB``
naming a fresh schema, dropped afterwards.
"""

from __future__ import annotations

from tests import test_inbox as suite
from tests.on_postgres import on_postgres, server

__all__ = ["on_postgres", "server"]


test_pagination_walks_every_notification_once_while_new_ones_arrive = (
    suite.test_pagination_walks_every_notification_once_while_new_ones_arrive
)
test_filters_counts_and_tabs = suite.test_filters_counts_and_tabs
test_counts_stay_exact_under_concurrent_marking_from_two_connections = (
    suite.test_counts_stay_exact_under_concurrent_marking_from_two_connections
)
test_mark_all_up_to_id_leaves_a_racing_newer_notification_unread = (
    suite.test_mark_all_up_to_id_leaves_a_racing_newer_notification_unread
)
test_a_user_cannot_touch_another_users_inbox = suite.test_a_user_cannot_touch_another_users_inbox
test_bad_queries_are_clear_4xx_and_change_nothing = (
    suite.test_bad_queries_are_clear_4xx_and_change_nothing
)
test_erasure_leaves_nothing_and_export_has_everything = (
    suite.test_erasure_leaves_nothing_and_export_has_everything
)
test_retention_hides_expired_at_once_and_the_sweeper_pushes_it = (
    suite.test_retention_hides_expired_at_once_and_the_sweeper_pushes_it
)
test_expired_but_unswept_is_already_invisible = suite.test_expired_but_unswept_is_already_invisible
test_default_ttl_applies_when_no_expiry_is_given = (
    suite.test_default_ttl_applies_when_no_expiry_is_given
)
test_history_fills_a_seq_range = suite.test_history_fills_a_seq_range
