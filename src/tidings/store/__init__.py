"""Storage backends, chosen by URL scheme; a driver is imported only when chosen."""

from __future__ import annotations

from tidings.core.errors import ConfigError
from tidings.store.base import Store


def open_store(url: str, *, durable: bool = True) -> Store:
    """A store for ``url``: ``sqlite:///path`` (default) or ``postgresql://...``."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from tidings.store.sqlite.store import SQLiteStore

        return SQLiteStore.from_url(url, durable=durable)
    if scheme in ("postgres", "postgresql"):
        try:
            from tidings.store.postgres.store import PostgresStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                "PostgreSQL store needs its driver (the postgres extra): "
                f"pip install asyncpg ({exc})"
            ) from None
        store: Store = PostgresStore.from_url(url, durable=durable)
        return store
    raise ConfigError(
        f"unknown store URL scheme {scheme!r} in --db (use sqlite:// or postgresql://)"
    )
