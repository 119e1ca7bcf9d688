"""Settings: one dataclass, filled from flags and ``TIDINGS_*`` environment variables.

The data directory holds the SQLite file and the signing secret, generated once
(mode 0600) so that ``tidings token`` and ``tidings serve`` agree with no
configuration at all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tidings.aws.settings import GatewaySettings
from tidings.core.errors import ConfigError
from tidings.core.forwarded import TrustedProxies
from tidings.core.keys import Keys
from tidings.core.publish import Limits

MIN_SECRET_CHARS = 32
"""HS256 wants a key of at least 256 bits (RFC 7518, section 3.2)."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tidings"


@dataclass(slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=default_data_dir)
    db: str | None = None
    """Store URL; None means ``sqlite:///<data_dir>/tidings.db``."""
    store_wait: float = 30.0
    """Seconds to wait at start for a store server that does not answer yet
    (PostgreSQL starting with the node); 0: fail at once."""
    broker: str = "memory://"
    secret: str | None = None
    """None means the one kept in the data directory (generated on first use)."""
    old_secrets: tuple[str, ...] = ()
    """Secrets tokens were signed with before ``secret``: still verified (rotation)."""
    jwks_url: str | None = None
    """An identity provider's JWKS: tokens signed with its keys are accepted."""
    token_issuer: str | None = None
    """Required ``iss`` of tokens signed with a JWKS key."""
    token_audience: str | None = None
    """Required in the ``aud`` of tokens signed with a JWKS key."""
    jwks_refresh: float = 300.0
    """Seconds between background fetches of the JWKS."""
    jwks_min_interval: float = 10.0
    """Seconds between fetches of the JWKS for tokens naming an unknown kid."""
    revocation_reload: float = 30.0
    """Seconds between loads of every revocation from the store (a node that
    missed one on the broker applies it then)."""
    token_expiry_notice: float = 60.0
    """Seconds before a connection's token expires that it is told (``tokenExpiring``)."""
    allow_user_id: bool = False
    """Accept the seed's unauthenticated ``?userId=`` (insecure, opt-in)."""
    dev_login: bool = False
    """Serve ``POST /dev/login``: the inbox page signs in by user id (insecure, opt-in)."""
    user_send: str | None = None
    """Whom a user token may send to over the WebSocket: any, self or none.
    None: ``self`` (a stranger cannot fill someone's inbox; backends publish to
    anyone with an admin token), or ``any`` with ``allow_user_id`` or
    ``dev_login`` (the seed's clients and local trials send to each other)."""
    durable: bool = True
    """fsync every commit (SQLite synchronous=FULL); False trades power-loss safety for speed."""
    max_frame_bytes: int = 128 * 1024
    """Client frames over this close the connection with 1009 (the AWS figure)."""
    max_fragments: int = 1024
    """Frames one client message may come in; past it the connection closes with
    1009. Each frame costs the same parsing whatever its size, so without a cap
    a message of empty continuation frames is endless work and never too big."""
    max_fragment_bytes: int = 0
    """Client frames larger than this close with 1009 even within a message of
    allowed size (API Gateway's figure is 32 KiB); 0: no limit per frame."""
    limits: Limits = field(default_factory=Limits)
    ping_interval: float = 20.0
    """Seconds of silence from a client before the server pings it."""
    ping_timeout: float = 20.0
    """Seconds a pinged client has to answer before it is dropped."""
    drain_grace: float = 5.0
    """Seconds between SIGTERM and closing sockets with 1012."""
    send_buffer_limit: int = 4 * 1024 * 1024
    """Bytes queued for one slow client before it is disconnected (1008)."""
    max_connections_per_user: int = 100
    """Open connections one user may have on a node; the next handshake gets 429
    (the newest is refused, the open ones are kept). 0: no limit."""
    frame_rate: float = 100.0
    """Client frames a second per connection (burst: twice that); past it a frame
    is answered with a ``rate_limited`` error, and a client that keeps on is
    closed with 4429. 0: no limit."""
    publish_rate: float = 20.0
    """Notifications a second one user token may send (burst: twice that). 0: no limit."""
    service_publish_rate: float = 10_000.0
    """Publishes a second one admin (service) token may make, HTTP and WebSocket
    together (burst: twice that). 0: no limit."""
    connect_rate_per_ip: float = 50.0
    """New WebSocket connections a second from one client address (burst: twice
    that); past it handshakes get 429 with Retry-After. 0: no limit."""
    connect_rate: float = 2_000.0
    """New WebSocket connections a second on this node, from anyone (burst: twice
    that): a fleet reconnecting at once is spread out. 0: no limit."""
    max_header_bytes: int = 64 * 1024
    """A request head (request line and header fields) over this gets 431."""
    max_headers: int = 100
    """More header fields than this get 431."""
    max_body_bytes: int = 12 * 1024 * 1024
    """A request body over this gets 413, refused from Content-Length before it is
    read. 12 MiB admits the largest valid publish in compact UTF-8 JSON: 10,000
    user ids of 256 four-byte characters (10.3 MB), the longest message and data."""
    header_timeout: float = 10.0
    """Seconds from connecting (or a request's first byte) to a complete request head."""
    body_timeout: float = 30.0
    """Seconds from a request's head to the end of its body; past either, 408."""
    max_incomplete_requests: int = 1024
    """Connections sending a request head that get the full header timeout; more get 1 s."""
    gap_wait: float = 0.05
    """Seconds a node holds an early frame waiting for the one before it."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed for the HTTP API (CORS) and WebSocket handshakes;
    empty: no CORS, any origin may open a WebSocket ("*": any origin, with CORS)."""
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    """Proxies (addresses or networks, "*": any) whose X-Forwarded-For names the client."""
    default_ttl: float = 0
    """Seconds a notification is kept when published without ``expiresAt``; 0: forever."""
    max_stored_per_user: int = 10_000
    """Each user's stream keeps its newest this many notifications (older ones
    go as if expired, checked by the sweeper); 0: no cap, retention only."""
    sweep_interval: float = 1.0
    """Seconds between sweeps of expired notifications."""
    node_ttl: float = 10.0
    """Seconds after a node's last heartbeat (in Redis) before its peers count it dead."""
    log_level: str = "info"
    metrics: bool = True
    """Serve Prometheus metrics at ``/metrics``."""
    metrics_listen: str = ""
    """``host:port`` of a listener serving only the metrics (kept off the
    balancer); empty: ``/metrics`` on the main port."""
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    """API Gateway compatibility: routes to HTTP integrations, stage, SigV4 keys."""

    @property
    def store_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir / 'tidings.db'}"

    @property
    def user_send_policy(self) -> str:
        if self.user_send is not None:
            return self.user_send
        return "any" if self.allow_user_id or self.dev_login else "self"

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """``metrics_listen`` as (host, port); None for the main port."""
        if not self.metrics_listen:
            return None
        host, _, port = self.metrics_listen.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(
                f"--metrics-listen must be HOST:PORT (e.g. 127.0.0.1:9090), "
                f"not {self.metrics_listen!r}"
            )
        return host, int(port)

    @property
    def multi_node(self) -> bool:
        return not self.broker.startswith("memory:")

    def validate(self) -> None:
        if self.user_send not in (None, "any", "self", "none"):
            raise ConfigError(f"--user-send must be any, self or none, not {self.user_send!r}")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"--port must be 0..65535, not {self.port!r}")
        if self.multi_node and not self.secret:
            raise ConfigError(
                "a node with --broker set needs an explicit --secret (or TIDINGS_SECRET) "
                "shared by all nodes"
            )
        if self.secret is not None and len(self.secret) < MIN_SECRET_CHARS:
            raise ConfigError(f"--secret must be at least {MIN_SECRET_CHARS} characters")
        if any(len(old) < MIN_SECRET_CHARS for old in self.old_secrets):
            raise ConfigError(f"each --old-secret must be at least {MIN_SECRET_CHARS} characters")
        if self.jwks_url is not None and urlsplit(self.jwks_url).scheme not in ("http", "https"):
            raise ConfigError(f"--jwks-url must be an http(s):// URL, not {self.jwks_url!r}")
        if self.jwks_url is None and (self.token_issuer or self.token_audience):
            raise ConfigError(
                "--token-issuer and --token-audience check tokens signed with --jwks-url keys; "
                "set --jwks-url too"
            )
        for name in ("ping_interval", "ping_timeout", "drain_grace", "store_wait"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        TrustedProxies(self.forwarded_allow_ips)  # refuses what is not an address
        if self.metrics_address is not None and not self.metrics:
            raise ConfigError("--metrics-listen serves the metrics, which --metrics off turns off")

    def resolve_secret(self) -> str:
        """The explicit secret, or the data directory's (created on first use)."""
        if self.secret:
            return self.secret
        return load_or_create_secret(self.data_dir)

    def resolve_keys(self) -> Keys:
        """Every key tokens are verified with (public ones arrive from the JWKS later)."""
        return Keys.of(
            self.resolve_secret(),
            old=self.old_secrets,
            issuer=self.token_issuer,
            audience=self.token_audience,
        )


def ensure_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"data directory {str(path)!r} is not writable: {exc.strerror}") from None


def load_or_create_secret(data_dir: Path) -> str:
    """Read ``data_dir/secret``, creating it (0600) if absent.

    Written to a private temporary file and hard-linked into place, so two
    processes starting at once agree on one secret and never read a half file.
    """
    ensure_data_dir(data_dir)
    path = data_dir / "secret"
    if not path.exists():
        temp = data_dir / f".secret.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
        except OSError as exc:
            raise ConfigError(f"cannot create secret file {str(path)!r}: {exc.strerror}") from None
        finally:
            temp.unlink(missing_ok=True)
    secret = path.read_text().strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"secret file {str(path)!r} is too short; delete it to regenerate")
    return secret
