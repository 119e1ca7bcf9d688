"""The topic tests of ``test_topics`` again, against a real server on PostgreSQL.

The test functions are the same objects; only the store differs. Every server a
test starts, through the ``server`` fixture or by itself, finds ``TIDINGS_DB``
naming a fresh schema, dropped afterwards.
"""

from __future__ import annotations

from tests import test_topics as suite
from tests.on_postgres import on_postgres, server

__all__ = ["on_postgres", "server"]


test_topic_publish_is_stored_once_and_one_frame_reaches_each_subscriber = (
    suite.test_topic_publish_is_stored_once_and_one_frame_reaches_each_subscriber
)
test_broadcast_to_everyone_reaches_every_connection = (
    suite.test_broadcast_to_everyone_reaches_every_connection
)
test_subscription_starts_now_and_follows_on_every_connection = (
    suite.test_subscription_starts_now_and_follows_on_every_connection
)
test_inbox_merges_personal_and_topic_items_with_independent_state = (
    suite.test_inbox_merges_personal_and_topic_items_with_independent_state
)
test_catch_up_resumes_each_topic_from_its_own_position = (
    suite.test_catch_up_resumes_each_topic_from_its_own_position
)
test_topic_replay_racing_live_publishes_has_no_gap_or_duplicate = (
    suite.test_topic_replay_racing_live_publishes_has_no_gap_or_duplicate
)
test_bad_topic_input_is_refused = suite.test_bad_topic_input_is_refused
test_topic_to_ten_thousand_subscribers = suite.test_topic_to_ten_thousand_subscribers
test_expired_topic_items_leave_every_inbox_and_subscribers_are_told = (
    suite.test_expired_topic_items_leave_every_inbox_and_subscribers_are_told
)
