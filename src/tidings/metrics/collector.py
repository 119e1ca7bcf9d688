"""The Prometheus collector: reads the counts the engine and the transports
keep anyway, at scrape time.

Nothing on the paths that count calls prometheus_client (its metrics take a
lock per increment): the hub, catch-up, node, store, broker and transports
keep plain ints, ``Counter``s of fixed keys and ``core.histogram`` buckets,
and ``collect`` turns them into metric families when Prometheus asks. It
only copies and reads them, so it may run on the exporter's own thread
(``--metrics-listen``) while the event loop goes on counting.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tidings import __version__
from tidings.core.histogram import Histogram
from tidings.metrics import names
from tidings.metrics.names import Spec
from tidings.web.counters import INVALID_UPGRADE, RATE_LIMITED, REFUSAL_REASONS, ROUTE_REFUSED
from tidings.web.runtime import Runtime

K = TypeVar("K", bound=str | tuple[str, ...])

REFUSAL_KEYS = (*REFUSAL_REASONS.values(), RATE_LIMITED, ROUTE_REFUSED, INVALID_UPGRADE)
"""Refusal reasons exported from the start, at 0 until one happens."""


def _counter(spec: Spec, value: float = 0) -> CounterMetricFamily:
    if spec.labels:
        return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    return CounterMetricFamily(spec.name, spec.help, value=value)


def _gauge(spec: Spec, value: float = 0) -> GaugeMetricFamily:
    if spec.labels:
        return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
    return GaugeMetricFamily(spec.name, spec.help, value=value)


def _labelled(
    spec: Spec, counts: Mapping[K, int], known: Iterable[K], *fixed: str
) -> CounterMetricFamily:
    """A labelled counter: every known key (0 until counted), then any other
    counted; ``fixed`` gives the values of the labels before the key's."""
    family = _counter(spec)
    counted = dict(counts)  # one copy: the loop may count meanwhile
    for key in known:
        family.add_metric([*fixed, *_values(key)], counted.pop(key, 0))
    for other, count in sorted(counted.items()):
        family.add_metric([*fixed, *_values(other)], count)
    return family


def _values(key: str | tuple[str, ...]) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else key


def _histogram(spec: Spec, histogram: Histogram) -> HistogramMetricFamily:
    counts = list(histogram.counts)
    total = histogram.sum
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*histogram.bounds, float("inf")), counts, strict=True):
        running += count
        buckets.append((_bound(bound), running))
    return HistogramMetricFamily(spec.name, spec.help, buckets=buckets, sum_value=total)


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _kind(url: str) -> str:
    """The scheme of a store or broker URL, without credentials or host."""
    scheme = url.split(":", 1)[0].lower()
    return "postgresql" if scheme.startswith("postgres") else scheme


class TidingsCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        node, counters, settings = runtime.node, runtime.counters, runtime.settings
        catchup = node.catchup
        websocket = names.TRANSPORTS[0]

        info = _gauge(names.BUILD_INFO)
        info.add_metric(
            [
                __version__,
                platform.python_version(),
                _kind(settings.store_url),
                _kind(settings.broker),
            ],
            1,
        )
        yield info
        connections = _gauge(names.CONNECTIONS)
        connections.add_metric([websocket], len(node.hub))
        yield connections
        handshakes = _counter(names.HANDSHAKES)
        handshakes.add_metric([websocket], counters.handshakes)
        yield handshakes
        yield _labelled(names.REFUSALS, counters.refusals, REFUSAL_KEYS, websocket)
        yield _labelled(names.PUBLISHED, node.published, names.KINDS)
        yield _counter(names.REPEATS, node.repeats)
        yield _counter(names.DELIVERIES, node.hub.deliveries)
        acks = _counter(names.ACKS)
        acks.add_metric([websocket], counters.acks)
        yield acks
        yield _histogram(names.PUBLISH_TO_ACK, node.publish_latency)
        batches = node.store.batches
        yield _histogram(names.COMMIT_SECONDS, batches.latency)
        yield _histogram(names.COMMIT_BATCH, batches.sizes)
        yield _counter(names.REPLAYS, catchup.replays)
        yield _counter(names.REPLAYED, catchup.replayed)
        yield _counter(names.CATCHUP_FAILURES, catchup.failures)
        repairs = {"gap": catchup.gap_repairs, "outage": catchup.outage_repairs}
        yield _labelled(names.REPAIRS, repairs, names.REPAIR_CAUSES)
        yield _counter(names.BROKER_PUBLISHED, node.broker.published)
        yield _counter(names.BROKER_RECEIVED, node.broker.received)
        yield _counter(names.BROKER_FAILURES, node.broker_failures)
        yield _gauge(names.BROKER_UP, 1 if node.broker_up else 0)
        yield _gauge(names.DRAINING, 1 if node.draining else 0)
        yield _counter(names.SLOW_CONSUMERS, counters.slow_consumers)
        yield _labelled(names.LIMIT_REFUSALS, counters.limits, names.LIMITS)
        known = [(t, c) for t in names.ERROR_TRANSPORTS for c in names.ERROR_CODES]
        yield _labelled(names.ERRORS, counters.errors, known)
