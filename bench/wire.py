"""What the load generator puts on the wire: dialect names and the payload."""

from __future__ import annotations

import time
from typing import Any

TIDINGS = "tidings"
"""tidings' JSON frames (the bare picows and websockets peers speak them too)."""
SOCKETIO = "socketio"
"""Engine.IO 4 / Socket.IO 5 packets straight over a WebSocket."""

MESSAGE = "Benchmark notification: your report is ready, open it when you have a minute."
PAD = "x" * 64


def payload(index: int) -> dict[str, Any]:
    """About 200 bytes of JSON (message + data), stamped with the send time.

    ``ts`` is ``time.monotonic_ns()`` of the sending process; the receiver is
    the same process, so latency needs no clock agreement.
    """
    return {"message": MESSAGE, "data": {"ts": time.monotonic_ns(), "i": index, "pad": PAD}}
