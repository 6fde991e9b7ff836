"""Course materials in Slack, for tutor admins only.

Slash commands carry no files, so `/tutor assistant materials add <assistant>` opens a modal
with a file input: the admin picks the files there, and on submit they are downloaded with
the bot token (the private URLs Slack gives need it) and stored. Such files are shared in no
conversation. `ls` shows names and sizes; nothing of a material's text is ever posted.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError

from bot.admins import Admins
from bot.background import Background
from bot.files import Downloader, Skipped, name_of
from bot.formatting import mrkdwn_safe
from bot.web import SlackApi, slack_error
from looper.core import Tutor
from looper.models import Material
from looper.store import StoreError

if TYPE_CHECKING:
    from bot.commands import Command, TutorCommands

log = logging.getLogger(__name__)
MATERIALS_VIEW = "tutor_materials"
FILES_BLOCK = "materials_files"
FILES_ACTION = "files"
MAX_FILES = 10  # Slack's most for one file input
MAX_BYTES = 25 * 1024 * 1024
FILE_TYPES = ["pdf", "txt", "text", "md", "markdown"]
ADD_USAGE = "Usage: `/tutor assistant materials add <assistant>` (in a DM with me)"
QUOTES = "\"'“”‘’"
RM_USAGE = "Usage: `/tutor assistant materials rm <assistant> <material id>`"


def size(material: Material) -> str:
    return f"{material.size / 1024:,.1f} KiB" if material.size >= 1024 else f"{material.size} B"


def materials_view(assistant_id: str, name: str, channel: str) -> dict[str, Any]:
    """The modal in which an admin picks files for an assistant."""
    return {
        "type": "modal",
        "callback_id": MATERIALS_VIEW,
        "private_metadata": json.dumps({"assistant": assistant_id, "channel": channel}),
        "title": {"type": "plain_text", "text": "Course materials"},
        "submit": {"type": "plain_text", "text": "Add"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"Notes, an answer key or a rubric for *{mrkdwn_safe(name)}* to "
                    "answer from (text, Markdown or PDF). Only the model reads them; "
                    "nobody sees them in Slack.",
                },
            },
            {
                "type": "input",
                "block_id": FILES_BLOCK,
                "label": {"type": "plain_text", "text": "Files"},
                "element": {
                    "type": "file_input",
                    "action_id": FILES_ACTION,
                    "filetypes": FILE_TYPES,
                    "max_files": MAX_FILES,
                },
            },
        ],
    }


def submitted_files(view: dict[str, Any]) -> list[dict[str, Any]]:
    values = (view.get("state") or {}).get("values") or {}
    chosen = (values.get(FILES_BLOCK) or {}).get(FILES_ACTION) or {}
    return [f for f in chosen.get("files") or [] if isinstance(f, dict)]


class MaterialsHandlers:
    """`/tutor assistant materials add|ls|rm` and the modal that takes the files."""

    def __init__(self, tutor: Tutor, api: SlackApi, admins: Admins) -> None:
        self.tutor = tutor
        self.api = api
        self.admins = admins
        self.later = Background()
        self.downloader = Downloader(api, MAX_BYTES)

    # the slash command's subcommands (routes in bot/commands.py)
    async def open(self, call: Command) -> None:
        assistant = await self.tutor.find_assistant(call.args)
        await self.api.call(
            "views.open",
            trigger_id=call.trigger_id,
            view=materials_view(assistant.id, assistant.name, call.channel),
        )

    async def list(self, call: Command) -> None:
        assistant, found = await self.tutor.materials(call.args)
        name = mrkdwn_safe(assistant.name)
        if not found:
            await call.tell(f"*{name}* has no materials yet. {ADD_USAGE}")
            return
        lines = [f"• `{m.id}` {mrkdwn_safe(m.name)} ({size(m)})" for m in found]
        await call.tell(f"*{name}* answers from:\n" + "\n".join(lines))

    async def remove(self, call: Command) -> None:
        ref, _, material_id = call.args.strip().rpartition(" ")
        ref = ref.strip().strip(QUOTES)
        if not ref or not material_id:
            await call.tell(RM_USAGE)
            return
        removed = await self.tutor.remove_material(ref, material_id)
        await call.tell(f"Removed {mrkdwn_safe(removed.name)} (`{removed.id}`).")

    # the modal
    async def on_submit(self, body: dict[str, Any]) -> None:
        """A submitted modal, acknowledged (and closed) already."""
        self.later.start(self._add(body))

    async def _add(self, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        person = (body.get("user") or {}).get("id", "")
        try:
            about = json.loads(view.get("private_metadata") or "{}")
            assistant_id, channel = str(about["assistant"]), str(about["channel"])
        except (ValueError, KeyError, TypeError):
            log.warning("a materials modal without its assistant: %r", view.get("private_metadata"))
            return
        if not await self.admins.allows(person):
            await self._tell(channel, person, "Sorry, only tutor admins can add materials.")
            return
        lines = [await self._add_one(assistant_id, file) for file in submitted_files(view)]
        await self._tell(channel, person, "\n".join(lines) or "No files came with the form.")

    async def _add_one(self, assistant_id: str, file: dict[str, Any]) -> str:
        name = name_of(file)
        try:
            data = await self.downloader.fetch(file)
            added = await self.tutor.add_material(assistant_id, name, data)
        except (Skipped, StoreError) as exc:
            return f"• {mrkdwn_safe(name)}: not added: {mrkdwn_safe(str(exc))}"
        return f"• Added {mrkdwn_safe(added.name)} (`{added.id}`, {size(added)})"

    async def _tell(self, channel: str, person: str, text: str) -> None:
        try:
            await self.api.call("chat.postEphemeral", channel=channel, user=person, text=text)
        except SlackApiError as exc:
            log.info("could not tell %s about their materials: %s", person, slack_error(exc))


async def materials_add(commands: TutorCommands, call: Command) -> None:
    await commands.materials.open(call)


async def materials_ls(commands: TutorCommands, call: Command) -> None:
    await commands.materials.list(call)


async def materials_rm(commands: TutorCommands, call: Command) -> None:
    await commands.materials.remove(call)
