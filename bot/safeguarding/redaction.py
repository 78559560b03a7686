"""Keep a child's words out of Rasa's tracker store once our own store holds them (encrypted).

Rasa saves every user message, word for word, in its tracker store. Once a disclosure or contact details are
committed (database or spool), the action that committed them marks an event it returns anyway with
``metadata["schoolguide_committed"] = {"message_id", "reference", "kind"}`` (:func:`mark_committed`).
:class:`RedactingTrackerStore` (Rasa's SQL tracker store, named in ``var/endpoints.yml``) then replaces those
words with ``[disclosure SG-…]`` in the user event (text, parse data, entity values, metadata) and in the
events of the same turn that copy them (a form's slot, for instance) *before* they are written: Rasa saves the
user event and the actions' events in one call at the end of the message, so when the commit succeeded the
words never reach the tracker store's disk. A marker for a message saved in an earlier turn rewrites that
stored row (SQLite with ``secure_delete`` so the old bytes are zeroed).

Nothing is redacted without a marker, and a marker is only returned after a confirmed commit, so a disclosure
whose record failed keeps its words here for the reconciler (``bot/safeguarding/reconcile.py``), which redacts
it in turn once it has recorded it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from bot.safeguarding.turns import message_key

logger = logging.getLogger(__name__)

MARKER = "schoolguide_committed"
DISCLOSURE = "disclosure"
CONTACT = "contact_details"
# Entities our detector adds carry category and risk labels, not the person's words.
OWN_EXTRACTOR = "DisclosureDetector"
# Structural keys whose values are Rasa's names (event type, action or slot name), never the person's words.
_STRUCTURAL_KEYS = frozenset({"event", "name", "policy", "type_name"})


def placeholder(kind: str, reference: str) -> str:
    """What the tracker store keeps instead of the words."""
    if kind == CONTACT:
        return f"[contact details for {reference}]"
    return f"[disclosure {reference}]"


def mark_committed(event: dict[str, Any], *, message_id: Any, reference: Any, kind: str) -> dict[str, Any]:
    """``event`` (one the action returns anyway) noting that ``message_id``'s words are committed."""
    if not message_id or not reference:
        return event
    metadata = dict(event.get("metadata") or {})
    metadata[MARKER] = {"message_id": str(message_id), "reference": str(reference), "kind": kind}
    return {**event, "metadata": metadata}


def event_message_id(event: Mapping[str, Any]) -> str | None:
    """The key a user event is recorded under (the one rule: ``turns.message_key``)."""
    return message_key(event)


def committed_in(events: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """message id -> placeholder, for every commit marker in ``events``."""
    found: dict[str, str] = {}
    for event in events:
        metadata = event.get("metadata") if isinstance(event, Mapping) else None
        marker = metadata.get(MARKER) if isinstance(metadata, Mapping) else None
        if isinstance(marker, Mapping) and marker.get("message_id") and marker.get("reference"):
            # A disclosure's placeholder wins over "contact details" for the same message.
            message_id = str(marker["message_id"])
            if found.get(message_id, "").startswith("[disclosure"):
                continue
            found[message_id] = placeholder(str(marker.get("kind") or DISCLOSURE), str(marker["reference"]))
    return found


def _replace_copies(value: Any, words: str, replacement: str, key: str | None = None) -> Any:
    """``value`` with every string equal to ``words`` replaced (Rasa's own names left alone)."""
    if isinstance(value, str):
        if key not in _STRUCTURAL_KEYS and value.strip() == words:
            return replacement
        return value
    if isinstance(value, Mapping):
        return {k: _replace_copies(v, words, replacement, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_copies(item, words, replacement, key) for item in value]
    return value


def _redact_user_event(event: dict[str, Any], replacement: str) -> str | None:
    """Replace the words in a user event in place; returns the words that were there."""
    words = event.get("text")
    event["text"] = replacement
    parse_data = event.get("parse_data")
    if isinstance(parse_data, dict):
        parse_data["text"] = replacement
        entities = parse_data.get("entities")
        if isinstance(entities, list):
            parse_data["entities"] = [_redact_entity(entity, replacement) for entity in entities]
    if isinstance(words, str) and words.strip():
        event.update(_replace_copies(event, words.strip(), replacement))
        return words.strip()
    return None


def _redact_entity(entity: Any, replacement: str) -> Any:
    if not isinstance(entity, dict) or entity.get("extractor") == OWN_EXTRACTOR:
        return entity
    # The type stays (the dialogue policies featurise it); the value and where it was in the text go.
    kept = {k: v for k, v in entity.items() if k not in ("value", "text", "start", "end")}
    return {**kept, "value": replacement}


def redact_events(events: list[dict[str, Any]], committed: Mapping[str, str]) -> set[str]:
    """Redact, in place, each committed message's user event and the copies of its words in its turn.

    Returns the message ids found (and redacted) in ``events``.
    """
    done: set[str] = set()
    words: str | None = None
    replacement = ""
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            continue
        if event.get("event") == "user":
            message_id = event_message_id(event)
            words = None
            if message_id in committed:
                replacement = committed[message_id]
                words = _redact_user_event(event, replacement)
                done.add(message_id)
        elif words:
            events[index] = _replace_copies(event, words, replacement)
    return done


def redact_rows(rows: list[Any], committed: Mapping[str, str]) -> tuple[set[str], list[tuple[Any, str]]]:
    """For stored rows (each with a JSON ``data`` attribute, in event order): the message ids found, and
    ``(row, new data)`` for every row whose JSON changed."""
    datas: list[Any] = []
    for row in rows:
        try:
            datas.append(json.loads(row.data))
        except (TypeError, ValueError):
            datas.append(None)
    before = [json.dumps(data) if isinstance(data, dict) else None for data in datas]
    events = [data if isinstance(data, dict) else {} for data in datas]
    found = redact_events(events, committed)
    changed = [
        (row, json.dumps(event))
        for row, old, event in zip(rows, before, events, strict=True)
        if old is not None and json.dumps(event) != old
    ]
    return found, changed
