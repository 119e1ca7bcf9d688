"""Prometheus metrics: what tidings exports (``names``), read at scrape time
from the counts the engine keeps (``collector``), served at ``/metrics`` or on
a listener of their own (``exporter``). Only the composition root wires it:
nothing below imports prometheus_client."""

from __future__ import annotations

from tidings.metrics.exporter import MetricsExporter

__all__ = ["MetricsExporter"]
