"""Every metric tidings exports: name, type, help and labels, declared once.

The collector builds its families from these rows; docs/metrics.md lists
them and a test keeps the two the same. Label values come from closed sets
(below, or the error codes of ``tidings.core.errors``): never a user id, a
topic or a connection id.
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    """The family's name; a counter's samples add ``_total``, a histogram's
    ``_bucket``, ``_count`` and ``_sum``."""
    kind: str
    help: str
    labels: tuple[str, ...] = ()


TRANSPORTS = ("websocket",)
"""The only connection transport today; the label is there for the next one."""

ERROR_TRANSPORTS = ("websocket", "http")
"""Where an error answer went: a WebSocket error frame or an HTTP error body."""

KINDS = ("personal", "list", "topic")
"""A publish to one user, to several (``userIds``), to a topic (``everyone`` included)."""

ERROR_CODES = (
    "bad_request",
    "invalid_route",
    "unauthorized",
    "forbidden",
    "idempotency_conflict",
    "unavailable",
    "rate_limited",
    "internal",
)
"""The codes of ``tidings.core.errors``, exported at 0 from the start on both
transports; the HTTP router's own (``not_found``, ``method_not_allowed``,
``http_error``) appear once counted."""

REPAIR_CAUSES = ("gap", "outage")

LIMITS = (
    "max_connections_per_user",
    "max_frame_bytes",
    "max_fragments",
    "max_fragment_bytes",
    "max_header_bytes",
    "max_headers",
    "max_body_bytes",
    "header_timeout",
    "body_timeout",
    "frame_rate",
    "publish_rate",
    "service_publish_rate",
    "connect_rate_per_ip",
    "connect_rate",
)
"""The settings whose limit refuses something, by their names: sizes,
counts and timeouts, then the rates (``web/throttle.py``)."""

BUILD_INFO = Spec(
    "tidings_build_info",
    GAUGE,
    "Always 1: the version running, its Python, and the store and broker kinds.",
    ("version", "python", "store", "broker"),
)
CONNECTIONS = Spec("tidings_connections", GAUGE, "Connections open on this node.", ("transport",))
HANDSHAKES = Spec(
    "tidings_handshakes", COUNTER, "Handshakes accepted (connections opened).", ("transport",)
)
REFUSALS = Spec(
    "tidings_handshake_refusals",
    COUNTER,
    "Handshakes refused, by reason.",
    ("transport", "reason"),
)
PUBLISHED = Spec(
    "tidings_notifications_published",
    COUNTER,
    "Publish requests stored, by kind (a userIds publish counts once).",
    ("kind",),
)
REPEATS = Spec(
    "tidings_publish_repeats",
    COUNTER,
    "Publish requests answered with the first result of their idempotency key.",
)
DELIVERIES = Spec(
    "tidings_deliveries",
    COUNTER,
    "Live notification frames written to connections by fan-out (catch-up not included).",
)
ACKS = Spec("tidings_acks", COUNTER, "sendNotification actions acknowledged.", ("transport",))
PUBLISH_TO_ACK = Spec(
    "tidings_publish_to_ack_seconds",
    HISTOGRAM,
    "Seconds from a publish to stored and pushed to this node's connections: "
    "what the sender waits for its ack or HTTP answer.",
)
COMMIT_SECONDS = Spec(
    "tidings_store_commit_seconds", HISTOGRAM, "Seconds per group commit of publishes."
)
COMMIT_BATCH = Spec(
    "tidings_store_commit_batch_size", HISTOGRAM, "Publish requests per group commit."
)
REPLAYS = Spec("tidings_catchup_replays", COUNTER, "Connections that asked for a replay (since=).")
REPLAYED = Spec(
    "tidings_catchup_items",
    COUNTER,
    "Notifications written from the store: replays and repairs.",
)
CATCHUP_FAILURES = Spec(
    "tidings_catchup_failures",
    COUNTER,
    "Connections closed with 1011 because the store could not catch them up.",
)
REPAIRS = Spec(
    "tidings_gap_repairs",
    COUNTER,
    "Stream repairs from the store: a seq jump seen (gap), or behind after a broker outage.",
    ("cause",),
)
BROKER_PUBLISHED = Spec(
    "tidings_broker_published", COUNTER, "Publications sent through the broker."
)
BROKER_RECEIVED = Spec("tidings_broker_received", COUNTER, "Publications received from the broker.")
BROKER_FAILURES = Spec(
    "tidings_broker_publish_failures",
    COUNTER,
    "Broker publishes that failed (what they carried was stored; repairs fill in).",
)
BROKER_UP = Spec("tidings_broker_up", GAUGE, "1 while the broker link is up.")
DRAINING = Spec("tidings_draining", GAUGE, "1 once a drain (SIGTERM) has begun.")
SLOW_CONSUMERS = Spec(
    "tidings_slow_consumer_closes",
    COUNTER,
    "Connections closed with 1008: their send buffer passed --send-buffer-limit.",
)
LIMIT_REFUSALS = Spec(
    "tidings_limit_refusals",
    COUNTER,
    "Connections, messages and requests refused by a limit, by the setting.",
    ("limit",),
)
ERRORS = Spec(
    "tidings_errors",
    COUNTER,
    "Error answers (WebSocket error frames, HTTP error bodies), by error code.",
    ("transport", "code"),
)

ALL = (
    BUILD_INFO,
    CONNECTIONS,
    HANDSHAKES,
    REFUSALS,
    PUBLISHED,
    REPEATS,
    DELIVERIES,
    ACKS,
    PUBLISH_TO_ACK,
    COMMIT_SECONDS,
    COMMIT_BATCH,
    REPLAYS,
    REPLAYED,
    CATCHUP_FAILURES,
    REPAIRS,
    BROKER_PUBLISHED,
    BROKER_RECEIVED,
    BROKER_FAILURES,
    BROKER_UP,
    DRAINING,
    SLOW_CONSUMERS,
    LIMIT_REFUSALS,
    ERRORS,
)
