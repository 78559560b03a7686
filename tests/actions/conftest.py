"""Build real rasa_sdk trackers for action tests (as RasaHQ/financial-demo does)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

DATA = Path(__file__).resolve().parent.parent / "data"


def make_tracker(
    text: str = "",
    intent: str | None = None,
    slots: dict | None = None,
    metadata: dict | None = None,
    entities: list | None = None,
    ranking: list | None = None,
    base: str = "tracker_parent_lunsford.json",
) -> Tracker:
    state = copy.deepcopy(json.loads((DATA / base).read_text()))
    message = state["latest_message"]
    if text:
        message["text"] = text
    if intent:
        message["intent"] = {"name": intent, "confidence": 0.9}
        message["intent_ranking"] = ranking or [{"name": intent, "confidence": 0.9}]
    if entities is not None:
        message["entities"] = entities
    if metadata is not None:
        message["metadata"] = metadata
    state["slots"].update(slots or {})
    return Tracker(
        state["sender_id"],
        state["slots"],
        message,
        state["events"],
        state["paused"],
        state["followup_action"],
        state["active_loop"],
        state["latest_action_name"],
    )


@pytest.fixture
def tracker_factory():
    return make_tracker


@pytest.fixture
def dispatcher():
    return CollectingDispatcher()
