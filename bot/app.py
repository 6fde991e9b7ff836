"""`tutor run`: Bolt in Socket Mode and the looper in one process, sharing one store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp import ClientError
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.access import Access
from bot.admins import Admins
from bot.authorize import OneWorkspace, on_error
from bot.catchup import catch_up
from bot.commands import ROUTES, TutorCommands
from bot.events import EventHandlers
from bot.feedback import COMMENT_VIEW, FeedbackHandlers
from bot.files import FileReader
from bot.formatting import FEEDBACK_ACTION, RETRY_ACTION
from bot.health import HealthServer
from bot.home import HomeTab
from bot.materials import MATERIALS_VIEW
from bot.messages_tab import MessagesTab
from bot.middleware import AckFirst, ParseCommand
from bot.pacing import Pacer
from bot.settings import BotSettings
from bot.sink import SlackSink
from bot.socket import TutorSocketHandler
from bot.web import SlackApi, make_client, slack_error
from looper.core import Tutor
from looper.loop import Looper
from looper.settings import MissingSetting
from looper.store import Store, open_store
from looper.urgency import Urgency

log = logging.getLogger(__name__)
SHUTDOWN_GRACE = 7.0  # answers in flight get this long; the process is gone within 10 s

TOKEN_HELP = {
    "SLACK_BOT_TOKEN": ("xoxb-", "OAuth & Permissions → Bot User OAuth Token"),
    "SLACK_APP_TOKEN": ("xapp-", "Basic Information → App-Level Tokens (connections:write)"),
}


def token_problem(name: str, token: str, why: str) -> MissingSetting:
    prefix, where = TOKEN_HELP[name]
    return MissingSetting(f"{name} {why}: use the {prefix}… token from your app's page, {where}")


async def check_tokens(settings: BotSettings) -> None:
    """Stop with one clear line when a token is missing, malformed or rejected by Slack."""
    for name, token in (
        ("SLACK_BOT_TOKEN", settings.slack_bot_token),
        ("SLACK_APP_TOKEN", settings.slack_app_token),
    ):
        if not token:
            raise token_problem(name, token, "is not set")
        if not token.startswith(TOKEN_HELP[name][0]):
            raise token_problem(name, token, f"does not start with {TOKEN_HELP[name][0]}")
    client = make_client(settings.slack_bot_token, settings.slack_api_url)
    checks: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("SLACK_BOT_TOKEN", client.auth_test),
        (
            "SLACK_APP_TOKEN",
            lambda: client.apps_connections_open(app_token=settings.slack_app_token),
        ),
    ]
    for name, call in checks:
        try:
            await call()
        except SlackApiError as exc:
            raise token_problem(name, "", f"was rejected by Slack ({slack_error(exc)})") from exc
        except (ClientError, OSError) as exc:
            raise MissingSetting(
                f"cannot reach Slack at {settings.slack_api_url} ({exc}); check SLACK_API_URL"
            ) from exc


class AppTabs:
    """`app_home_opened` to the tab the person opened: Home, or Messages (the agent view's
    start of a conversation)."""

    def __init__(self, home: HomeTab, messages: MessagesTab) -> None:
        self.home = home
        self.messages = messages

    async def on_opened(self, event: dict[str, Any]) -> None:
        if event.get("tab") == "home" and event.get("user"):
            self.home.opened(event["user"])
        elif event.get("tab") == "messages" and event.get("channel"):
            self.messages.opened(event["channel"])


def bolt_app(name: str, api: SlackApi) -> AsyncApp:
    """A Bolt app processing each request before answering Slack (see `build_apps`), on a
    client that learns the token from `OneWorkspace` (given one, Bolt warns that it is
    unused) and shares the bot's connections; its errors go to `on_error`."""
    client = make_client(None, api.client.base_url, api.client.session)
    app = AsyncApp(
        client=client, name=name, authorize=OneWorkspace(api), process_before_response=True
    )
    app.error(on_error)
    return app


def build_apps(
    tutor: Tutor,
    api: SlackApi,
    access: Access,
    quiet: float = 5.0,
    files: FileReader | None = None,
) -> tuple[AsyncApp, AsyncApp]:
    """The app for commands and clicks and the app for events (acknowledged once stored);
    see `TutorSocketHandler`.

    Commands and clicks are processed before Bolt answers Slack (no polling for the ack):
    `AckFirst` has acknowledged whatever needs no store write and its listener hands the work
    to a background task; a command that stores first acknowledges once stored. The Home and
    Messages tabs are updated at most once every `quiet` seconds per person.
    """
    events = EventHandlers(tutor, api, access, files)
    tabs = AppTabs(HomeTab(tutor, api, access.admins, quiet), MessagesTab(tutor, api, quiet))
    commands = TutorCommands(tutor, api, access.admins, access)
    app = bolt_app("tutor", api)
    app.use(ParseCommand(ROUTES))
    app.use(AckFirst())
    app.command("/tutor")(commands.run)
    app.action(RETRY_ACTION)(events.on_retry)
    feedback = FeedbackHandlers(tutor, api)
    app.action(FEEDBACK_ACTION)(feedback.on_click)
    app.view(COMMENT_VIEW)(feedback.on_comment)
    app.view(MATERIALS_VIEW)(commands.materials.on_submit)
    events_app = bolt_app("tutor-events", api)
    events_app.event("message")(events.on_message)
    events_app.event("app_mention")(events.on_mention)
    events_app.event("app_home_opened")(tabs.on_opened)
    events_app.event("assistant_thread_started")(tabs.messages.on_thread_started)
    events_app.event("assistant_thread_context_changed")(tabs.messages.on_context_changed)
    return app, events_app


async def run_bot(settings: BotSettings) -> None:
    key = settings.require_openai_key()
    await check_tokens(settings)
    store = await open_store(settings.tutor_database_url)
    try:
        await serve(settings, store, key)
    finally:
        await store.close()


async def serve(settings: BotSettings, store: Store, openai_key: str) -> None:
    limits = aiohttp.TCPConnector(limit=100, limit_per_host=100)
    async with aiohttp.ClientSession(connector=limits) as session:
        await serve_with(settings, store, openai_key, session)


async def serve_with(
    settings: BotSettings, store: Store, openai_key: str, session: aiohttp.ClientSession
) -> None:
    health = HealthServer(store)
    await health.start(settings.tutor_http_port)  # first: a taken port stops here, in one line
    tutor = Tutor.from_settings(store, settings)
    api = SlackApi(
        make_client(settings.slack_bot_token, settings.slack_api_url, session),
        Pacer(
            settings.tutor_replicas,
            posts_per_second=settings.tutor_posts_per_second,
            history=settings.history_limit,
        ),
    )
    access = Access(tutor, Admins(api, settings.admins), settings.tutor_access == "closed")
    files = FileReader(api, settings.max_file_bytes)
    app, events_app = build_apps(tutor, api, access, settings.tutor_home_quiet_seconds, files)
    urgency = Urgency()  # acks and first signs before reading streams
    looper = Looper.from_settings(settings, store, openai_key, SlackSink(api), urgency)
    looper.grace_seconds = SHUTDOWN_GRACE
    socket = TutorSocketHandler(app, events_app, settings.slack_app_token, urgency)
    health.socket = socket.client
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    await socket.connect_async()  # type: ignore[no-untyped-call]
    answering = asyncio.create_task(looper.run(), name="looper")
    window = timedelta(hours=settings.tutor_catchup_hours)
    catching_up = asyncio.create_task(catch_up(tutor, api, window, access, files), name="catch-up")
    log.warning("tutor is running (looper %s)", looper.owner)
    for warning in await tutor.model_warnings():
        log.warning(warning)
    await stopping.wait()

    log.warning("stopping: no new work; answers in flight get %.0f s", SHUTDOWN_GRACE)
    await socket.close_async()  # type: ignore[no-untyped-call]
    catching_up.cancel()
    looper.stop()
    await answering
    with contextlib.suppress(asyncio.CancelledError):
        await catching_up
    await health.stop()
