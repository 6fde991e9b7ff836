"""No mass mentions through the bot: what people and the model write reaches Slack escaped,
reads the same, and pings no one, through every way the bot posts it. And a Retry click acts
only for people who may see the thread it names."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest

from bot.formatting import WORD_JOINER, markdown_safe, mrkdwn_safe
from fakes.openai_server import FakeOpenAI, Fault
from fakes.slack_server import FakeSlack
from tests.harness import Bot
from tests.slack_user import ADMIN, CLASS, STUDENT, ask, error_reply, is_root, wait_answers
from tests.test_delivery import refuse_streaming

TYPED = "<!channel> <!here> <!everyone> <!subteam^S123> <@U0STUDENT2> & a<b>c"
# As Slack sends what was typed: `&`, `<` and `>` escaped, mentions as tokens.
SLACK_SENDS = "<!channel> <!here> <!everyone> <!subteam^S123> <@U0STUDENT2> &amp; a&lt;b&gt;c"
ELSEWHERE = "C0ELSEWHERE"
STUDENT2 = "U0STUDENT2"
MODEL_SAYS = f"Sure: {TYPED}, and in code `if a<b && <!here>` too.\n" * 3


def says_dangerous_things(fake_openai: FakeOpenAI) -> None:
    fake_openai.answer = lambda body: MODEL_SAYS


def root_of(fake_slack: FakeSlack) -> dict[str, Any]:
    roots: list[dict[str, Any]] = fake_slack.wait_until(
        lambda: [m for m in fake_slack.messages(CLASS) if is_root(m)]
    )
    return roots[0]


def shown(answer: list[dict[str, Any]]) -> str:
    """What the answer's parts read as, joined."""
    return "".join(part["text"] for part in answer).replace(WORD_JOINER, "")


def test_the_echo_of_a_question_pings_no_one(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """The asker's own mentions of people stay; special mentions and user groups do not."""
    bot.start()
    fake_slack.wait_ack(fake_slack.slash(STUDENT, CLASS, f"ask {SLACK_SENDS}"))
    root = root_of(fake_slack)
    wait_answers(fake_slack, CLASS, root["ts"], 1)
    assert root["text"] == (
        f"<@{STUDENT}> asked *Physics Tutor*: &lt;!channel&gt; &lt;!here&gt; &lt;!everyone&gt; "
        "&lt;!subteam^S123&gt; <@U0STUDENT2> &amp; a&lt;b&gt;c"
    )
    assert html.unescape(root["text"]) == f"<@{STUDENT}> asked *Physics Tutor*: {TYPED}"
    assert fake_slack.pings() == []


@pytest.mark.parametrize("delivery", ["streamed", "posted", "updated"])
def test_an_answer_pings_no_one_and_reads_as_written(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI, delivery: str
) -> None:
    says_dangerous_things(fake_openai)
    fake_openai.chunks = 40  # split mid-mention, shown in progress more than once
    fake_openai.chunk_delay = 0.06
    fake_slack.refuse_status = delivery == "updated"
    bot.start()
    if delivery != "streamed":
        refuse_streaming(fake_slack)
    fake_slack.wait_ack(fake_slack.slash(STUDENT, CLASS, "ask what do you say?"))
    answer = wait_answers(fake_slack, CLASS, root_of(fake_slack)["ts"], 1)
    progress = {"streamed": "chat.appendStream", "posted": "chat.postMessage"}
    assert fake_slack.calls_of(progress.get(delivery, "chat.update"))
    assert shown(answer) == MODEL_SAYS
    assert fake_slack.pings() == []
    assert not any("<@" in part["text"] for part in answer)  # the model mentions no one


def test_an_error_reply_pings_no_one(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """OpenAI's own words in an error reply (here: a 400's message) are escaped too."""
    fake_openai.add_faults(Fault(status=400, message=TYPED))
    bot.start()
    fake_slack.wait_ack(fake_slack.slash(STUDENT, CLASS, "ask what do you say?"))
    root = root_of(fake_slack)["ts"]
    error = fake_slack.wait_until(
        lambda: [m for m in fake_slack.replies(CLASS, root) if m.get("blocks")]
    )[0]
    said = error["blocks"][0]["text"]["text"]
    assert html.unescape(said).startswith(":warning: OpenAI refused the request (400)")
    assert html.unescape(said).endswith(TYPED)
    assert "&lt;!channel&gt;" in said and "a&lt;b&gt;c" in said
    assert fake_slack.pings() == []
    assert json.dumps(error).count("<@") == 0


def test_escaping_twice_changes_nothing_and_streamed_prefixes_stay_prefixes() -> None:
    """What Slack escaped already is not escaped again; and however an answer is cut into
    chunks, what was streamed stays the beginning of the whole answer, made safe."""
    assert mrkdwn_safe(SLACK_SENDS) == mrkdwn_safe(TYPED) == mrkdwn_safe(mrkdwn_safe(TYPED))
    whole = markdown_safe(MODEL_SAYS)
    for cut in range(len(MODEL_SAYS)):
        assert whole.startswith(markdown_safe(MODEL_SAYS[:cut]))


def test_retry_only_for_people_who_may_see_the_thread(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """A Retry click naming a thread of another channel acts for its asker or an admin,
    not for someone who only sees the channel the click comes from."""
    fake_openai.add_faults(Fault(status=500), Fault(status=500))
    bot.start(TUTOR_RETRY_ATTEMPTS="1")
    here = error_reply(fake_slack, CLASS, ask(fake_slack, "a question here"))
    elsewhere_root = ask(fake_slack, "a question elsewhere", channel=ELSEWHERE)
    elsewhere = error_reply(fake_slack, ELSEWHERE, elsewhere_root)["blocks"][1]["elements"][0]

    def click(user: str) -> str:
        seen = len(fake_slack.responses)
        fake_slack.click(user, CLASS, here["ts"], "tutor_retry", elsewhere["value"])
        fake_slack.wait_until(lambda: len(fake_slack.responses) > seen)
        return str(fake_slack.responses[seen]["text"])

    assert click(STUDENT2) == "Only people who can see that conversation may retry it."
    assert len(fake_openai.requests) == 2
    assert click(ADMIN) == "Asking again…"
    wait_answers(fake_slack, ELSEWHERE, elsewhere_root, 1)
    assert click(STUDENT) == "That question has been answered already."  # its asker
