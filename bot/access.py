"""Who may ask where: `TUTOR_ACCESS` and the allow and deny rules kept in the store."""

from __future__ import annotations

from bot.admins import Admins
from bot.places import channel_subject, is_dm, user_subject
from looper.core import Tutor
from looper.models import AccessRule

DENIED_USER = "Sorry, you may not ask tutor questions."
DENIED_CHANNEL = "Sorry, tutor does not answer in this channel."
CLOSED_USER = "Sorry, tutor answers only the people it is allowed to."
CLOSED_CHANNEL = "Sorry, tutor answers only in the channels it is allowed in."


class Access:
    """Decides whether a person may ask in a channel, and if not, says why and whom to ask.

    Deny wins over allow. Open: everyone may, everywhere, but the denied users and channels.
    Closed: only allowed users, and outside their DMs only in allowed channels. Admins always
    may, so nobody locks themselves out. The rules are read from the store at each question
    (together with other questions' reads), so every replica obeys a change at once; admins
    are looked up only when the rules refuse.
    """

    def __init__(self, tutor: Tutor, admins: Admins, closed: bool) -> None:
        self.tutor = tutor
        self.admins = admins
        self.closed = closed

    async def refusal(self, user: str, channel: str) -> str | None:
        """Why `user` may not ask in `channel`, and whom to ask; None when they may."""
        why = await self._refused_by_rules(user, channel)
        if why is None or await self.admins.allows(user):
            return None
        return f"{why} {self.admins.whom_to_ask}"

    async def _refused_by_rules(self, user: str, channel: str) -> str | None:
        in_dm = is_dm(channel)
        subjects = [user_subject(user)] + ([] if in_dm else [channel_subject(channel)])
        rules: list[AccessRule | None] = await self.tutor.rules_of(*subjects)
        user_rule, channel_rule = rules[0], None if in_dm else rules[1]
        if user_rule == "deny":
            return DENIED_USER
        if channel_rule == "deny":
            return DENIED_CHANNEL
        if self.closed and user_rule != "allow":
            return CLOSED_USER
        if self.closed and not in_dm and channel_rule != "allow":
            return CLOSED_CHANNEL
        return None
