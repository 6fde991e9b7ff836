"""Pacing: spend Slack's rate limits deliberately instead of collecting 429s.

Slack limits most Web API methods per workspace by tier (calls per minute) and
`chat.postMessage` per channel (about one a second, short bursts allowed). The pacer keeps a
token bucket per method (and per channel for posts) a little stricter than Slack's, so the bot
waits for its own budget; a 429 that still arrives empties the bucket for `Retry-After`.
`conversations.history` and `conversations.replies` follow `HistoryLimit` instead of their tier.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

# Slack's published tiers, in calls per minute (t5 methods are not paced).
TIERS = {"t2": 20, "t3": 50, "t4": 100}
METHOD_TIERS = {
    "chat.startStream": "t2",
    "chat.stopStream": "t2",
    "chat.appendStream": "t4",
    "chat.update": "t3",
    "chat.delete": "t3",
    "chat.postEphemeral": "t4",
    "conversations.replies": "t3",
    "conversations.history": "t3",
    "conversations.info": "t3",
    "users.conversations": "t3",
    "users.info": "t4",
    "views.publish": "t4",
    "assistant.threads.setSuggestedPrompts": "t4",
    "assistant.threads.setTitle": "t4",
}
HISTORY_METHODS = ("conversations.history", "conversations.replies")
FULL_PAGE = 200  # Slack's advice for paged methods
RESTRICTED_PAGE = 15  # what Slack returns at most per call under its restricted history limit
POSTS_PER_SECOND = 1.0
POST_BURST = 2
MARGIN = 0.9  # spend 90% of Slack's rate so clock skew never tips us over


@dataclass(frozen=True)
class HistoryLimit:
    """Slack's limit on reading messages (`conversations.history`, `conversations.replies`).

    Internal apps and Marketplace apps get Tier 3. Other commercially distributed apps get
    1 call a minute and 15 messages a call: any rate below Tier 3 is taken as that regime,
    so calls are spaced evenly (no burst) and pages ask for 15 messages.
    """

    per_minute: int = TIERS["t3"]

    @property
    def restricted(self) -> bool:
        return self.per_minute < TIERS["t3"]

    @property
    def page_size(self) -> int:
        return RESTRICTED_PAGE if self.restricted else FULL_PAGE


@dataclass
class Bucket:
    capacity: float
    per_second: float
    tokens: float
    updated: float

    def wait_time(self, now: float) -> float:
        # `now` may predate the bucket by a moment: a call's clock is read before it is made
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.per_second)
        self.updated = max(self.updated, now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.per_second


class Pacer:
    """Token buckets per Slack method (and per channel for chat.postMessage).

    Slack's limits are per workspace: `replicas` processes sharing one app each spend 1/N.
    """

    def __init__(
        self,
        replicas: int = 1,
        posts_per_second: float = POSTS_PER_SECOND,
        history: HistoryLimit | None = None,
    ) -> None:
        self.share = MARGIN / max(1, replicas)
        self.posts_per_second = posts_per_second
        self.history = history or HistoryLimit()
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self.blocked_until: dict[tuple[str, str], float] = {}

    @staticmethod
    def _key(method: str, channel: str) -> tuple[str, str]:
        return (method, channel if method == "chat.postMessage" else "")

    def _bucket(self, method: str, channel: str) -> Bucket | None:
        key = self._key(method, channel)
        capacity: float
        per_second: float
        if method == "chat.postMessage":
            capacity, per_second = POST_BURST, self.posts_per_second * self.share
        elif method in HISTORY_METHODS:
            per_second = self.history.per_minute * self.share / 60
            capacity = 1 if self.history.restricted else per_second * 60
        elif method in METHOD_TIERS:
            per_minute = TIERS[METHOD_TIERS[method]]
            capacity, per_second = per_minute * self.share, per_minute * self.share / 60
        else:
            return None
        capacity = max(1.0, capacity)
        bucket = self.buckets.get(key)
        if bucket is None:
            now = time.monotonic()
            bucket = self.buckets[key] = Bucket(capacity, per_second, capacity, now)
        return bucket

    def _delay(self, method: str, channel: str, now: float) -> float:
        blocked = self.blocked_until.get(self._key(method, channel), 0.0) - now
        bucket = self._bucket(method, channel)
        return max(blocked, bucket.wait_time(now) if bucket else 0.0)

    async def wait(self, method: str, channel: str = "") -> None:
        """Wait until a call of `method` fits the budget, and spend it."""
        # Budget refills with time, not on an event: sleeping until then is the point.
        while (delay := self._delay(method, channel, time.monotonic())) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        bucket = self._bucket(method, channel)
        if bucket is not None:
            bucket.tokens -= 1

    def try_take(self, *methods: str, channel: str = "") -> bool:
        """Spend one call of each method now if all fit the budget; never waits."""
        now = time.monotonic()
        if any(self._delay(m, channel, now) > 0 for m in methods):
            return False
        for method in methods:
            bucket = self._bucket(method, channel)
            if bucket is not None:
                bucket.tokens -= 1
        return True

    def rate_limited(self, method: str, channel: str, retry_after: float) -> None:
        """Slack said 429: spend nothing on this method until Retry-After has passed."""
        self.blocked_until[self._key(method, channel)] = time.monotonic() + retry_after
        bucket = self._bucket(method, channel)
        if bucket is not None:
            bucket.tokens = 0
