"""Files in questions: `tutor run` against the fake Slack (files served at private URLs to the
bot token only) and the fake OpenAI (content parts recorded, image input refused on demand);
the store keeping attachments on both backends; image sizes and their tokens."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from fakes.openai_server import FakeOpenAI
from fakes.slack_server import BOT_USER, FakeSlack
from looper.context import fit, to_chat
from looper.images import data_url_tokens, image_size, image_tokens
from looper.models import (
    Attachment,
    BaseAssistant,
    ChatCompletionThread,
    Message,
    NewMessage,
    Snapshot,
)
from looper.store import Store, open_store
from looper.tokens import PER_MESSAGE, TokenCounter
from tests.harness import Bot, Cli, new_store_url
from tests.slack_user import CLASS, STUDENT, ask, wait_answers

PY_SOURCE = "def period(length):\n    return 2 * 3.14159 * (length / 9.81) ** 0.5\n"
PDF_TEXT = "The lab measures g with a pendulum."


def png(width: int, height: int) -> bytes:
    """A real PNG of one grey colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)))
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def pdf(text: str) -> bytes:
    """A real one-page PDF showing `text` in Helvetica."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    content = DecodedStreamObject()
    content.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
    page[NameObject("/Contents")] = writer._add_object(content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def jpeg_header(width: int, height: int) -> bytes:
    """A JPEG's start: SOI, a JFIF APP0 segment, then the baseline frame stating the size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof


def last_user_content(fake_openai: FakeOpenAI) -> Any:
    return [m for m in fake_openai.requests[-1].body["messages"] if m["role"] == "user"][-1][
        "content"
    ]


def postings(fake_slack: FakeSlack) -> list[dict[str, Any]]:
    return [c.args for c in fake_slack.calls_of("chat.postEphemeral")]


# ---- in Slack


def test_image_text_file_and_pdf_reach_the_model(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    bot.start()
    root = ask(fake_slack, "How long is a pendulum's period?")
    wait_answers(fake_slack, CLASS, root, 1)
    picture = png(40, 30)
    files = [
        fake_slack.upload("setup.png", picture, "image/png", "png"),
        fake_slack.upload("period.py", PY_SOURCE.encode(), "text/x-python", "python"),
        fake_slack.upload("lab.pdf", pdf(PDF_TEXT), "application/pdf", "pdf"),
    ]
    fake_slack.user_says(STUDENT, CLASS, "is my code right?", thread_ts=root, files=files)
    wait_answers(fake_slack, CLASS, root, 2)

    text, label, image = last_user_content(fake_openai)
    assert text["type"] == "text" and text["text"].startswith("is my code right?\n\n")
    assert f"File period.py:\n```py\n{PY_SOURCE}```" in text["text"]
    assert f"File lab.pdf:\n```\n{PDF_TEXT}\n```" in text["text"]
    assert label == {"type": "text", "text": "Attached image: setup.png"}
    encoded = base64.b64encode(picture).decode()
    assert image == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}}
    assert sorted(status for _, status in fake_slack.downloads) == [200, 200, 200]
    assert not postings(fake_slack)  # nothing left out, nothing to say


def test_a_dm_of_files_alone_is_a_question(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    bot.start()
    dm = fake_slack.dm_of(STUDENT)
    notes = fake_slack.upload("notes.md", b"# Forces\nF = ma\n", "text/markdown", "markdown")
    asked = fake_slack.user_says(STUDENT, dm, "", files=[notes])
    wait_answers(fake_slack, dm, asked, 1)
    assert last_user_content(fake_openai) == "File notes.md:\n```md\n# Forces\nF = ma\n```"


def test_files_left_out_are_told_in_one_line(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """Too large (by what Slack states, never downloaded), an unsupported type (never
    downloaded), a failed download, and more than five files: one ephemeral line names each
    with why; the rest is asked. Files that leave nothing to ask ask nothing."""
    bot.start(TUTOR_MAX_FILE_MB="1")
    root = ask(fake_slack, "What is work?")
    wait_answers(fake_slack, CLASS, root, 1)
    big = fake_slack.upload("big.png", png(8, 8), "image/png", "png", stated_size=3_000_000)
    archive = fake_slack.upload("lab.zip", b"PK\x03\x04", "application/zip", "zip")
    broken = fake_slack.upload("broken.txt", b"lost", "text/plain", "text")
    fake_slack.broken_downloads.add(broken["id"])
    good = [
        fake_slack.upload(f"part{n}.txt", f"part {n}".encode(), "text/plain", "text")
        for n in range(4)
    ]
    files = [big, archive, broken, *good]
    fake_slack.user_says(STUDENT, CLASS, "see attached", thread_ts=root, files=files)
    wait_answers(fake_slack, CLASS, root, 2)

    [told] = postings(fake_slack)
    assert told["user"] == STUDENT and told["thread_ts"] == root
    assert told["text"] == (
        "Not read: big.png (too large: 3.0 MB, the limit is 1.0 MB); lab.zip (unsupported "
        "type zip); broken.txt (download failed: HTTP 500); part2.txt (too many files: at "
        "most 5); part3.txt (too many files: at most 5)."
    )
    asked = last_user_content(fake_openai)
    assert "part 0" in asked and "part 1" in asked and "part 2" not in asked
    downloaded = {file_id for file_id, _ in fake_slack.downloads}
    assert downloaded == {broken["id"], good[0]["id"], good[1]["id"]}

    fake_slack.user_says(STUDENT, CLASS, "", thread_ts=root, files=[archive])
    fake_slack.wait_until(lambda: len(postings(fake_slack)) == 2)
    assert postings(fake_slack)[1]["text"] == "Not read: lab.zip (unsupported type zip)."
    fake_slack.user_says(STUDENT, CLASS, "and power?", thread_ts=root)
    wait_answers(fake_slack, CLASS, root, 3)
    assert len(fake_openai.requests) == 3  # the files-only message asked nothing
    users = [m["content"] for m in fake_openai.requests[-1].body["messages"] if m["role"] == "user"]
    assert users[-1] == "and power?" and "" not in users


def test_download_needs_the_bot_token(fake_slack: FakeSlack) -> None:
    """The private URL gives the file to the bot token only (the bot's own reads are above)."""
    import urllib.error
    import urllib.request

    file = fake_slack.upload("a.txt", b"secret", "text/plain", "text")
    for headers in ({}, {"Authorization": "Bearer xoxb-someone-else"}):
        request = urllib.request.Request(file["url_private_download"], headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 401
    assert fake_slack.downloads == [(file["id"], 401), (file["id"], 401)]


@pytest.mark.parametrize("style", ["openai", "llama.cpp"])
def test_a_model_without_images_answers_from_the_text(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI, style: Any
) -> None:
    fake_openai.refuses_images = style
    bot.start()
    picture = fake_slack.upload("graph.png", png(20, 20), "image/png", "png")
    mention = fake_slack.user_says(
        STUDENT, CLASS, f"<@{BOT_USER}> what does this graph show?", files=[picture]
    )
    [answer] = wait_answers(fake_slack, CLASS, mention, 1)
    assert answer["text"].endswith(
        "_(the model could not take the images, so this answer is from the text alone)_"
    )
    refused, retried = fake_openai.requests  # once without images, not retried as a 500
    assert refused.status == (500 if style == "llama.cpp" else 400) and retried.status == 200
    assert [m["content"] for m in retried.body["messages"] if m["role"] == "user"] == [
        "what does this graph show?\n\nAttached image: graph.png (not shown)"
    ]


def test_attachments_survive_a_restart(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """The answer a new process gives still shows the model the image an earlier one read;
    a file shared while no process ran is read by the catch-up."""
    bot.start()
    root = ask(fake_slack, "What is a vector?")
    wait_answers(fake_slack, CLASS, root, 1)
    picture = png(16, 16)
    upload = fake_slack.upload("arrows.png", picture, "image/png", "png")
    fake_slack.user_says(STUDENT, CLASS, "these arrows?", thread_ts=root, files=[upload])
    wait_answers(fake_slack, CLASS, root, 2)
    assert bot.stop() == 0
    table = fake_slack.upload("sums.csv", b"a,b,sum\n1,2,3\n", "text/csv", "csv")
    fake_slack.user_says(STUDENT, CLASS, "and their sum?", thread_ts=root, files=[table])
    bot.start()
    wait_answers(fake_slack, CLASS, root, 3)
    users = [m["content"] for m in fake_openai.requests[-1].body["messages"] if m["role"] == "user"]
    encoded = base64.b64encode(picture).decode()
    assert users[1][-1]["image_url"]["url"] == f"data:image/png;base64,{encoded}"
    assert users[2] == "and their sum?\n\nFile sums.csv:\n```csv\na,b,sum\n1,2,3\n```"
    assert [file_id for file_id, _ in fake_slack.downloads] == [upload["id"], table["id"]]


# ---- the store


async def test_attachments_round_trip(store: Store, store_url: str, tmp_path: Path) -> None:
    image = Attachment(kind="image", name="a.png", mime="image/png", content="iVBORw0K")
    text = Attachment(kind="text", name="b.csv", mime="text/csv", content="x,y\n1,2\n")
    assistant = await store.add_assistant(BaseAssistant(name="T", instructions="Teach."))
    thread = ChatCompletionThread(assistant_id=assistant.id, chat_completion_model="m")
    first = NewMessage(content="", attachments=[image, text], external_id="1")
    await store.add_thread(thread, first)
    await store.add_user_message(thread.id, "more", external_id="2", attachments=[text])
    await store.add_user_message(thread.id, "plain", external_id="3")

    listed = await store.list_messages(thread.id)
    assert [m.attachments for m in listed] == [[image, text], [text], []]
    [claim] = await store.claim_pending("me", 1, 30)
    assert [m.attachments for m in claim.messages] == [[image, text], [text], []]

    snapshot = await store.export_all()
    assert Snapshot.model_validate_json(snapshot.model_dump_json()) == snapshot  # tutor export
    other_url = new_store_url("postgres" if store_url.startswith("sqlite") else "sqlite", tmp_path)
    other = await open_store(other_url)
    try:
        await other.import_all(snapshot)
        moved = await other.list_messages(thread.id)
        assert [m.attachments for m in moved] == [[image, text], [text], []]
        assert (await other.export_all()).messages == snapshot.messages
    finally:
        await other.close()


def test_cli_moves_and_shows_attachments(cli: Cli, tmp_path: Path) -> None:
    """`tutor export` and `tutor import` carry a question's files; `tutor messages` names them."""

    async def asked_with_a_file() -> None:
        store = await open_store(cli.env["TUTOR_DATABASE_URL"])
        try:
            assistant = await store.add_assistant(BaseAssistant(name="T", instructions="Teach."))
            thread = ChatCompletionThread(assistant_id=assistant.id, chat_completion_model="m")
            notes = Attachment(kind="text", name="notes.md", mime="text/markdown", content="F=ma")
            await store.add_thread(thread, NewMessage(content="explain", attachments=[notes]))
        finally:
            await store.close()

    asyncio.run(asked_with_a_file())
    dump = tmp_path / "dump.json"
    cli.ok("export", str(dump))
    target = f"sqlite:///{tmp_path / 'moved.db'}"
    cli.ok("import", str(dump), TUTOR_DATABASE_URL=target)
    shown = cli.ok("messages", TUTOR_DATABASE_URL=target)
    assert shown == "user: explain\n  (attached: notes.md)\n"


# ---- the context and its tokens


def test_image_sizes_from_headers() -> None:
    assert image_size(png(300, 200)) == (300, 200)
    assert image_size(jpeg_header(1024, 768)) == (1024, 768)
    assert image_size(b"GIF89a" + struct.pack("<HH", 64, 32) + b"\x00" * 4) == (64, 32)
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (99).to_bytes(3, "little")
    webp = b"RIFF" + struct.pack("<I", 30) + b"WEBP" + vp8x + (49).to_bytes(3, "little")
    assert image_size(webp) == (100, 50)
    assert image_size(b"PK\x03\x04 not an image") is None


def test_image_tokens_follow_openai_tiles() -> None:
    """OpenAI's worked examples: 1024² is 4 tiles (765), 2048×4096 is 6 (1105)."""
    assert image_tokens(1024, 1024) == 765
    assert image_tokens(2048, 4096) == 1105
    assert image_tokens(100, 100) == 255
    url = "data:image/png;base64," + base64.b64encode(png(1024, 1024)).decode()
    assert data_url_tokens(url) == 765


def test_the_trimmer_counts_images() -> None:
    big = base64.b64encode(png(1024, 1024)).decode()
    image = Attachment(kind="image", name="a.png", mime="image/png", content=big)
    messages = [
        Message(id=1, thread_id="t", role="user", content="look", attachments=[image]),
        Message(id=2, thread_id="t", role="assistant", content="an answer"),
    ]
    chat = to_chat("", messages)
    counter = TokenCounter("gpt-4o")
    image_turn = counter.message(chat[0])
    assert (
        image_turn
        == PER_MESSAGE + counter.text("look") + counter.text("Attached image: a.png") + 765
    )
    assert fit(chat, image_turn + counter.message(chat[1]) + 3, counter) == chat
    assert fit(chat, image_turn + counter.message(chat[1]) + 2, counter) == chat[1:]
