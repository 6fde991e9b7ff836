"""Storage behind one async interface; `open_store` picks the backend from the URL."""

from __future__ import annotations

from looper.store.base import (
    Conflict,
    LeaseLost,
    NotFound,
    SchemaTooNew,
    Store,
    StoreError,
)

__all__ = [
    "Conflict",
    "LeaseLost",
    "NotFound",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "create_store",
    "open_store",
]


def create_store(url: str) -> Store:
    """The backend for `url`, not yet opened."""
    if url.startswith("sqlite:"):
        from looper.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from looper.store.postgres import PostgresStore

        return PostgresStore(url)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise StoreError(
        f"TUTOR_DATABASE_URL {url!r} is not usable: expected sqlite:///path.db or "
        f"postgresql://user@host/db (scheme {scheme!r} is not supported)"
    )


async def open_store(url: str) -> Store:
    store = create_store(url)
    await store.open()
    return store
