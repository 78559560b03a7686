"""Safeguarding actions: record a disclosure before any reply, then tell the person what happens next.

The rule is: intent ``disclose`` -> ``action_log_disclosure`` -> ``utter_disclosure_safe`` ->
``action_disclosure_reference``. The logging action sends nothing and never raises: whatever goes wrong, the
safe reply still follows, and the words are kept (database, else spool, else Rasa's tracker store, which the
worker reconciles).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.safeguarding.handoff_texts import handoff_text
from bot.safeguarding.service import RecordResult, record_disclosure
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

REFERENCE_SLOT = "disclosure_reference"
CONTEXT_MESSAGES = 6

__all__ = ["ActionDisclosureReference", "ActionLogDisclosure", "maybe_start_worker"]


def _assess(text: str, latest_message: Mapping[str, Any]) -> tuple[list[str], str]:
    """Categories and risk: the NLU pipeline's result if present, else the detector, else other/high."""
    stored = latest_message.get("safeguarding")
    if isinstance(stored, Mapping) and stored.get("categories"):
        return list(stored["categories"]), str(stored.get("risk") or "high")
    try:
        # Imported here so a missing or broken detector can never stop a disclosure being recorded.
        from bot.safeguarding.detector import assess

        assessment = assess(text)
        return list(assessment.categories) or ["other"], str(assessment.risk)
    except Exception:
        logger.warning(
            "Safeguarding detector unavailable; recording the disclosure as other/high", exc_info=True
        )
        return ["other"], "high"


def _latest_user_index(events: list[Any], message_id: Any) -> int | None:
    latest = None
    for index, event in enumerate(events):
        if isinstance(event, Mapping) and event.get("event") == "user":
            latest = index
            if message_id and event.get("message_id") == message_id:
                return index
    return latest


def _latest_channel(events: list[Any]) -> Any:
    """Like Tracker.get_latest_input_channel, but tolerant of malformed events."""
    for event in reversed(events):
        if isinstance(event, Mapping) and event.get("event") == "user":
            return event.get("input_channel")
    return None


def _context(events: list[Any], before: int | None) -> list[dict[str, str]]:
    """The last few user and bot messages before the disclosure, oldest first."""
    earlier = events[:before] if before is not None else events
    messages = [
        {"who": str(event.get("event")), "text": str(event.get("text") or "")}
        for event in earlier
        if isinstance(event, Mapping) and event.get("event") in ("user", "bot") and event.get("text")
    ]
    return messages[-CONTEXT_MESSAGES:]


def _slot(tracker: Tracker, name: str, metadata: Mapping[str, Any]) -> Any:
    value = tracker.slots.get(name) if isinstance(tracker.slots, Mapping) else None
    return value if value else metadata.get(name)


def _disclosure_fields(tracker: Tracker) -> dict[str, Any]:
    latest = tracker.latest_message if isinstance(tracker.latest_message, Mapping) else {}
    events = tracker.events if isinstance(tracker.events, list) else []
    metadata = latest.get("metadata") if isinstance(latest.get("metadata"), Mapping) else {}
    text = latest.get("text")
    message_id = latest.get("message_id")
    index = _latest_user_index(events, message_id)
    if not message_id and index is not None:
        event = events[index]
        # Rasa always sets one; if not, the event's timestamp still identifies this message on a retry.
        message_id = event.get("message_id") or (
            f"event-ts:{event['timestamp']}" if event.get("timestamp") else None
        )
    categories, risk = _assess(str(text or ""), latest)
    return dict(
        school=_slot(tracker, "school", metadata),
        audience=_slot(tracker, "audience", metadata),
        channel=_latest_channel(events),
        sender_id=tracker.sender_id,
        message_id=message_id,
        text=text,
        context=_context(events, index),
        categories=categories,
        risk=risk,
    )


def _emergency_spool(settings: Settings | None, tracker: Tracker) -> RecordResult | None:
    """Last resort when recording itself failed unexpectedly: spool whatever can be read of the message."""
    try:
        from bot.safeguarding.service import prepare_disclosure, spool_disclosure

        settings = settings or get_settings()
        latest = tracker.latest_message if isinstance(tracker.latest_message, Mapping) else {}
        prepared = prepare_disclosure(
            settings,
            school=None,
            audience=None,
            channel=None,
            sender_id=getattr(tracker, "sender_id", None),
            message_id=latest.get("message_id"),
            text=latest.get("text"),
            context=None,
            categories=None,
            risk=None,
        )
        return RecordResult(reference=spool_disclosure(settings, prepared), stored="spool")
    except Exception:
        logger.critical(
            "DISCLOSURE NOT STORED for conversation %r: recording and the emergency spool both failed. "
            "The message is still in Rasa's tracker store; run `schoolguide disclosures reconcile`.",
            getattr(tracker, "sender_id", None),
            exc_info=True,
        )
        return None


def _wake_worker() -> None:
    try:
        from bot.safeguarding.worker import wake

        wake()
    except Exception:
        logger.warning("Could not wake the safeguarding worker; alerts go on its next pass", exc_info=True)


class ActionLogDisclosure(Action):
    """Record the latest user message as a disclosure, before any reply; sets ``disclosure_reference``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    def name(self) -> str:
        return "action_log_disclosure"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        result: RecordResult | None = None
        try:
            settings = self._settings or get_settings()
            fields = _disclosure_fields(tracker)
            # The database and spool writes block; keep the action server's event loop free meanwhile.
            result = await asyncio.to_thread(record_disclosure, settings, **fields)
        except Exception:
            logger.exception("Recording a disclosure failed unexpectedly; using the emergency spool")
            result = _emergency_spool(self._settings, tracker)
        if result is not None and result.stored != "log":
            _wake_worker()
            return [SlotSet(REFERENCE_SLOT, result.reference)]
        return [SlotSet(REFERENCE_SLOT, None)]


class ActionDisclosureReference(Action):
    """After the safe reply: the reference for staff and parents, a gentle optional offer for pupils."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    def name(self) -> str:
        return "action_disclosure_reference"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        try:
            latest = tracker.latest_message if isinstance(tracker.latest_message, Mapping) else {}
            metadata = latest.get("metadata") if isinstance(latest.get("metadata"), Mapping) else {}
            audience = _slot(tracker, "audience", metadata)
            if not audience:
                audience = (self._settings or get_settings()).default_audience
            reference = tracker.slots.get(REFERENCE_SLOT) if isinstance(tracker.slots, Mapping) else None
            text = handoff_text(str(audience), str(reference) if reference else None)
        except Exception:
            logger.exception("Could not tailor the disclosure hand-off message")
            text = handoff_text(None, None)
        dispatcher.utter_message(text=text)
        return []


def maybe_start_worker(settings: Settings | None = None) -> bool:
    """Start the hand-off worker in the action server unless SCHOOLGUIDE_WORKER=off (tests set it off)."""
    settings = settings or get_settings()
    if not settings.worker_enabled:
        return False
    try:
        from bot.safeguarding.worker import start_background_worker

        start_background_worker(settings)
        return True
    except Exception:
        logger.critical("The safeguarding worker could not start: alerts will not be sent", exc_info=True)
        return False
