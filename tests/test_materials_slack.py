"""Course materials and the coach style as people meet them in Slack (`tutor run` against
the fake Slack): an admin uploads files in a modal, the model reads them, admins see names and
sizes, and nothing of their text ever reaches any Slack call."""

from __future__ import annotations

import json
from typing import Any

from bot.materials import FILES_ACTION, FILES_BLOCK
from fakes.openai_server import FakeOpenAI
from fakes.slack_server import FakeSlack
from looper.context import COACH
from tests.harness import Bot
from tests.slack_user import ADMIN, CLASS, STUDENT, ask, ephemeral, wait_answers

SECRET = "the answer key says the pendulum period is 2.84 seconds"
NOTES = f"# Pendulum lab\n\nFor the teacher: {SECRET}.\n"


def everything_sent(fake_slack: FakeSlack) -> str:
    """Whatever the bot told Slack: every call, response_url post, view and ack."""
    with fake_slack._lock:
        acks = [e.payload for e in fake_slack.envelopes.values()]
        sent: list[Any] = [
            *(c.args for c in fake_slack.calls),
            *fake_slack.responses,
            *fake_slack.views,
            *fake_slack.home_views.values(),
            *fake_slack.statuses,
            *fake_slack.channels.values(),
        ]
    return json.dumps([sent, [a for a in acks if a.get("type") != "view_submission"]])


def open_modal(fake_slack: FakeSlack, user: str, channel: str) -> dict[str, Any]:
    seen = len(fake_slack.views)
    ack = fake_slack.wait_ack(
        fake_slack.slash(user, channel, "assistant materials add Physics Tutor")
    )
    assert not ack.get("text"), ack
    return dict(
        fake_slack.wait_until(lambda: len(fake_slack.views) > seen and fake_slack.views[-1])
    )


def submit(fake_slack: FakeSlack, user: str, view: dict[str, Any], *files: dict[str, Any]) -> str:
    seen = len(fake_slack.responses)
    chosen = {FILES_BLOCK: {FILES_ACTION: {"type": "file_input", "files": list(files)}}}
    assert fake_slack.wait_ack(fake_slack.submit_view(user, view["id"], chosen)) == {}
    told = fake_slack.wait_until(lambda: len(fake_slack.responses) > seen and fake_slack.responses)
    return str(told[seen]["text"])


def test_an_admin_adds_materials_in_a_modal_and_only_the_model_reads_them(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    bot.cli.ok("assistant", "add")  # the Physics Tutor
    bot.start(TUTOR_ASSISTANT_SECONDS="0")
    dm = fake_slack.dm_of(ADMIN)
    view = open_modal(fake_slack, ADMIN, dm)
    assert view["blocks"][1]["element"]["type"] == "file_input"
    notes = fake_slack.upload_file(ADMIN, "pendulum notes.md", NOTES.encode())
    broken = fake_slack.upload_file(ADMIN, "scan.pdf", b"%PDF-1.4 no pages", "pdf")
    told = submit(fake_slack, ADMIN, view, notes, broken)
    assert "Added pendulum notes.md" in told and f"{len(NOTES.encode())} B" in told
    assert "scan.pdf: not added: scan.pdf is not a readable PDF" in told
    assert fake_slack.responses[-1]["channel"] == dm
    assert fake_slack.downloads == [(notes["id"], 200), (broken["id"], 200)]

    root = ask(fake_slack, "What is the period of the pendulum in the lab?")
    wait_answers(fake_slack, CLASS, root, 1)
    system = fake_openai.requests[-1].body["messages"][0]["content"]
    assert SECRET in system and COACH not in system

    listed = ephemeral(fake_slack, ADMIN, "assistant materials ls Physics Tutor", dm)
    assert "pendulum notes.md" in listed and f"({len(NOTES.encode())} B)" in listed
    assert "only tutor admins" in ephemeral(
        fake_slack, STUDENT, "assistant materials ls Physics Tutor"
    )
    assert "only tutor admins" in ephemeral(
        fake_slack, STUDENT, "assistant materials add Physics Tutor"
    )

    edited = ephemeral(fake_slack, ADMIN, 'assistant edit "Physics Tutor" style coach')
    assert "style coach" in edited
    assert "'socratic' is not a style" in ephemeral(
        fake_slack, ADMIN, "assistant edit Physics Tutor style socratic"
    )
    root = ask(fake_slack, "And how long is one swing of the pendulum?")
    wait_answers(fake_slack, CLASS, root, 1)
    system = fake_openai.requests[-1].body["messages"][0]["content"]
    assert COACH in system and SECRET in system

    material_id = listed.split("`")[1]
    removed = ephemeral(
        fake_slack, ADMIN, f"assistant materials rm Physics Tutor {material_id}", dm
    )
    assert removed == f"Removed pendulum notes.md (`{material_id}`)."
    assert "no materials yet" in ephemeral(
        fake_slack, ADMIN, "assistant materials ls Physics Tutor", dm
    )
    assert "pendulum period" not in everything_sent(fake_slack)
    assert fake_slack.pings() == []


def test_a_submission_from_someone_not_an_admin_adds_nothing(
    bot: Bot, fake_slack: FakeSlack
) -> None:
    bot.cli.ok("assistant", "add")
    bot.start()
    view = open_modal(fake_slack, ADMIN, fake_slack.dm_of(ADMIN))
    notes = fake_slack.upload_file(STUDENT, "notes.md", NOTES.encode())
    assert "only tutor admins" in submit(fake_slack, STUDENT, view, notes)
    assert fake_slack.downloads == []
    assert "no materials yet" in ephemeral(
        fake_slack, ADMIN, "assistant materials ls Physics Tutor"
    )


def test_a_download_slack_refuses_is_one_line(bot: Bot, fake_slack: FakeSlack) -> None:
    bot.cli.ok("assistant", "add")
    bot.start()
    fake_slack.scopes = (fake_slack.scopes or set()) - {"files:read"}
    view = open_modal(fake_slack, ADMIN, fake_slack.dm_of(ADMIN))
    notes = fake_slack.upload_file(ADMIN, "notes.md", NOTES.encode())
    told = submit(fake_slack, ADMIN, view, notes)
    assert told == "• notes.md: not added: download failed: HTTP 403 (no files:read scope?)"
    assert "no materials yet" in ephemeral(
        fake_slack, ADMIN, "assistant materials ls Physics Tutor"
    )
