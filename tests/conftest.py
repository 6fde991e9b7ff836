"""Fixtures: real stores on disk, the fake OpenAI and Slack servers, and the `tutor` CLI."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from fakes.openai_server import API_KEY, FakeOpenAI
from fakes.slack_server import APP_TOKEN, BOT_TOKEN, FakeSlack
from looper.store import Store, open_store
from tests.harness import (
    CREATED_DATABASES,
    OPEN_COMPLETERS,
    Bot,
    Cli,
    new_store_url,
    on_postgres_server,
)


@pytest.fixture(scope="session", autouse=True)
def drop_test_databases() -> Iterator[None]:
    yield
    if CREATED_DATABASES:
        on_postgres_server(
            *(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in CREATED_DATABASES)
        )


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that uses a store runs once per backend: the conformance suite."""
    return new_store_url(request.param, tmp_path)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


@pytest.fixture
async def close_completers() -> AsyncIterator[None]:
    """Completers a test made with `tests.test_completion.completer`: their HTTP clients
    are closed on the test's own event loop."""
    yield
    while OPEN_COMPLETERS:
        await OPEN_COMPLETERS.pop().close()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def cli(tmp_path: Path, fake_openai: FakeOpenAI) -> Cli:
    """`tutor` with a fresh database and the fake OpenAI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUTOR_", "OPENAI_"))}
    env.update(
        TUTOR_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}",
        OPENAI_API_KEY=API_KEY,
        OPENAI_BASE_URL=fake_openai.base_url,
        TUTOR_POLL_INTERVAL="0.2",
        TUTOR_RETRY_BASE_DELAY="0.05",
        PYTHONUNBUFFERED="1",
    )
    work = tmp_path / "cwd"
    work.mkdir()
    return Cli(env, work)


MANIFEST = Path(__file__).resolve().parents[1] / "manifest.yml"


def installed_scopes() -> set[str]:
    """The bot scopes the app is installed with: those its manifest asks for."""
    return set(yaml.safe_load(MANIFEST.read_text())["oauth_config"]["scopes"]["bot"])


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(scopes=installed_scopes()).start()
    yield fake
    fake.stop()


@pytest.fixture
def bot_env(cli: Cli, fake_slack: FakeSlack) -> Cli:
    cli.env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_API_URL=fake_slack.base_url,
        TUTOR_ADMINS="",
        TUTOR_LEASE_SECONDS="5",
    )
    return cli


@pytest.fixture
def bot(bot_env: Cli, fake_slack: FakeSlack) -> Iterator[Bot]:
    running = Bot(bot_env, fake_slack)
    yield running
    if running.process is not None and running.process.poll() is None:
        running.kill()
