"""The `tutor` command: the engine's commands plus `tutor run`, the Slack bot."""

from __future__ import annotations

import click

from bot.places import key_from_metadata
from bot.settings import BotSettings
from looper.cli import KEYS_FROM_METADATA, configure_logging, load_settings, main, run_async

__all__ = ["main"]
KEYS_FROM_METADATA.append(key_from_metadata)


@main.command()
@click.option("-v", "--verbose", is_flag=True, help="Log what the bot does.")
@run_async
async def run(verbose: bool) -> None:
    """Run the Slack bot: Socket Mode and the looper in one process."""
    settings = load_settings(BotSettings)
    configure_logging(verbose)
    from bot.app import run_bot  # Bolt and openai load only for the bot

    await run_bot(settings)


if __name__ == "__main__":
    main()
