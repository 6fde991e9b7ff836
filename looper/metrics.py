"""What the engine counts for operators, as prometheus_client metrics (default registry).

The engine only counts; a front end serves them (`tutor run` on TUTOR_HTTP_PORT). The two
backlog gauges are read from the store when scraped (`refresh_backlog`), so every replica
reports the same shared backlog: aggregate them with max(), the counters with sum().
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from looper.models import Message, utcnow

if TYPE_CHECKING:
    from looper.models import Usage
    from looper.store import Store

log = logging.getLogger(__name__)
BACKLOG_TIMEOUT = 2.0  # a scrape that hangs on a stuck database is worse than no value

QUESTIONS = Counter(
    "tutor_questions_received",
    "User questions stored by this process (from any front end; a redelivered one counts once)",
)
ANSWERS = Counter("tutor_answers_delivered", "Answers delivered and committed to the store")
FAILURES = Counter(
    "tutor_answers_failed", "Questions settled with a note saying why instead of an answer"
)
BUDGET_REFUSALS = Counter(
    "tutor_budget_refusals", "Questions not sent to the model: a budget was used up", ["budget"]
)
OPENAI_RETRIES = Counter(
    "tutor_openai_retries",
    "OpenAI requests made again: transient (429, 5xx, timeout, dropped stream) or "
    "context (the prompt was too long; sent again with half the history) or images (the "
    "model takes none; sent again as text alone)",
    ["reason"],
)
TOKENS = Counter(
    "tutor_openai_tokens",
    "Tokens used, as the OpenAI stream reports them (prompt and completion)",
    ["model", "kind"],
)
COST = Counter("tutor_answer_cost_dollars", "What answers cost, for models with a price", ["model"])
LATENCY = Histogram(
    "tutor_answer_latency_seconds",
    "Seconds from a question being stored to its answer being committed (the newest question "
    "an answer covers; includes the wait for a free slot or a lease)",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
PENDING_THREADS = Gauge(
    "tutor_pending_threads",
    "Threads with a question not answered yet, including those being answered now "
    "(read from the store at scrape time)",
)
OLDEST_PENDING_AGE = Gauge(
    "tutor_oldest_pending_question_age_seconds",
    "Age of the oldest question not answered yet, 0 when none (read from the store at scrape time)",
)


def answer_committed(messages: list[Message], upto: int) -> None:
    """An answer covering the user messages up to `upto` was committed."""
    ANSWERS.inc()
    question = next((m for m in messages if m.id == upto), None)
    if question is not None:
        LATENCY.observe((utcnow() - question.created_at).total_seconds())


def tokens_used(model: str, usage: Usage) -> None:
    TOKENS.labels(model, "prompt").inc(usage.prompt_tokens)
    TOKENS.labels(model, "completion").inc(usage.completion_tokens)


async def refresh_backlog(store: Store) -> None:
    """Read the backlog gauges from the store; NaN (no value) when it does not answer."""
    try:
        pending = await asyncio.wait_for(store.pending_summary(), BACKLOG_TIMEOUT)
    except Exception:
        log.exception("could not read the backlog for /metrics")
        PENDING_THREADS.set(math.nan)
        OLDEST_PENDING_AGE.set(math.nan)
        return
    PENDING_THREADS.set(pending.threads)
    oldest = pending.oldest_question
    OLDEST_PENDING_AGE.set((utcnow() - oldest).total_seconds() if oldest else 0.0)
