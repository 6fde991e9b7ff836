"""How the looper tells a store outage: a line when the store goes away, a line when it is
back, and polls that back off in between, instead of a traceback every poll."""

from __future__ import annotations

import logging
import time

from looper.store import StoreUnavailable

log = logging.getLogger(__name__)
MAX_DELAY = 30.0


class Outage:
    """Tracks failed polls of the store and says how long to wait before the next one."""

    def __init__(self, poll_interval: float, max_delay: float = MAX_DELAY) -> None:
        self.poll_interval = poll_interval
        self.max_delay = max(max_delay, poll_interval)
        self.failures = 0
        self.since = 0.0

    def failed(self, error: Exception) -> float:
        """Note a failed poll; the seconds to wait before the next (doubling, capped)."""
        if not self.failures:
            self.since = time.monotonic()
            if isinstance(error, StoreUnavailable):
                log.warning("the store went away (%s); trying again less and less often", error)
            else:  # not an outage we know: its traceback, once
                log.exception("could not look for pending threads; trying again less often")
        self.failures += 1
        return min(self.poll_interval * 2.0 ** (self.failures - 1), self.max_delay)

    def succeeded(self) -> float:
        """Note a poll that worked; the seconds to wait before the next."""
        if self.failures:
            away = time.monotonic() - self.since
            log.warning("the store is back after %.0f s (%d failed tries)", away, self.failures)
            self.failures = 0
        return self.poll_interval
