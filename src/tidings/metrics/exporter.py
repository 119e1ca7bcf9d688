"""The metrics in Prometheus' text format: rendered for the main port's
``/metrics``, or served by a listener of their own (``--metrics-listen``).

One process per node: the registry is this process's, so prometheus_client's
multiprocess mode is not needed (and not used).
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder, start_http_server
from prometheus_client.registry import CollectorRegistry

from tidings.core.errors import ConfigError
from tidings.metrics.collector import TidingsCollector
from tidings.web.runtime import Runtime


class MetricsExporter:
    """This node's registry: tidings' collector plus the process, platform and
    garbage-collector ones that prometheus_client provides."""

    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(TidingsCollector(runtime))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition for a request's ``Accept`` header (the text format,
        or OpenMetrics when asked for), and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def listen(self, host: str, port: int) -> int:
        """Serve the metrics on ``host:port`` from a thread of their own; the port bound."""
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port} (--metrics-listen): {exc.strerror}"
            ) from None
        bound: int = self._server.server_port
        return bound

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
