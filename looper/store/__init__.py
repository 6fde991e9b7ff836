"""Storage: one SQL store on SQLite or PostgreSQL; `open_store` picks by the URL."""

from __future__ import annotations

from looper.store.dialect import Dialect
from looper.store.errors import (
    Conflict,
    LeaseLost,
    NotFound,
    SchemaTooNew,
    StoreError,
    StoreUnavailable,
)
from looper.store.sql import Store

__all__ = [
    "Conflict",
    "LeaseLost",
    "NotFound",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]


def dialect_for(url: str) -> Dialect:
    if url.startswith("sqlite:"):
        from looper.store.sqlite import SQLite

        return SQLite(url)
    if url.startswith(("postgresql://", "postgres://")):
        from looper.store.postgres import Postgres

        return Postgres(url)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise StoreError(
        f"TUTOR_DATABASE_URL {url!r} is not usable: expected sqlite:///path.db or "
        f"postgresql://user@host/db (scheme {scheme!r} is not supported)"
    )


async def open_store(url: str) -> Store:
    """The store at `url`, open and up to date; StoreError when that cannot work."""
    store = Store(dialect_for(url))
    await store.open()
    return store
