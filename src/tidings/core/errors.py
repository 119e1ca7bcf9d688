"""One exception tree for the whole service.

TidingsError
 ├── ProtocolError        a client frame we cannot act on (answered, connection kept)
 │    ├── BadRequest        code "bad_request": bad JSON, missing or wrong-typed field
 │    └── InvalidRoute      code "invalid_route": unknown action
 ├── AuthError            no, bad or expired token (HTTP 401)
 ├── Forbidden            authenticated, but not allowed (HTTP 403)
 ├── IdempotencyConflict  a reused idempotency key with a different request (HTTP 409)
 ├── RateLimited          over a rate limit; try again after ``retry_after`` s (HTTP 429)
 ├── Unavailable          the store or the broker cannot be reached (HTTP 503)
 │    └── Unreachable       no server answered at all (refused, timed out, starting
 │                          up): it may yet come, so start-up may wait for it
 └── ConfigError          a setting that cannot work; reported in one line at start-up
"""

from __future__ import annotations

import math


class TidingsError(Exception):
    """Base of every error tidings raises on purpose."""

    code = "internal"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProtocolError(TidingsError):
    """A client frame that cannot be acted on; the reply echoes ``request_id``."""

    status = 400

    def __init__(self, message: str, *, request_id: object = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class BadRequest(ProtocolError):
    code = "bad_request"


class InvalidRoute(ProtocolError):
    code = "invalid_route"


class AuthError(TidingsError):
    code = "unauthorized"
    status = 401


class Forbidden(TidingsError):
    code = "forbidden"
    status = 403


class IdempotencyConflict(TidingsError):
    code = "idempotency_conflict"
    status = 409


class RateLimited(TidingsError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(f"{message}; retry after {retry_after:.3g} s")
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` in whole seconds, rounded up (RFC 9110 allows no fraction)."""
        return str(max(1, math.ceil(self.retry_after)))


class Unavailable(TidingsError):
    code = "unavailable"
    status = 503


class Unreachable(Unavailable):
    """No server answered (refused, timed out, starting up), as opposed to one
    that answered with a refusal (bad password, no such database): only this
    one is worth waiting for."""


class ConfigError(TidingsError):
    code = "config"
