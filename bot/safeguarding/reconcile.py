"""Recover disclosures that reached Rasa while the action server was down.

Rasa still answers such a message (the rule's static safe reply) and saves it in its SQL tracker store, table
``events`` (``rasa.core.tracker_store.SQLTrackerStore.SQLEvent``: id, sender_id, type_name, timestamp,
intent_name, action_name, data = the event as JSON). Any ``user`` event with intent ``disclose`` that has no
Disclosure row for its ``(sender_id, message_id)`` is recorded here with ``source="reconcile"``. Rasa is not
imported: the action server does not need it, and the table layout is all we rely on. A row is read as a user
turn by ``bot/safeguarding/turns.py``, as the actions read the tracker: the same message key (and the legacy
keys older releases used, so nothing is recorded twice), the same verdict and context.

Once a message is committed (recorded here, or found already recorded or spooled, as a disclosure or as
contact details) its words are replaced in the tracker store by the reference (bot/safeguarding/redaction.py):
the tracker store redacts them itself when the action confirmed the commit in the same turn, and this pass
catches the rest (the action server was down, or the record was made in a later turn). A message whose record
failed is never redacted, so it is found again on the next pass.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session

from bot.safeguarding.redaction import CONTACT, DISCLOSURE, event_message_id, placeholder, redact_rows
from bot.safeguarding.service import NOTE_RECORD_TYPE, record_disclosure
from bot.safeguarding.spool import Spool
from bot.safeguarding.store import Disclosure, DisclosureNote, get_engine
from bot.safeguarding.turns import CONTEXT_MESSAGES, message_keys, turn_from_row
from bot.settings import Settings

logger = logging.getLogger(__name__)

DISCLOSURE_INTENT = "disclose"

# Rasa's table, declared rather than reflected so a missing table reads as "nothing to reconcile".
_metadata = MetaData()
tracker_events = Table(
    "events",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("sender_id", String(255)),
    Column("type_name", String(255)),
    Column("timestamp", Float),
    Column("intent_name", String(255)),
    Column("action_name", String(255)),
    Column("data", Text),
)


@dataclass(frozen=True)
class ReconcileReport:
    found: int = 0
    recorded: int = 0
    already_recorded: int = 0
    redacted: int = 0  # committed messages whose words were replaced in the tracker store by this pass
    # Tracker-store rows (ids) of disclosures that could not be recorded: retention must keep them.
    unrecorded: tuple[int, ...] = ()


def tracker_engine(url: str) -> Engine | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or (database != ":memory:" and not os.path.exists(database)):
            return None  # Rasa has not created its tracker store yet: nothing can be missing from ours
        engine = create_engine(url, future=True)
        # Rows rewritten by redaction must not leave the words in the file's free pages.
        event.listen(engine, "connect", _secure_delete)
        return engine
    return create_engine(url, future=True, pool_pre_ping=True)


def _secure_delete(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _data(raw: str | None) -> dict[str, Any]:
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _latest_slot(connection: Connection, sender_id: str, name: str, before_id: int) -> Any:
    row = connection.execute(
        select(tracker_events.c.data)
        .where(
            tracker_events.c.sender_id == sender_id,
            tracker_events.c.type_name == "slot",
            tracker_events.c.action_name == name,
            tracker_events.c.id < before_id,
        )
        .order_by(tracker_events.c.id.desc())
        .limit(1)
    ).first()
    return _data(row.data).get("value") if row else None


def _earlier(connection: Connection, sender_id: str, before_id: int) -> list[dict[str, Any]]:
    """The conversation's last few user and bot events before row ``before_id``, oldest first."""
    rows = connection.execute(
        select(tracker_events.c.type_name, tracker_events.c.data)
        .where(
            tracker_events.c.sender_id == sender_id,
            tracker_events.c.type_name.in_(("user", "bot")),
            tracker_events.c.id < before_id,
        )
        .order_by(tracker_events.c.id.desc())
        .limit(CONTEXT_MESSAGES)
    ).all()
    return [{"event": row.type_name, "text": _data(row.data).get("text")} for row in reversed(rows)]


def _recorded_keys(settings: Settings, sender_ids: list[str]) -> dict[tuple[str, str], str]:
    """(sender_id, message_id) already in the database, or waiting in the spool to be replayed there, each
    with what the tracker store may keep instead of its words.

    Messages kept as contact details after a disclosure count too: the intent classifier often calls a name
    or a phone number "disclose", and such a message is already with the DSL, attached to its disclosure (the
    contact action records it as a disclosure of its own when the rules layer says it is one).
    """
    known: dict[tuple[str, str], str] = {}
    with Session(get_engine(settings.database_url), future=True) as session:
        for start in range(0, len(sender_ids), 500):
            chunk = sender_ids[start : start + 500]
            notes = session.execute(
                select(DisclosureNote.sender_id, DisclosureNote.message_id, Disclosure.reference)
                .join(Disclosure, Disclosure.id == DisclosureNote.disclosure_id)
                .where(DisclosureNote.sender_id.in_(chunk))
            ).all()
            known.update(((sender, message), placeholder(CONTACT, ref)) for sender, message, ref in notes)
            # A message kept both ways (a disclosure inside contact details) shows as the disclosure.
            disclosures = session.execute(
                select(Disclosure.sender_id, Disclosure.message_id, Disclosure.reference).where(
                    Disclosure.sender_id.in_(chunk)
                )
            ).all()
            known.update(
                ((sender, message), placeholder(DISCLOSURE, ref)) for sender, message, ref in disclosures
            )
    for record in Spool(settings.spool_dir).records():
        if record.get("record_type") == NOTE_RECORD_TYPE:
            key = (str(record.get("note_sender_id")), str(record.get("note_message_id")))
            known.setdefault(key, placeholder(CONTACT, str(record.get("disclosure_reference") or "pending")))
        else:
            key = (str(record.get("sender_id")), str(record.get("message_id")))
            known[key] = placeholder(DISCLOSURE, str(record["reference"]))
    return known


def reconcile_from_tracker_store(
    settings: Settings, since: datetime | float | None = None, until: float | None = None
) -> ReconcileReport:
    """Record every ``disclose`` user message in the tracker store that has no Disclosure yet (idempotent);
    ``since``/``until`` bound the messages' timestamps."""
    engine = tracker_engine(settings.tracker_database_url)
    if engine is None:
        return ReconcileReport()
    if isinstance(since, datetime):
        since = (since if since.tzinfo else since.replace(tzinfo=timezone.utc)).timestamp()
    known: dict[tuple[str, str], str] = {}
    found = recorded = already = 0
    unrecorded: list[int] = []
    try:
        with engine.connect() as connection:
            query = select(tracker_events).where(
                tracker_events.c.type_name == "user", tracker_events.c.intent_name == DISCLOSURE_INTENT
            )
            if since is not None:
                query = query.where(tracker_events.c.timestamp >= since)
            if until is not None:
                query = query.where(tracker_events.c.timestamp < until)
            rows = connection.execute(query.order_by(tracker_events.c.id)).all()
            candidates = [(row, _data(row.data)) for row in rows]
            known = _recorded_keys(settings, sorted({row.sender_id for row, _ in candidates}))
            for row, data in candidates:
                found += 1
                # Recorded under its key or a legacy one (an older release's fallback): not again.
                keys = message_keys(data, row.id)
                if any((row.sender_id, key) in known for key in keys):
                    already += 1
                    continue
                turn = turn_from_row(row, data, _earlier(connection, row.sender_id, row.id))
                fields = turn.disclosure_fields(
                    school=_latest_slot(connection, row.sender_id, "school", row.id)
                    or turn.metadata.get("school"),
                    audience=_latest_slot(connection, row.sender_id, "audience", row.id)
                    or turn.metadata.get("audience"),
                    # A reconciled disclosure has already waited unseen: its risk is never below "high".
                    min_risk="high",
                )
                result = record_disclosure(
                    settings,
                    **fields,
                    source="reconcile",
                    created_at=datetime.fromtimestamp(row.timestamp, timezone.utc) if row.timestamp else None,
                )
                if result.stored != "log":
                    known[(row.sender_id, turn.message_id)] = placeholder(DISCLOSURE, result.reference)
                else:
                    unrecorded.append(row.id)
                if result.created:
                    recorded += 1
                    logger.warning(
                        "Recovered disclosure %s from the Rasa tracker store (the action server missed it)",
                        result.reference,
                    )
                else:
                    already += 1
        redacted = redact_committed(engine, settings, since, known)
    finally:
        engine.dispose()
    return ReconcileReport(
        found=found,
        recorded=recorded,
        already_recorded=already,
        redacted=redacted,
        unrecorded=tuple(unrecorded),
    )


def redact_committed(
    engine: Engine,
    settings: Settings,
    since: float | None,
    known: dict[tuple[str, str], str] | None = None,
) -> int:
    """Replace, in the tracker store, the words of every user message (since ``since``) committed as a
    disclosure or as contact details; returns how many messages were redacted."""
    senders = sorted(_senders_with_records(settings, since) | {sender for sender, _ in (known or {})})
    if not senders:
        return 0
    known = {**_recorded_keys(settings, senders), **(known or {})}
    pending: dict[str, dict[str, str]] = {}
    first_row: dict[str, int] = {}
    with engine.connect() as connection:
        for start in range(0, len(senders), 500):
            query = select(tracker_events.c.id, tracker_events.c.sender_id, tracker_events.c.data).where(
                tracker_events.c.type_name == "user",
                tracker_events.c.sender_id.in_(senders[start : start + 500]),
            )
            if since is not None:
                query = query.where(tracker_events.c.timestamp >= since)
            for row in connection.execute(query.order_by(tracker_events.c.id)):
                data = _data(row.data)
                key = event_message_id(data)
                replacement = next(
                    (
                        known[(row.sender_id, k)]
                        for k in message_keys(data, row.id)
                        if (row.sender_id, k) in known
                    ),
                    None,
                )
                if key and replacement and data.get("text") != replacement:
                    pending.setdefault(row.sender_id, {})[key] = replacement
                    first_row.setdefault(row.sender_id, row.id)
    redacted = 0
    for sender_id, committed in pending.items():
        with engine.begin() as connection:
            rows = connection.execute(
                select(tracker_events.c.id, tracker_events.c.data)
                .where(tracker_events.c.sender_id == sender_id, tracker_events.c.id >= first_row[sender_id])
                .order_by(tracker_events.c.id)
            ).all()
            found, changed = redact_rows(rows, committed)
            for row, data in changed:
                connection.execute(
                    update(tracker_events).where(tracker_events.c.id == row.id).values(data=data)
                )
            redacted += len(found)
    if redacted:
        logger.info(
            "Replaced the words of %d committed messages in the tracker store by their reference", redacted
        )
    return redacted


def _senders_with_records(settings: Settings, since: float | None) -> set[str]:
    """Conversations with a disclosure or contact details recorded (since ``since``), or spooled."""
    senders: set[str] = set()
    with Session(get_engine(settings.database_url), future=True) as session:
        for model in (Disclosure, DisclosureNote):
            query = select(model.sender_id).distinct()
            if since is not None:
                query = query.where(model.created_at >= datetime.fromtimestamp(since, timezone.utc))
            senders.update(session.execute(query).scalars())
    for record in Spool(settings.spool_dir).records():
        senders.add(str(record.get("note_sender_id") or record.get("sender_id")))
    return senders
