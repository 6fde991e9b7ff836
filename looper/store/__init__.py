"""Storage: one SQL store on SQLite or PostgreSQL; `open_store` picks by the URL."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

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
    "masked_url",
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
        f"TUTOR_DATABASE_URL {masked_url(url)!r} is not usable: expected sqlite:///path.db or "
        f"postgresql://user@host/db (scheme {scheme!r} is not supported)"
    )


QUERY_SECRET = re.compile(r"((?:password|passwd|sslpassword)=)[^&]*", re.IGNORECASE)


def masked_url(url: str) -> str:
    """`url` fit to print or log: its password (in the user part or the query) masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: show only its scheme
        return url.split(":", 1)[0] + ":…"
    if password is not None:
        host = parts.netloc.rpartition("@")[2]
        url = url.replace(parts.netloc, f"{parts.username or ''}:***@{host}", 1)
    return QUERY_SECRET.sub(r"\1***", url)


async def open_store(url: str) -> Store:
    """The store at `url`, open and up to date; StoreError when that cannot work."""
    store = Store(dialect_for(url))
    await store.open()
    return store
