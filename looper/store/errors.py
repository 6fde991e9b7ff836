"""The store's errors: each worth one clear line to the user."""

from __future__ import annotations


class StoreError(Exception):
    """A store problem worth one clear line to the user."""


class NotFound(StoreError):
    """No assistant or thread with that id."""


class Conflict(StoreError):
    """The change would break a uniqueness rule (e.g. a second thread for one place)."""


class LeaseLost(StoreError):
    """Another looper took over the thread; this one must not write its answer."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer tutor than this one."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (down, restarting, refusing connections); trying
    again later may work."""
