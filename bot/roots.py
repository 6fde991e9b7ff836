"""Root messages: the channel message a conversation asked for with /tutor lives under.

The question (or the empty conversation) is stored first and acknowledged; the looper then
places the thread here, exactly once: when an earlier attempt may have posted the root
already, it is looked up in the channel by its metadata before anything is posted.
"""

from __future__ import annotations

from datetime import timedelta

from slack_sdk.errors import SlackApiError

from bot.formatting import NOT_IN_CHANNEL, mrkdwn_safe, thread_metadata, thread_of_root
from bot.persona import persona
from bot.places import USER, ChannelRequest
from bot.web import SlackApi, slack_error
from looper.sinks import PLACING, Job, Placed, PlaceRefused

# Errors after which posting in the channel cannot work until someone acts.
CANNOT_POST = {
    "not_in_channel",
    "channel_not_found",
    "is_archived",
    "restricted_action",
    "restricted_action_read_only_channel",
    "restricted_action_thread_only_channel",
}
CLOCK_SKEW = timedelta(minutes=5)  # between the store's clock and Slack's


class RootPoster:
    """Posts the root message of a thread stored before it had one."""

    def __init__(self, api: SlackApi) -> None:
        self.api = api

    async def place(self, job: Job, request: ChannelRequest) -> Placed:
        posted = await self._posted_before(job, request) if job.resumed_ref == PLACING else None
        root = posted or await self._post(job, request)
        place = request.placed_at(root)
        return Placed({**place.metadata, USER: request.user}, place.key)

    async def _post(self, job: Job, request: ChannelRequest) -> str:
        try:
            posted = await self.api.call(
                "chat.postMessage",
                channel=request.channel,
                text=root_text(job, request.user),
                metadata=thread_metadata(job.thread.id, job.assistant.id),
                **persona(job.assistant),
            )
        except SlackApiError as exc:
            error = slack_error(exc)
            if error not in CANNOT_POST:
                raise
            said = NOT_IN_CHANNEL if error == "not_in_channel" else f"Slack said: {error}"
            await self.api.respond(request.response_url, said)
            raise PlaceRefused(f"cannot post in {request.channel}: {error}") from exc
        return str(posted["ts"])

    async def _posted_before(self, job: Job, request: ChannelRequest) -> str | None:
        """The root an interrupted attempt posted, found by its metadata."""
        since = job.thread.created_at - CLOCK_SKEW
        me = await self.api.bot_user()
        async for message in self.api.history(
            request.channel, oldest=f"{since.timestamp():.6f}", include_all_metadata=True
        ):
            if thread_of_root(message, me) == job.thread.id:
                return str(message["ts"])
        return None


def root_text(job: Job, user: str) -> str:
    """ "@someone asked *Persona*: …" for a question; the invitation to reply for an empty thread.
    The question as Slack sent it, escaped but for the mentions of people its asker wrote."""
    questions = [m for m in job.messages if m.role == "user"]
    if questions:
        question = mrkdwn_safe(questions[0].content, keep_user_mentions=True)
        return f"<@{user}> asked *{mrkdwn_safe(job.assistant.name)}*: {question}"
    return (
        f"New conversation with *{mrkdwn_safe(job.assistant.name)}*, started by <@{user}>. "
        "Reply in this thread to ask."
    )
