"""Secrets stay secret: `tutor` prints no database password, whatever it prints the URL in."""

from __future__ import annotations

import getpass
import signal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.harness import Cli, Lines, new_store_url

PASSWORD = "pw-never-shown"


def with_password(url: str) -> tuple[str, str]:
    """`url` with a password in it (the one it has, else one the test server ignores)."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    user = parts.username or getpass.getuser()
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{host}")), PASSWORD


def test_the_looper_names_its_database_without_the_password(cli: Cli, tmp_path: Path) -> None:
    url, password = with_password(new_store_url("postgres", tmp_path))
    looper = cli.start("looper", TUTOR_DATABASE_URL=url)
    banner = Lines(looper.stderr).next()  # type: ignore[arg-type]
    looper.send_signal(signal.SIGTERM)
    assert looper.wait(timeout=10) == 0
    assert banner.startswith("looper ") and ":***@" in banner
    assert password not in banner + looper.stdout.read()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://tutor:{PASSWORD}@db.example/tutor",  # a scheme not supported
        f"postgresql://tutor:{PASSWORD}@127.0.0.1:9/tutor",  # nothing listens there
        f"postgresql://tutor@127.0.0.1:9/tutor?password={PASSWORD}",
    ],
)
def test_errors_name_the_database_without_the_password(cli: Cli, url: str) -> None:
    done = cli.run("thread", "ls", TUTOR_DATABASE_URL=url)
    assert done.returncode != 0 and "***" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
