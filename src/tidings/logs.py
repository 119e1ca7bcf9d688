"""Structured logs: one JSON object per line, tokens redacted.

Pass context with ``extra={"conn": ..., "user": ...}``; every extra field
becomes a key. Anything that looks like ``token=...`` (access log lines carry
query strings), ``Bearer ...`` or ``bearer.<token>`` is replaced before it is
written.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import orjson

_TOKEN = re.compile(r"((?:^|[?&\s])(?:token|access_token)=)[^&\s\"']+", re.IGNORECASE)
_BEARER = re.compile(r"(bearer(?:\s+|\.))[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
"""An ``Authorization: Bearer`` value, or a ``bearer.<token>`` subprotocol."""
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


def redact_url(url: str) -> str:
    """``url`` without its password, fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def redact(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", _TOKEN.sub(r"\1[redacted]", text))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("tidings.ws.protocol").setLevel(logging.WARNING)
