"""The API Gateway compatibility settings, one dataclass (part of ``tidings.config.Settings``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tidings.aws.routes import RouteTable
from tidings.core.errors import ConfigError

DEFAULT_TIMEOUT = 29.0
"""Seconds an integration has to answer: API Gateway's figure."""
DEFAULT_STAGE = "$default"
"""The stage name events carry when no ``--stage`` is set; ``/$default`` is served too."""
SIGNATURE_WINDOW = 15 * 60.0
"""Seconds a SigV4 request's ``X-Amz-Date`` may be off from the server's clock (AWS's figure)."""
MIN_SECRET_KEY_CHARS = 32
_STAGE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ACCESS_KEY = re.compile(r"[A-Za-z0-9_-]{4,128}")


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    routes: RouteTable = field(default_factory=RouteTable.empty)
    integration_timeout: float = DEFAULT_TIMEOUT
    """Seconds a route's integration has to answer before the client gets an error."""
    stage: str | None = None
    """Served as ``/{stage}`` and ``/{stage}/ws`` (WebSocket) and ``/{stage}/@connections``."""
    domain_name: str | None = None
    """``requestContext.domainName``; None: the Host the client connected to."""
    api_id: str = "tidings"
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    """With ``access_key_id``: SigV4-signed ``@connections`` calls are accepted."""

    @property
    def stage_name(self) -> str:
        return self.stage or DEFAULT_STAGE

    @property
    def sigv4(self) -> bool:
        return self.access_key_id is not None and self.secret_access_key is not None

    def validate(self) -> None:
        if self.stage is not None and not _STAGE.fullmatch(self.stage):
            raise ConfigError(
                f"--stage {self.stage!r}: letters, digits, - and _ only (1-128 characters)"
            )
        if not 0 < self.integration_timeout <= 3600:
            raise ConfigError(
                f"--integration-timeout {self.integration_timeout!r}: 0 < seconds <= 3600"
            )
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigError("--aws-access-key-id and --aws-secret-access-key go together")
        if self.access_key_id is not None and not _ACCESS_KEY.fullmatch(self.access_key_id):
            raise ConfigError("--aws-access-key-id: 4-128 letters, digits, - or _")
        if (
            self.secret_access_key is not None
            and len(self.secret_access_key) < MIN_SECRET_KEY_CHARS
        ):
            raise ConfigError(
                f"--aws-secret-access-key must be at least {MIN_SECRET_KEY_CHARS} characters"
            )
