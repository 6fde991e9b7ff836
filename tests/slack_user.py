"""What a test does as a person in the fake Slack, and reads back from it."""

from __future__ import annotations

from typing import Any

from fakes.slack_server import FakeSlack

CLASS = "C0CLASS001"
STUDENT = "U0STUDENT1"
ADMIN = "U0ADMIN001"
PHYSICS = (
    "You are an acclaimed Physics Tutor for a top rated high school in the Bay Area of "
    "California, USA."
)


def answers(slack: FakeSlack, channel: str, root: str) -> list[dict[str, Any]]:
    """Finished answer messages in a thread, oldest first."""
    return [
        m
        for m in slack.replies(channel, root)
        if (m.get("metadata") or {}).get("event_type") == "tutor_answer" and not m.get("streaming")
    ]


def wait_answers(slack: FakeSlack, channel: str, root: str, count: int) -> list[dict[str, Any]]:
    return list(
        slack.wait_until(
            lambda: len(found := answers(slack, channel, root)) >= count and found, timeout=20
        )
    )


def ask(
    slack: FakeSlack,
    question: str,
    user: str = STUDENT,
    channel: str = CLASS,
    persona: str = "Physics Tutor",
) -> str:
    """/tutor ask (in a channel whose assistant is `persona`); returns the ts of the root
    message the bot posts for it."""
    assert slack.wait_ack(slack.slash(user, channel, f"ask {question}")) == {}
    text = f"<@{user}> asked *{persona}*: {question}"
    found = slack.wait_until(
        lambda: [m for m in slack.messages(channel) if m["text"] == text and is_root(m)]
    )
    return str(found[-1]["ts"])


def is_root(message: dict[str, Any]) -> bool:
    """A root message the bot posted for a conversation started with /tutor."""
    return (message.get("metadata") or {}).get("event_type") == "tutor_thread"


def ephemeral(slack: FakeSlack, user: str, text: str, channel: str = CLASS) -> str:
    """Run a /tutor subcommand and return the ephemeral text it answers with."""
    seen = len(slack.responses)
    ack = slack.wait_ack(slack.slash(user, channel, text))
    if ack.get("text"):
        return str(ack["text"])
    slack.wait_until(lambda: len(slack.responses) > seen)
    response = slack.responses[seen]
    assert response["response_type"] == "ephemeral"
    return str(response["text"])


def user_turns(request_body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request_body["messages"] if m["role"] == "user"]


def error_reply(fake_slack: FakeSlack, channel: str, root: str) -> dict[str, Any]:
    """The first error reply in a thread (it carries the Retry button)."""
    replies: list[dict[str, Any]] = fake_slack.wait_until(
        lambda: [
            m
            for m in fake_slack.replies(channel, root)
            if (m.get("metadata") or {}).get("event_type") == "tutor_error"
        ]
    )
    return replies[0]
