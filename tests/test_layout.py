"""The layout the README promises: the engine knows no Slack, the bot knows no SQL, and the
Slack metadata keys are spelled in one place."""

from __future__ import annotations

import re
from pathlib import Path

from bot import places

ROOT = Path(__file__).resolve().parents[1]


def sources(package: str) -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def test_the_engine_knows_no_slack() -> None:
    for name, text in sources("looper").items():
        assert "slack" not in text.lower(), name
        assert not re.search(r"^\s*(from|import) bot\b", text, re.M), name


def test_the_bot_knows_no_sql() -> None:
    for name, text in sources("bot").items():
        assert not re.search(r"\b(sqlite3|aiosqlite|asyncpg|looper\.store\.\w+)\b", text), name
        assert not re.search(r"\b(SELECT|INSERT|UPDATE|DELETE) ", text), name


def test_slack_metadata_keys_are_spelled_once() -> None:
    keys = (places.TEAM, places.CHANNEL, places.THREAD_TS, places.USER, places.TS, places.STATUS)
    for name, text in {**sources("bot"), **sources("looper")}.items():
        if name != "bot/places.py":
            assert not any(f'"{key}"' in text for key in keys), name
