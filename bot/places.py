"""How Slack places map to tutor's store keys and thread metadata."""

from __future__ import annotations


def channel_place(channel: str) -> str:
    """The binding key of a channel (`/tutor use`)."""
    return f"slack:{channel}"


def thread_place(team: str, channel: str, thread_ts: str) -> dict[str, str]:
    """A tutor thread's metadata for the Slack thread rooted at `thread_ts`."""
    return {"slack_team": team, "slack_channel": channel, "slack_thread_ts": thread_ts}


def asker(user: str, ts: str, thinking_shown: bool = False) -> dict[str, str]:
    """A user message's metadata: who wrote it, its Slack ts, whether the status shows."""
    metadata = {"slack_user": user, "slack_ts": ts}
    if thinking_shown:
        metadata["slack_status"] = "shown"
    return metadata
