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
from looper.models import ChatCompletionPhysicsTutor

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
    assert "files:read" in scopes  # files on questions come from their private URLs
    assert "feedback" in command["usage_hint"] and "assistant edit" in command["usage_hint"]
    read = {"public_channel": "channels", "private_channel": "groups", "im": "im"}
    for kind in CONVERSATION_TYPES.split(","):  # catch-up lists these and reads their history
        assert {f"{read[kind]}:read", f"{read[kind]}:history"} <= scopes, kind


def test_manifest_declares_the_home_and_messages_tabs() -> None:
    """The Home tab is published, the Messages tab is the agent view (its static prompts are
    the built-in tutor's), and the events and scope of both AI views are there; the older
    assistant view in its place validates too."""
    app = manifest()
    features = app["features"]
    assert features["app_home"]["home_tab_enabled"] is True
    assert features["app_home"]["messages_tab_enabled"] is True
    agent = features["agent_view"]
    assert [p["message"] for p in agent["suggested_prompts"]] == (
        ChatCompletionPhysicsTutor().prompts
    )
    events = set(app["settings"]["event_subscriptions"]["bot_events"])
    assert {
        "app_home_opened",
        "assistant_thread_started",
        "assistant_thread_context_changed",
        "message.im",
    } <= events
    scopes = set(app["oauth_config"]["scopes"]["bot"])
    for method in ("assistant.threads.setSuggestedPrompts", "assistant.threads.setTitle"):
        spec = json.loads((SPECS / f"{method}.json").read_text())
        assert set(spec["scope"]["bot"]) <= scopes, method
    older = json.loads(json.dumps(app))
    view = older["features"].pop("agent_view")
    older["features"]["assistant_view"] = {
        "assistant_description": view["agent_description"],
        "suggested_prompts": view["suggested_prompts"],
    }
    jsonschema.validate(older, json.loads(SCHEMA.read_text()))


def test_pacing_uses_the_specs_rate_tiers() -> None:
    for method, tier in METHOD_TIERS.items():
        spec = json.loads((SPECS / f"{method}.json").read_text())
        assert spec["rate_limits"] == tier, method
        assert tier in TIERS
