"""The `tutor` command: the engine's commands plus `tutor run`, the Slack bot."""

from __future__ import annotations

import click

from looper.cli import configure_logging, main, run_async
from looper.settings import Settings

__all__ = ["main"]


@main.command()
@click.option("-v", "--verbose", is_flag=True, help="Log what the bot does.")
@click.pass_obj
@run_async
async def run(settings: Settings, verbose: bool) -> None:
    """Run the Slack bot: Socket Mode and the looper in one process."""
    configure_logging(verbose)
    from bot.app import run_bot  # Bolt and openai load only for the bot

    await run_bot(settings)


if __name__ == "__main__":
    main()
