"""What the client SDK raises.

ClientError
 ├── ServerUnreachable   no connection to the server (refused, timed out, DNS)
 └── RequestFailed       the server answered with an error (frame or HTTP)
      └── Unauthorized     the token was refused (401)
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of the SDK's errors; ``message`` is one line fit for a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServerUnreachable(ClientError):
    """The server cannot be reached; nothing was sent."""


class RequestFailed(ClientError):
    """The server refused a request: ``code`` is the protocol's error code."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        request_id: object = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Unauthorized(RequestFailed):
    """No, bad or expired token: get a new one before trying again."""

    def __init__(self, message: str, *, status: int | None = 401) -> None:
        super().__init__("unauthorized", message, status=status)
