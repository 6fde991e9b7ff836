"""Splitting long answers, and the pacer's budgets."""

from __future__ import annotations

import asyncio
import time

from bot.formatting import split_after_streamed, split_markdown
from bot.pacing import HistoryLimit, Pacer


def test_short_text_is_one_part() -> None:
    assert split_markdown("hello\nworld") == ["hello\nworld"]


def test_split_at_line_ends_within_the_limit() -> None:
    text = "\n".join(f"line {i:03d} " + "x" * 40 for i in range(100))
    parts = split_markdown(text, limit=500)
    assert all(len(p) <= 500 for p in parts)
    assert "\n".join(parts) == text  # nothing lost: parts end where lines end


def test_a_code_block_cut_in_two_is_closed_and_reopened() -> None:
    code = "\n".join(f"print({i})" for i in range(60))
    text = f"Here:\n```python\n{code}\n```\nDone."
    parts = split_markdown(text, limit=200)
    assert len(parts) > 1
    for part in parts:
        assert part.count("```") % 2 == 0, part
    assert parts[1].startswith("```python\n")


def test_one_long_line_is_cut_hard() -> None:
    parts = split_markdown("y" * 2500, limit=1000)
    assert [len(p) for p in parts] == [1000, 1000, 500]


def test_streamed_prefix_stays_in_the_first_part() -> None:
    text = "a" * 300 + "\n" + "b" * 300
    parts = split_after_streamed(text, streamed=450)
    assert parts[0].startswith(text[:450])
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")


def test_pacer_spends_a_tier_and_then_refuses() -> None:
    pacer = Pacer()
    allowed = sum(pacer.try_take("chat.startStream") for _ in range(30))
    assert allowed == 18  # Tier 2 is 20 a minute; the pacer keeps 10% in hand


def test_replicas_share_the_budget() -> None:
    pacer = Pacer(replicas=3)
    assert sum(pacer.try_take("chat.startStream") for _ in range(30)) == 6  # 18 / 3


def test_pacer_posts_per_channel() -> None:
    pacer = Pacer()
    assert pacer.try_take("chat.postMessage", channel="C1")
    assert pacer.try_take("chat.postMessage", channel="C1")
    assert not pacer.try_take("chat.postMessage", channel="C1")
    assert pacer.try_take("chat.postMessage", channel="C2")
    assert pacer.try_take("auth.test")  # Tier 5 methods are not paced


async def test_pacer_waits_out_retry_after() -> None:
    pacer = Pacer()
    pacer.rate_limited("assistant.threads.setStatus", "C1", 0.2)
    assert not pacer.try_take("assistant.threads.setStatus")
    start = time.monotonic()
    await asyncio.wait_for(pacer.wait("assistant.threads.setStatus"), 2)
    assert time.monotonic() - start >= 0.19


def test_history_below_tier_3_is_spaced_evenly_with_small_pages() -> None:
    restricted = Pacer(history=HistoryLimit(20))
    assert [restricted.try_take("conversations.history") for _ in range(3)] == [1, 0, 0]
    assert restricted.try_take("conversations.replies")  # a budget of its own
    assert restricted.history.page_size == 15
    tier_3 = Pacer()
    assert sum(tier_3.try_take("conversations.history") for _ in range(60)) == 45
    assert tier_3.history.page_size == 200
