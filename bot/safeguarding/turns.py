"""One reading of a user turn from Rasa's tracker, for the actions and for the reconciler.

A user turn is what the safeguarding code needs to know about one message: the conversation (``sender_id``),
the channel, the key it is recorded under, the words, the detector's verdict (categories, risk), the few
messages before it, and where the conversation's current session starts. The actions read it from the Rasa
SDK tracker's event list (dicts, :class:`Conversation`); the reconciler reads the same event dicts from rows
of Rasa's SQL tracker store (:func:`turn_from_row`). Both go through :func:`message_keys`, so a message gets
one key wherever it is read.

**The key rule.** Rasa's ``message_id`` when it set one (it always does today), else ``event-ts:<timestamp>``
(the event's own timestamp, the same in the SDK tracker and in the stored JSON), else
``tracker-event:<row id>`` (a stored row without either). Before this module the reconciler used
``tracker-event:<row id>`` whenever the message id was missing, even with a timestamp: records made by
older releases may carry that key, so a turn also yields its *legacy aliases* (:attr:`UserTurn.keys`) and
every lookup of "is this message recorded?" checks all of them. No record is made twice after an upgrade.

No Rasa imports: the action server and the worker use this without Rasa installed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

CONTEXT_MESSAGES = 6
LOG_ACTION = "action_log_disclosure"
SESSION_START_ACTION = "action_session_start"
RISK_ORDER = {"medium": 0, "high": 1, "immediate": 2}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def message_keys(event: Mapping[str, Any], row_id: Any = None) -> tuple[str, ...]:
    """The keys a user event may be recorded under: the canonical one first, then legacy aliases."""
    keys: list[str] = []
    message_id = event.get("message_id") or _mapping(event.get("parse_data")).get("message_id")
    if message_id:
        keys.append(str(message_id))
    timestamp = event.get("timestamp")
    if timestamp:
        keys.append(f"event-ts:{timestamp}")
    if row_id is not None:
        keys.append(f"tracker-event:{row_id}")
    return tuple(dict.fromkeys(keys))


def message_key(event: Mapping[str, Any], row_id: Any = None) -> str | None:
    """The canonical key of a user event (see the module docstring), or None if it has nothing to key on."""
    keys = message_keys(event, row_id)
    return keys[0] if keys else None


def assess(text: str, parse_data: Mapping[str, Any], *, min_risk: str | None = None) -> tuple[list[str], str]:
    """Categories and risk: what the NLU pipeline stored, else the detector, else other/high.

    ``min_risk`` raises the detector's risk to at least that level (the reconciler uses "high": a disclosure
    it recovers has already waited unseen).
    """
    stored = parse_data.get("safeguarding")
    if isinstance(stored, Mapping) and stored.get("categories"):
        return list(stored["categories"]), str(stored.get("risk") or "high")
    try:
        # Imported here so a missing or broken detector can never stop a disclosure being recorded.
        from bot.safeguarding.detector import assess as detect

        assessment = detect(text)
        risk = str(assessment.risk)
        if min_risk and RISK_ORDER.get(risk, 0) < RISK_ORDER.get(min_risk, 0):
            risk = min_risk
        return list(assessment.categories) or ["other"], risk
    except Exception:
        logger.warning("Safeguarding detector unavailable; taking the message as other/high", exc_info=True)
        return ["other"], "high"


def discloses(text: str, parse_data: Mapping[str, Any]) -> bool:
    """Whether ``text`` is a disclosure. The rules layer decides; the intent classifier alone does not (it
    calls names and phone numbers "disclose"). Without the rules layer: the NLU pipeline's verdict, then the
    intent, erring towards recording."""
    try:
        from bot.safeguarding.detector import assess as detect

        return bool(detect(text).is_disclosure)
    except Exception:
        logger.warning("Safeguarding detector unavailable; using the NLU result instead", exc_info=True)
    stored = parse_data.get("safeguarding")
    if isinstance(stored, Mapping) and stored.get("is_disclosure"):
        return True
    return _mapping(parse_data.get("intent")).get("name") == "disclose"


def context_messages(earlier: Iterable[Any], limit: int = CONTEXT_MESSAGES) -> list[dict[str, str]]:
    """The last ``limit`` user and bot messages of ``earlier`` (events, oldest first) that have words."""
    messages = [
        {"who": str(event.get("event")), "text": str(event.get("text") or "")}
        for event in earlier
        if isinstance(event, Mapping) and event.get("event") in ("user", "bot") and event.get("text")
    ]
    return messages[-limit:] if limit else []


@dataclass(frozen=True)
class UserTurn:
    """One user message as the safeguarding code reads it."""

    sender_id: str | None
    channel: str | None
    keys: tuple[str, ...]  # the canonical key first, then legacy aliases (see message_keys)
    text: str | None
    parse_data: Mapping[str, Any] = field(default_factory=dict)  # intent, entities, safeguarding
    metadata: Mapping[str, Any] = field(default_factory=dict)
    context: tuple[dict[str, str], ...] = ()
    index: int | None = None  # position in the conversation's events (None: not found there)

    @property
    def message_id(self) -> str | None:
        return self.keys[0] if self.keys else None

    @property
    def aliases(self) -> tuple[str, ...]:
        return self.keys[1:]

    @property
    def intent(self) -> str | None:
        name = _mapping(self.parse_data.get("intent")).get("name")
        return str(name) if name else None

    def verdict(self, *, min_risk: str | None = None) -> tuple[list[str], str]:
        """The detector's categories and risk for this message (see :func:`assess`)."""
        return assess(str(self.text or ""), self.parse_data, min_risk=min_risk)

    def disclosure_fields(self, *, school: Any, audience: Any, min_risk: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``service.record_disclosure`` recording this message."""
        categories, risk = self.verdict(min_risk=min_risk)
        return dict(
            school=school,
            audience=audience,
            channel=self.channel,
            sender_id=self.sender_id,
            message_id=self.message_id,
            message_aliases=self.aliases,
            text=self.text,
            context=list(self.context),
            categories=categories,
            risk=risk,
        )


def turn_from_row(row: Any, data: Mapping[str, Any], earlier: Iterable[Any] = ()) -> UserTurn:
    """A user turn from a row of Rasa's SQL tracker store (``id``, ``sender_id``; ``data`` its event JSON);
    ``earlier``: the conversation's events before it (dicts), for the context."""
    return UserTurn(
        sender_id=row.sender_id,
        channel=data.get("input_channel"),
        keys=message_keys(data, row.id),
        text=str(data.get("text") or ""),
        parse_data=_mapping(data.get("parse_data")),
        metadata=_mapping(data.get("metadata")),
        context=tuple(context_messages(earlier)),
        index=row.id,
    )


class Conversation:
    """A Rasa SDK tracker (or anything with ``sender_id``, ``events``, ``latest_message`` and ``slots``) read
    tolerantly: malformed events and missing fields are skipped, never raised on."""

    def __init__(self, tracker: Any) -> None:
        events = getattr(tracker, "events", None)
        latest = getattr(tracker, "latest_message", None)
        slots = getattr(tracker, "slots", None)
        self.sender_id: str | None = getattr(tracker, "sender_id", None)
        self.events: list[Any] = events if isinstance(events, list) else []
        self.latest: Mapping[str, Any] = _mapping(latest)
        self.slots: Mapping[str, Any] = _mapping(slots)

    # --- where things are --------------------------------------------------------------------------------

    def _is_user(self, index: int) -> bool:
        event = self.events[index]
        return isinstance(event, Mapping) and event.get("event") == "user"

    def _is_action(self, index: int, name: str) -> bool:
        event = self.events[index]
        return isinstance(event, Mapping) and event.get("event") == "action" and event.get("name") == name

    def session_start(self) -> int:
        """Index of the first event of the current session (after the latest ``session_started``)."""
        for index in range(len(self.events) - 1, -1, -1):
            event = self.events[index]
            if isinstance(event, Mapping) and (
                event.get("event") == "session_started" or self._is_action(index, SESSION_START_ACTION)
            ):
                return index + 1
        return 0

    def latest_user_index(self) -> int | None:
        """The user event of ``latest_message`` (by message id), else the latest user event."""
        message_id = self.latest.get("message_id")
        latest = None
        for index in range(len(self.events)):
            if self._is_user(index):
                latest = index
                if message_id and self.events[index].get("message_id") == message_id:
                    return index
        return latest

    def disclosure_index(self) -> int | None:
        """The user message ``action_log_disclosure`` last recorded in this session, before the latest one."""
        start = self.session_start()
        current = self.latest_user_index()
        end = current if current is not None else len(self.events)
        for index in range(end - 1, start - 1, -1):
            if self._is_action(index, LOG_ACTION):
                return next((i for i in range(index - 1, start - 1, -1) if self._is_user(i)), None)
        return None

    def user_messages_since(self, action_name: str) -> int | None:
        """User messages since ``action_name`` last ran in this session; None if it has not run in it."""
        count = 0
        for index in range(len(self.events) - 1, -1, -1):
            event = self.events[index]
            if not isinstance(event, Mapping):
                continue
            if self._is_action(index, action_name):
                return count
            if event.get("event") == "session_started" or self._is_action(index, SESSION_START_ACTION):
                return None
            if event.get("event") == "user":
                count += 1
        return None

    def user_messages_after(self, action_name: str) -> int:
        """User messages since ``action_name`` last ran (0 if it never did)."""
        count = 0
        for index in range(len(self.events) - 1, -1, -1):
            if self._is_action(index, action_name):
                return count
            if self._is_user(index):
                count += 1
        return 0

    def session_keys(self) -> frozenset[str]:
        """Every key (canonical and legacy) of every user message in the current session."""
        keys: set[str] = set()
        for index in range(self.session_start(), len(self.events)):
            if self._is_user(index):
                keys.update(message_keys(self.events[index]))
        latest_id = self.latest.get("message_id")
        if latest_id:
            keys.add(str(latest_id))
        return frozenset(keys)

    # --- the turns ---------------------------------------------------------------------------------------

    def slot(self, name: str, metadata: Mapping[str, Any] | None = None) -> Any:
        """A slot's value, else the same key in the message metadata."""
        value = self.slots.get(name)
        return value if value else _mapping(metadata).get(name)

    def turn(self, index: int) -> UserTurn:
        """The user message at ``index`` in the events."""
        event = self.events[index]
        return UserTurn(
            sender_id=self.sender_id,
            channel=event.get("input_channel"),
            keys=message_keys(event),
            text=event.get("text"),
            parse_data=_mapping(event.get("parse_data")),
            metadata=_mapping(event.get("metadata")),
            context=tuple(context_messages(self.events[:index])),
            index=index,
        )

    def latest_turn(self) -> UserTurn:
        """The latest user message: ``latest_message`` (its text and parse data win) and its event."""
        index = self.latest_user_index()
        event = _mapping(self.events[index]) if index is not None else {}
        keys = message_keys(event)
        message_id = self.latest.get("message_id")
        if message_id and event.get("message_id") != message_id:
            keys = (str(message_id),)  # that event is another message: its keys are not this one's
        # Like Tracker.get_latest_input_channel: the newest user event's channel.
        channel = next(
            (
                self.events[i].get("input_channel")
                for i in range(len(self.events) - 1, -1, -1)
                if self._is_user(i)
            ),
            None,
        )
        return UserTurn(
            sender_id=self.sender_id,
            channel=channel,
            keys=keys,
            text=self.latest.get("text"),
            parse_data=self.latest,
            metadata=_mapping(self.latest.get("metadata")),
            context=tuple(context_messages(self.events[:index] if index is not None else self.events)),
            index=index,
        )

    def disclosure_fields(self, turn: UserTurn) -> dict[str, Any]:
        """``record_disclosure`` keyword arguments for ``turn`` of this conversation (school and audience
        from the slots, else the message metadata)."""
        return turn.disclosure_fields(
            school=self.slot("school", turn.metadata), audience=self.slot("audience", turn.metadata)
        )
