"""Files on a Slack message, read for the model.

Slack's message events list their files (`files`: id, name, mimetype, filetype, size,
`url_private_download`); the bytes come from that private URL with the bot token (scope
`files:read`). Images (PNG, JPEG, GIF, WebP) go to the model as images, text files (plain
text, Markdown, source code, CSV, JSON) as text, PDFs as their text (pypdf). At most
`MAX_FILES` a message and `max_bytes` a file; what is left out is said in one line.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.web import SlackApi
from looper import materials
from looper.images import IMAGE_TYPES, image_mime
from looper.models import Attachment

log = logging.getLogger(__name__)
MAX_FILES = 5
DOWNLOAD_SECONDS = 30.0
CHUNK = 64 * 1024
PDF_TYPES = {"application/pdf"}
TEXT_MIMES = {
    "application/json",
    "application/javascript",
    "application/x-python",
    "application/x-sh",
    "application/xml",
    "application/x-yaml",
    "application/yaml",
    "application/sql",
    "application/x-tex",
}
# Slack's `filetype` for text it recognises (snippets and uploads), whatever the mimetype says.
TEXT_FILETYPES = {
    *("text", "markdown", "post", "csv", "tsv", "json", "yaml", "xml", "html", "css", "sql"),
    *("python", "javascript", "typescript", "java", "kotlin", "scala", "c", "cpp", "csharp"),
    *("go", "rust", "ruby", "php", "perl", "r", "matlab", "julia", "swift", "objc", "haskell"),
    *("shell", "bash", "powershell", "lua", "dart", "elixir", "erlang", "clojure", "latex"),
    *("diff", "dockerfile", "makefile", "toml", "ini", "groovy", "vb", "fortran", "ocaml"),
}


class Skipped(Exception):
    """A file that is not read; the message says why, in a few words."""


@dataclass
class Collected:
    """What a message's files give the model, and the files left out with why."""

    attachments: list[Attachment] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        """One line for the asker about the files left out; None when none was."""
        if not self.skipped:
            return None
        return f"Not read: {'; '.join(self.skipped)}."


def kind_of(file: dict[str, Any]) -> str | None:
    """What a file is by what Slack says of it (image, text or pdf); None: not one we read."""
    mime = str(file.get("mimetype") or "").lower()
    filetype = str(file.get("filetype") or "").lower()
    if mime in IMAGE_TYPES:
        return "image"
    if mime in PDF_TYPES or filetype == "pdf":
        return "pdf"
    if mime.startswith("text/") or mime in TEXT_MIMES or filetype in TEXT_FILETYPES:
        return "text"
    return None


def megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def pdf_text(data: bytes) -> str:
    """The text of a PDF's pages (Skipped when it has none, or cannot be read)."""
    try:
        return materials.pdf_text(data)
    except materials.Unreadable as exc:
        raise Skipped(str(exc)) from None


def as_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Skipped("not UTF-8 text") from None


class FileReader:
    """Downloads and converts a message's files, with the bot token, within the limits."""

    def __init__(self, api: SlackApi, max_bytes: int) -> None:
        self.api = api
        self.max_bytes = max_bytes
        self.downloader = Downloader(api, max_bytes)

    async def read(self, files: list[dict[str, Any]]) -> Collected:
        collected = Collected()
        results = await asyncio.gather(
            *(self._one(file) for file in files[:MAX_FILES]), return_exceptions=True
        )
        for file, result in zip(files[:MAX_FILES], results, strict=True):
            if isinstance(result, Attachment):
                collected.attachments.append(result)
            elif isinstance(result, Skipped):
                collected.skipped.append(f"{name_of(file)} ({result})")
            else:
                log.warning("could not read %s: %r", name_of(file), result)
                collected.skipped.append(f"{name_of(file)} (could not be read)")
        for file in files[MAX_FILES:]:
            collected.skipped.append(f"{name_of(file)} (too many files: at most {MAX_FILES})")
        return collected

    async def _one(self, file: dict[str, Any]) -> Attachment:
        kind = kind_of(file)
        if kind is None or file.get("mode") in ("external", "tombstone"):
            raise Skipped(f"unsupported type {file.get('filetype') or file.get('mimetype')}")
        data = await self.downloader.fetch(file)
        name = name_of(file)
        if kind == "image":
            mime = image_mime(data)
            if mime is None:
                raise Skipped("not a PNG, JPEG, GIF or WebP image")
            return Attachment(kind="image", name=name, mime=mime, content=b64(data))
        text = await asyncio.to_thread(pdf_text, data) if kind == "pdf" else as_text(data)
        mime = str(file.get("mimetype") or "text/plain")
        return Attachment(kind="text", name=name, mime=mime, content=text)


class Downloader:
    """Fetches a file Slack shared with the bot token: only from Slack's own hosts (or the
    Web API's, as in tests), and no more than `max_bytes`. Raises Skipped, saying why."""

    def __init__(self, api: SlackApi, max_bytes: int) -> None:
        self.api = api
        self.max_bytes = max_bytes

    async def fetch(self, file: dict[str, Any]) -> bytes:
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        if not url:
            raise Skipped("download failed: Slack gave no URL")
        if not self._from_slack(url):
            raise Skipped("download failed: not a Slack address")
        size = int(file.get("size") or 0)
        if size > self.max_bytes:
            raise Skipped(f"too large: {megabytes(size)}, the limit is {megabytes(self.max_bytes)}")
        mime = str(file.get("mimetype") or "")
        try:
            return await asyncio.wait_for(self._fetch(url, mime), DOWNLOAD_SECONDS)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Skipped(f"download failed: {type(exc).__name__}") from exc

    def _from_slack(self, url: str) -> bool:
        """Only Slack's own hosts get the bot token."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host == urlsplit(self.api.client.base_url).hostname:
            return True
        return parts.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))

    async def _fetch(self, url: str, mime: str) -> bytes:
        session = self.api.client.session
        if session is None or session.closed:
            async with aiohttp.ClientSession() as own:
                return await self._get(own, url, mime)
        return await self._get(session, url, mime)

    async def _get(self, session: aiohttp.ClientSession, url: str, mime: str) -> bytes:
        headers = {"Authorization": f"Bearer {self.api.client.token}"}
        async with session.get(url, headers=headers) as response:
            if response.status in (401, 403):
                raise Skipped(f"download failed: HTTP {response.status} (no files:read scope?)")
            if response.status != 200:
                raise Skipped(f"download failed: HTTP {response.status}")
            if response.content_type == "text/html" and mime != "text/html":  # a sign-in page
                raise Skipped("download failed: Slack did not give the file")
            return await self._body(response)

    async def _body(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, stopping as soon as it passes the limit (a size Slack misstated)."""
        data = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK):
            data += chunk
            if len(data) > self.max_bytes:
                raise Skipped(f"too large: over {megabytes(self.max_bytes)}")
        return bytes(data)


def name_of(file: dict[str, Any]) -> str:
    return str(file.get("name") or file.get("title") or file.get("id") or "a file")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class EventFiles:
    """One event's files, read at most once, and only when asked for (most messages in a
    channel are not questions)."""

    def __init__(self, reader: FileReader, event: dict[str, Any]) -> None:
        self.reader = reader
        self.files: list[dict[str, Any]] = list(event.get("files") or [])
        self._read: Awaitable[Collected] | None = None

    async def get(self) -> Collected:
        if not self.files:
            return Collected()
        if self._read is None:
            self._read = asyncio.ensure_future(self.reader.read(self.files))
        return await self._read
