"""tidings: self-hosted real-time notifications.

Layers, inside out: ``core`` (ids, models, wire protocol, delivery rules; no
I/O), ``store`` and ``broker`` (backends behind small interfaces), ``hub`` and
``node`` (this process's connections and the publish path), ``web`` (WebSocket
and HTTP transports) and ``cli``.
"""

__version__ = "0.1.0"
