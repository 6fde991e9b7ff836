"""Health and metrics for operators: `tutor run` with TUTOR_HTTP_PORT, read over HTTP the way
a load balancer and a Prometheus server read it."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from fakes.openai_server import FakeOpenAI, Fault
from fakes.slack_server import FakeSlack
from looper.models import ChatCompletionPhysicsTutor, ChatCompletionThread
from looper.settings import DEFAULT_MODEL
from looper.store import Store
from tests.harness import CREATED_DATABASES, Bot, fresh_postgres_database, on_postgres_server
from tests.slack_user import CLASS, STUDENT, ask, wait_answers

PENDING = "tutor_pending_threads"
OLDEST = "tutor_oldest_pending_question_age_seconds"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def poll(check: Callable[[], Any], timeout: float = 20) -> Any:
    """Ask again until `check()` is truthy, and return it."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise TimeoutError("the condition never held")
        time.sleep(0.05)
    return result


def healthz_answers(port: int, status: int) -> dict[str, Any]:
    """Poll /healthz until it answers `status`; its JSON body."""
    found = poll(lambda: (answer := get(port, "/healthz"))[0] == status and answer)
    return dict(json.loads(found[1]))


def scrape(port: int) -> dict[str, float]:
    """Every sample of /metrics, keyed like `name{label="value",…}` (labels sorted)."""
    status, text = get(port, "/metrics")
    assert status == 200
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def scrape_until(port: int, name: str, value: float) -> dict[str, float]:
    """Scrape until sample `name` reaches `value` (answers are committed after Slack shows
    them); the whole scrape."""
    return dict(poll(lambda: (found := scrape(port)).get(name) == value and found))


def test_healthz_follows_the_socket_mode_connection(bot: Bot, fake_slack: FakeSlack) -> None:
    port = free_port()
    bot.start(TUTOR_HTTP_PORT=str(port))
    assert healthz_answers(port, 200) == {"status": "ok", "socket_mode": "connected", "store": "ok"}
    # Slack refuses the first reconnection for 2 s: the bot stays disconnected long enough to
    # be seen, then reconnects by itself.
    fake_slack.fail_next("apps.connections.open", 429, retry_after=2)
    fake_slack.drop_connections()
    assert healthz_answers(port, 503) == {
        "status": "unavailable",
        "reasons": ["Socket Mode is not connected"],
    }
    healthz_answers(port, 200)
    assert fake_slack.connections_made == 2


def test_healthz_says_when_the_store_is_gone(bot: Bot) -> None:
    port = free_port()
    bot.start(TUTOR_HTTP_PORT=str(port), TUTOR_DATABASE_URL=fresh_postgres_database())
    healthz_answers(port, 200)
    on_postgres_server(f'DROP DATABASE "{CREATED_DATABASES[-1]}" WITH (FORCE)')
    [reason] = healthz_answers(port, 503)["reasons"]
    assert reason.startswith("the store does not answer"), reason


def test_metrics_count_a_question_its_retries_and_its_answer(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.add_faults(Fault(status=500))
    fake_slack.fail_next("chat.postMessage", 429, retry_after=1)
    port = free_port()
    bot.start(TUTOR_HTTP_PORT=str(port))
    root = ask(fake_slack, "How did the universe begin?")
    wait_answers(fake_slack, CLASS, root, 1)
    scrape_until(port, "tutor_answers_delivered_total", 1)
    found = scrape(port)  # its backlog read from the store after the answer was committed
    assert found["tutor_questions_received_total"] == 1
    assert found["tutor_answers_failed_total"] == 0
    assert found['tutor_openai_retries_total{reason="transient"}'] == 1
    assert found['tutor_slack_rate_limited_total{method="chat.postMessage"}'] == 1
    tokens = 'tutor_openai_tokens_total{kind="%s",model="' + DEFAULT_MODEL + '"}'
    assert found[tokens % "prompt"] > 0 and found[tokens % "completion"] > 0
    assert found['tutor_answer_cost_dollars_total{model="' + DEFAULT_MODEL + '"}'] > 0
    assert found["tutor_answer_latency_seconds_count"] == 1
    assert found["tutor_answer_latency_seconds_sum"] > 0
    assert (found[PENDING], found[OLDEST]) == (0, 0)


def test_the_backlog_is_read_from_the_store(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """A question being answered is pending; answered or failed, it is not."""
    fake_openai.hold()
    port = free_port()
    bot.start(TUTOR_HTTP_PORT=str(port), TUTOR_RETRY_ATTEMPTS="1")
    root = ask(fake_slack, "How did the universe begin?")
    fake_openai.wait_requests(1)
    held = scrape(port)
    assert held[PENDING] == 1 and held[OLDEST] > 0
    fake_openai.release()
    wait_answers(fake_slack, CLASS, root, 1)
    scrape_until(port, "tutor_answers_delivered_total", 1)
    answered = scrape(port)  # read from the store after the answer was committed
    assert (answered[PENDING], answered[OLDEST]) == (0, 0)

    fake_openai.add_faults(Fault(status=500))
    fake_slack.user_says(STUDENT, CLASS, "what models?", thread_ts=root)
    scrape_until(port, "tutor_answers_failed_total", 1)
    failed = scrape(port)
    assert failed["tutor_questions_received_total"] == 2
    assert (failed[PENDING], failed[OLDEST]) == (0, 0)
    assert failed["tutor_answer_latency_seconds_count"] == 1


def test_a_port_in_use_stops_tutor_in_one_line(bot: Bot) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = bot.cli.run("run", TUTOR_HTTP_PORT=str(port))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"TUTOR_HTTP_PORT {port} is in use by another process" in done.stderr


async def test_pending_summary_counts_only_unanswered_questions(store: Store) -> None:
    assistant = await store.add_assistant(ChatCompletionPhysicsTutor())

    async def asked(content: str, thread_id: str | None = None) -> tuple[str, datetime]:
        """Store a question (in a new thread without `thread_id`); its thread and time."""
        if thread_id is None:
            thread = ChatCompletionThread(assistant_id=assistant.id, chat_completion_model="m")
            thread_id = (await store.add_thread(thread)).id
        message, _ = await store.add_user_message(thread_id, content)
        return thread_id, message.created_at

    assert (await store.pending_summary()).model_dump() == {"threads": 0, "oldest_question": None}
    failed, _ = await asked("asked first, failed")
    answered, _ = await asked("answered")
    for claim in await store.claim_pending("looper", 10, 30):
        if claim.thread.id == failed:
            await store.record_failure(failed, "looper", 1, "OpenAI failed")
        else:
            await store.commit_answer(answered, "looper", 1, "an answer")
    _, oldest = await asked("waiting, in a thread of its own")
    await asked("waiting, under an answer", answered)
    summary = await store.pending_summary()
    assert (summary.threads, summary.oldest_question) == (2, oldest)
