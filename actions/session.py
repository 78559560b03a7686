"""action_session_start: copy the school and audience from the client's metadata into slots."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.conversation import resolve_context
from bot.knowledge import get_knowledge
from bot.settings import get_settings

# Slots that describe who is talking; everything else starts afresh with a new session.
CARRIED_SLOTS = ("school", "audience")


class ActionSessionStart(Action):
    def name(self) -> str:
        return "action_session_start"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        metadata = tracker.get_slot("session_started_metadata")
        previous = {name: tracker.get_slot(name) for name in CARRIED_SLOTS}
        context = resolve_context(get_settings(), get_knowledge().schools, metadata, previous)
        return [
            SessionStarted(),
            SlotSet("school", context.school),
            SlotSet("audience", context.audience),
            ActionExecuted("action_listen"),
        ]
