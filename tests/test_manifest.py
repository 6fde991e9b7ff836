"""manifest.yml against Slack's published manifest schema, and against what the bot uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from bot.catchup import CONVERSATION_TYPES
from bot.pacing import METHOD_TIERS, TIERS
from fakes.slack_server import SPECS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = SPECS.parent / "manifest.schema.1.0.0.json"


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "manifest.yml").read_text())
    return loaded


def test_manifest_matches_slacks_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(json.loads(json.dumps(manifest())), schema)


def test_manifest_has_what_the_bot_needs() -> None:
    app = manifest()
    assert app["settings"]["socket_mode_enabled"] is True
    assert app["settings"]["interactivity"]["is_enabled"] is True
    [command] = app["features"]["slash_commands"]
    assert command["command"] == "/tutor" and "ask <question>" in command["usage_hint"]
    assert command["should_escape"] is True  # `/tutor allow #channel` arrives with its id
    events = set(app["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.channels", "message.groups", "message.im"} <= events
    scopes = set(app["oauth_config"]["scopes"]["bot"])
    for method in ("chat.postMessage", "chat.startStream", "conversations.replies", "users.info"):
        spec = json.loads((SPECS / f"{method}.json").read_text())
        assert scopes & set(spec["scope"]["bot"]), method
    assert "chat:write.customize" in scopes  # answers show their assistant's name and icon
    assert "feedback" in command["usage_hint"] and "assistant edit" in command["usage_hint"]
    read = {"public_channel": "channels", "private_channel": "groups", "im": "im"}
    for kind in CONVERSATION_TYPES.split(","):  # catch-up lists these and reads their history
        assert {f"{read[kind]}:read", f"{read[kind]}:history"} <= scopes, kind


def test_pacing_uses_the_specs_rate_tiers() -> None:
    for method, tier in METHOD_TIERS.items():
        spec = json.loads((SPECS / f"{method}.json").read_text())
        assert spec["rate_limits"] == tier, method
        assert tier in TIERS
