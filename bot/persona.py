"""Who an answer is from: the assistant's name and icon on every message it posts.

`chat.postMessage` and `chat.startStream` take `username` and `icon_emoji` or `icon_url`
(with the `chat:write.customize` scope; without it Slack shows the app's own name and icon).
`chat.update` and `chat.stopStream` take neither: a message keeps the identity it was posted
with, so a placeholder or a stream is posted as the persona from the start.
"""

from __future__ import annotations

from typing import Any

from looper.models import BaseAssistant

URL_PREFIXES = ("http://", "https://")


def persona(assistant: BaseAssistant) -> dict[str, Any]:
    """The identity arguments of a post by `assistant`."""
    shown: dict[str, Any] = {"username": assistant.name}
    if assistant.icon:
        kind = "icon_url" if assistant.icon.startswith(URL_PREFIXES) else "icon_emoji"
        shown[kind] = assistant.icon
    return shown
