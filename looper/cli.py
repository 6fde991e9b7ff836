"""The `tutor` command line: the seed's flow (assistants, threads, ask, looper) on our store."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TextIO, TypeVar

import click
from pydantic import ValidationError

from looper import report
from looper.core import Tutor, duration
from looper.deprecations import ModelUse, shutdown_warning
from looper.models import Snapshot, UsageKey, utcnow
from looper.settings import MissingSetting, Settings
from looper.sinks import ConsoleSink
from looper.store import StoreError, masked_url, open_store

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=Settings)

# Exports made before threads stored their place key (tutor 0.1) carry it only in the
# front end's metadata: each front end registers how to read it back from there, when its
# module is imported (the `tutor` command is `bot.cli:main`, which registers the bot's).
KEYS_FROM_METADATA: list[Callable[[dict[str, str]], str | None]] = []


class Failure(click.ClickException):
    """One line on stderr and exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"tutor: {self.format_message()}", err=True)


class Text(click.ParamType[str]):
    """Text from the command line. Bytes that are not UTF-8 reach Python as lone surrogates,
    which no database stores: they are refused here, before anything is written."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            byte = ord(text[exc.start]) & 0xFF
            raise Failure(
                f"{describe(param)} is not UTF-8 text (byte 0x{byte:02x}): "
                "set the terminal to UTF-8 and type it again"
            ) from exc
        return text


TEXT: Text = Text()


def describe(param: click.Parameter | None) -> str:
    if isinstance(param, click.Option):
        return param.opts[0]
    return param.human_readable_name if param else "an argument"


def load_settings(kind: type[S]) -> S:
    try:
        return kind()
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = str(problem["loc"][0]).upper() if problem["loc"] else "a setting"
        reason = problem["msg"].removeprefix("Value error, ")
        raise Failure(f"{name} is invalid: {reason}") from exc
    except UnicodeDecodeError as exc:
        raise Failure(not_utf8(Path(str(kind.model_config.get("env_file"))), exc)) from exc


def not_utf8(path: Path, error: UnicodeDecodeError) -> str:
    """Where in the file the first byte that is not UTF-8 is (the error itself only knows
    its place in the chunk being decoded)."""
    data = path.read_bytes()
    try:
        data.decode()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return (
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): "
            "save it as UTF-8"
        )
    return f"{path} is not UTF-8 text: {error}"


def fastest_loop() -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes uvloop's event loop where it is installed (about a fifth less CPU per
    streamed token: `python -m bench.cpu_per_event`), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_on_fastest_loop(coroutine: Coroutine[Any, Any, R]) -> R:
    """`asyncio.run` on the `fastest_loop`."""
    with asyncio.Runner(loop_factory=fastest_loop()) as runner:
        return runner.run(coroutine)


def run_async(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    """Run a coroutine command, turning the errors a user can fix into one line on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return run_on_fastest_loop(fn(*args, **kwargs))
        except (StoreError, MissingSetting) as exc:
            raise Failure(str(exc)) from exc

    return wrapper


async def with_tutor(settings: Settings, work: Callable[[Tutor], Awaitable[R]]) -> R:
    store = await open_store(settings.tutor_database_url)
    try:
        return await work(Tutor.from_settings(store, settings))
    finally:
        await store.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """tutor: LLM tutors (and any other persona) in threads, and the engine behind them."""
    ctx.obj = load_settings(Settings)


@main.group()
def assistant() -> None:
    """Add and list assistants (personas)."""


@assistant.command("ls")
@click.pass_obj
@run_async
async def assistant_ls(settings: Settings) -> None:
    """List assistants, oldest first."""
    for a in await with_tutor(settings, lambda t: t.list_assistants()):
        summary = " ".join(a.instructions.split())
        click.echo(f"{a.id}\t{a.name}\t{a.icon or '-'}\t{a.model or '-'}\t{summary[:70]}")


STYLE = click.Choice(["direct", "coach"], case_sensitive=False)
STYLE_HELP = "direct: answers plainly; coach: guides with questions and hints first."


@assistant.command("add")
@click.option("--name", type=TEXT, help="Display name.")
@click.option(
    "--instructions", type=TEXT, help="System prompt. Without options: the Physics Tutor."
)
@click.option("--model", type=TEXT, help="Model for this assistant's new threads.")
@click.option("--style", type=STYLE, help=STYLE_HELP + "  [default: direct]")
@click.pass_obj
@run_async
async def assistant_add(
    settings: Settings,
    name: str | None,
    instructions: str | None,
    model: str | None,
    style: str | None,
) -> None:
    """Add an assistant and print its id."""
    added = await with_tutor(settings, lambda t: t.add_assistant(name, instructions, model, style))
    click.echo(f"added assistant {added.name!r}", err=True)
    click.echo(added.id)


@assistant.command("move")
@click.argument("assistant_ref", metavar="ASSISTANT", type=TEXT)
@click.option("--model", required=True, type=TEXT, help="The model to answer with from now on.")
@click.option(
    "--from", "from_model", type=TEXT, help="Move only its threads on this model (default: all)."
)
@click.pass_obj
@run_async
async def assistant_move(
    settings: Settings, assistant_ref: str, model: str, from_model: str | None
) -> None:
    """Move an assistant (id or name) and its threads to another model, e.g. before OpenAI
    shuts down theirs: its new threads, and its threads from their next question."""
    moved, count = await with_tutor(
        settings, lambda t: t.move_assistant(assistant_ref, model, from_model)
    )
    model = model.strip()
    click.echo(f"moved assistant {moved.name!r} and {count} of its threads to {model}")
    use = ModelUse(assistants=[moved.name], threads=count)
    warning = shutdown_warning(model, use, utcnow().date())
    if warning:
        click.echo(f"tutor: warning: {warning}", err=True)


@assistant.command("edit")
@click.argument("assistant_ref", metavar="ASSISTANT", type=TEXT)
@click.option("--name", type=TEXT, help="Display name (shown on its answers).")
@click.option("--icon", type=TEXT, help="An emoji like :telescope: or an http(s) image URL.")
@click.option("--model", type=TEXT, help="Answer with this model (its threads move too).")
@click.option("--instructions", type=TEXT, help="System prompt.")
@click.option(
    "--prompt",
    "prompts",
    multiple=True,
    type=TEXT,
    help="A question to suggest to newcomers; up to four (replaces the earlier ones).",
)
@click.option("--style", type=STYLE, help=STYLE_HELP)
@click.pass_obj
@run_async
async def assistant_edit(
    settings: Settings,
    assistant_ref: str,
    name: str | None,
    icon: str | None,
    model: str | None,
    instructions: str | None,
    prompts: tuple[str, ...],
    style: str | None,
) -> None:
    """Change an assistant (id or name): what is given changes, the rest stays."""
    edited, moved = await with_tutor(
        settings,
        lambda t: t.edit_assistant(
            assistant_ref,
            name,
            icon,
            model,
            instructions,
            list(prompts) if prompts else None,
            style,
        ),
    )
    click.echo(f"edited assistant {edited.name!r} ({edited.id})")
    if model is not None:
        click.echo(f"moved {moved} of its threads to {edited.model}")


@main.command()
@click.option("--assistant", "assistant_ref", type=TEXT, help="Only this assistant (id or name).")
@click.option("--since", default="7d", show_default=True, type=TEXT, help="e.g. 24h, 7d, 2w.")
@click.option("--latest", default=5, show_default=True, type=click.IntRange(min=0))
@click.pass_obj
@run_async
async def feedback(settings: Settings, assistant_ref: str | None, since: str, latest: int) -> None:
    """Votes on answers per assistant, and the latest 👎 with their links and comments."""
    window = duration(since)
    report = await with_tutor(
        settings, lambda t: t.feedback(utcnow() - window, assistant_ref, latest)
    )
    if not report:
        click.echo(f"no feedback since {since}")
    for entry in report:
        click.echo(f"{entry.assistant.name}\t👍 {entry.up}\t👎 {entry.down}")
        for down in entry.latest_down:
            where = down.link or down.message_ref or down.thread_id
            said = f"\t{down.comment}" if down.comment else ""
            when = down.updated_at.isoformat(timespec="seconds")
            click.echo(f"  👎 {when}\t{where}{said}")


@main.group()
def thread() -> None:
    """Add and list threads (conversations)."""


@thread.command("ls")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.pass_obj
@run_async
async def thread_ls(settings: Settings, limit: int) -> None:
    """List threads, newest first."""
    for t in await with_tutor(settings, lambda tutor: tutor.threads.newest(limit)):
        state = f"\terror: {t.last_error}" if t.failed else ""
        activity = t.last_activity.isoformat(timespec="seconds") if t.last_activity else "-"
        click.echo(
            f"{t.id}\t{t.assistant_id}\t{t.chat_completion_model}\t"
            f"{t.message_count} messages\t{activity}{state}"
        )


@thread.command("add")
@click.option("--assistant-id", type=TEXT, required=True, help="The assistant that answers.")
@click.option(
    "--model", type=TEXT, help="Chat completion model (default: the assistant's, or TUTOR_MODEL)."
)
@click.pass_obj
@run_async
async def thread_add(settings: Settings, assistant_id: str, model: str | None) -> None:
    """Add a thread and print its id."""
    added = await with_tutor(settings, lambda t: t.add_thread(assistant_id, model))
    click.echo(f"added thread with model {added.chat_completion_model}", err=True)
    click.echo(added.id)


@main.command()
@click.argument("question", type=TEXT)
@click.option("--thread-id", type=TEXT, help="Default: the most recently added thread.")
@click.pass_obj
@run_async
async def ask(settings: Settings, question: str, thread_id: str | None) -> None:
    """Append a user message; a running looper answers it."""
    message = await with_tutor(settings, lambda t: t.ask(question, thread_id))
    click.echo(f"asked in {message.thread_id} as message {message.id}")


@main.command()
@click.option("--thread-id", type=TEXT, help="Default: the most recently added thread.")
@click.pass_obj
@run_async
async def messages(settings: Settings, thread_id: str | None) -> None:
    """Print a thread's messages, oldest first."""

    async def read(tutor: Tutor) -> None:
        thread = await tutor.thread(thread_id)
        shown = await tutor.messages(thread.id)
        for message in shown:
            click.echo(f"{message.role}: {message.content}")
            if message.attachments:
                click.echo(f"  (attached: {', '.join(a.name for a in message.attachments)})")
        if shown and shown[-1].metadata.get("cut_off"):
            click.echo("(the last answer was cut off: `tutor ask continue` carries on)", err=True)
        if thread.failed:
            click.echo(f"(not answered: {thread.last_error} `tutor retry` asks again)", err=True)

    await with_tutor(settings, read)


@main.command()
@click.option("--thread-id", type=TEXT, help="Default: the most recently added thread.")
@click.pass_obj
@run_async
async def retry(settings: Settings, thread_id: str | None) -> None:
    """Ask again what could not be answered."""

    async def again(tutor: Tutor) -> bool:
        thread = await tutor.thread(thread_id)
        return await tutor.retry(thread.id)

    if not await with_tutor(settings, again):
        raise Failure("nothing to retry: no question in that thread failed")
    click.echo("the looper will answer it again")


@main.command()
@click.pass_obj
@run_async
async def migrate(settings: Settings) -> None:
    """Create or upgrade the database schema (tutor also does this when it starts)."""
    store = await open_store(settings.tutor_database_url)
    try:
        click.echo(f"schema version {await store.schema_version()}: up to date")
    finally:
        await store.close()


class Since(click.ParamType[datetime]):
    """`today`, `7d`, `30d` or a UTC date, as the moment it means."""

    name = "since"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return report.since(str(value), utcnow())
        except ValueError as exc:
            raise Failure(f"{describe(param)}: {exc}") from exc


@main.command()
@click.option(
    "--since",
    "start",
    default="30d",
    show_default=True,
    type=Since(),
    help="today, Nd or YYYY-MM-DD (UTC).",
)
@click.option(
    "--by",
    default="user",
    show_default=True,
    type=click.Choice(["user", "channel", "assistant", "model"]),
)
@click.option(
    "--format",
    "shape",
    default="table",
    show_default=True,
    type=click.Choice(["table", "csv", "json"]),
)
@click.pass_obj
@run_async
async def usage(settings: Settings, start: datetime, by: UsageKey, shape: str) -> None:
    """Answers, tokens and cost since a day, per asker, channel, assistant or model."""
    lines = await with_tutor(settings, lambda t: t.usage(start, by))
    if shape == "json":
        click.echo(report.as_json(lines))
    elif shape == "csv":
        click.echo(report.as_csv(lines))
    elif lines:
        click.echo(report.as_table(lines, by))
    else:
        click.echo(f"no answers since {start:%Y-%m-%d %H:%M} UTC", err=True)


@main.command("export")
@click.argument("file", type=click.File("w"), default="-")
@click.pass_obj
@run_async
async def export_store(settings: Settings, file: TextIO) -> None:
    """Write everything stored to FILE (JSON; default: stdout), e.g. to move to PostgreSQL."""
    store = await open_store(settings.tutor_database_url)
    try:
        snapshot = await store.export_all()
    finally:
        await store.close()
    file.write(snapshot.model_dump_json())
    click.echo(
        f"exported {len(snapshot.threads)} threads, {len(snapshot.messages)} messages", err=True
    )


@main.command("import")
@click.argument("file", type=click.File("r"))
@click.pass_obj
@run_async
async def import_store(settings: Settings, file: TextIO) -> None:
    """Load a `tutor export` FILE into the (empty) store of TUTOR_DATABASE_URL."""
    try:
        snapshot = Snapshot.model_validate_json(file.read())
    except ValidationError as exc:
        raise Failure(f"{file.name} is not a tutor export: {exc.errors()[0]['msg']}") from exc
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise Failure(f"{file.name} is not a tutor export: byte 0x{byte:02x} is not UTF-8") from exc
    for thread in snapshot.threads:
        keys = (key(thread.metadata) for key in KEYS_FROM_METADATA)
        thread.external_key = thread.external_key or next(filter(None, keys), None)
    store = await open_store(settings.tutor_database_url)
    try:
        await store.import_all(snapshot)
    finally:
        await store.close()
    click.echo(f"imported {len(snapshot.threads)} threads, {len(snapshot.messages)} messages")


@main.command()
@click.option("-v", "--verbose", is_flag=True, help="Log what the looper does.")
@click.pass_obj
@run_async
async def looper(settings: Settings, verbose: bool) -> None:
    """Answer pending questions, printing each completion. Ctrl-C or SIGTERM stops it."""
    configure_logging(verbose)
    from looper.loop import Looper  # imports openai: only the looper pays for it

    key = settings.require_openai_key()
    store = await open_store(settings.tutor_database_url)
    try:
        worker = Looper.from_settings(settings, store, key, ConsoleSink())
        stop_on_signals(worker.stop)
        click.echo(
            f"looper {worker.owner} on {masked_url(settings.tutor_database_url)} "
            f"(concurrency {worker.concurrency})",
            err=True,
        )
        for warning in await Tutor(
            store, settings.tutor_model, settings.tutor_max_question_chars
        ).model_warnings():
            click.echo(f"tutor: warning: {warning}", err=True)
        await worker.run()
    finally:
        await store.close()


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def stop_on_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


from looper.materials_cli import materials  # noqa: E402 (it builds on this module)

assistant.add_command(materials)

if __name__ == "__main__":
    sys.exit(main())
