"""One reading of a user turn (bot/safeguarding/turns.py): the same key, words and verdict for the actions and
the reconciler, and records stored under the keys older releases used are still recognised."""

from __future__ import annotations

import json
from types import SimpleNamespace

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import create_engine, insert, select
from sqlalchemy.orm import Session

from actions.safeguarding import ActionLogDisclosure
from bot.safeguarding.reconcile import _metadata, reconcile_from_tracker_store, tracker_events
from bot.safeguarding.store import Disclosure, get_engine
from bot.safeguarding.turns import Conversation, message_key, message_keys, turn_from_row

WORDS = "my teacher keeps messaging me on snapchat and says its our secret"


def _user(text, timestamp, message_id=None, intent="disclose"):
    event = {
        "event": "user",
        "text": text,
        "timestamp": timestamp,
        "input_channel": "socketio",
        "parse_data": {"intent": {"name": intent, "confidence": 0.9}, "entities": []},
    }
    if message_id:
        event["message_id"] = message_id
    return event


# --- the key rule -------------------------------------------------------------------------------------------


def test_the_key_is_rasas_message_id_else_the_event_timestamp_else_the_stored_row():
    assert message_keys({"message_id": "m1", "timestamp": 5.5}, row_id=7) == (
        "m1",
        "event-ts:5.5",
        "tracker-event:7",
    )
    assert message_key({"parse_data": {"message_id": "m2"}, "timestamp": 5.5}) == "m2"
    # No message id: the timestamp, in the SDK tracker and in a stored row alike (one rule, one key).
    assert message_key({"timestamp": 5.5}) == message_key({"timestamp": 5.5}, row_id=7) == "event-ts:5.5"
    # Older reconcilers keyed such a message by its row: that stays an alias, so lookups still find it.
    assert message_keys({"timestamp": 5.5}, row_id=7) == ("event-ts:5.5", "tracker-event:7")
    assert message_keys({}, row_id=7) == ("tracker-event:7",)
    assert message_keys({}) == ()


def test_the_actions_and_the_reconciler_read_the_same_turn_from_the_same_events():
    events = [
        {"event": "action", "name": "action_session_start", "timestamp": 1.0},
        _user("hello", 2.0, "m0"),
        {"event": "bot", "text": "Hi! How can I help?", "timestamp": 3.0},
        _user(WORDS, 4.0),  # no message id
    ]
    latest = {**events[-1]["parse_data"], "text": WORDS}
    conversation = Conversation(
        SimpleNamespace(sender_id="conv-1", events=events, latest_message=latest, slots={})
    )
    from_tracker = conversation.latest_turn()
    # The reconciler gets the earlier events of the same conversation from the tracker store.
    row = SimpleNamespace(id=12, sender_id="conv-1")
    from_row = turn_from_row(row, json.loads(json.dumps(events[-1])), events[:-1])

    assert from_tracker.message_id == from_row.message_id == "event-ts:4.0"
    assert from_row.aliases == ("tracker-event:12",)
    for name in ("sender_id", "channel", "text", "context"):
        assert getattr(from_tracker, name) == getattr(from_row, name), name
    assert from_tracker.context == (
        {"who": "user", "text": "hello"},
        {"who": "bot", "text": "Hi! How can I help?"},
    )


def test_the_session_starts_after_the_latest_session_started_event():
    events = [
        {"event": "action", "name": "action_session_start", "timestamp": 1.0},
        _user(WORDS, 2.0, "old"),
        {"event": "action", "name": "action_log_disclosure", "timestamp": 2.1},
        {"event": "action", "name": "action_session_start", "timestamp": 90.0},
        {"event": "session_started", "timestamp": 90.1},
        {"event": "slot", "name": "disclosure_reference", "value": "SG-AAAA-BBBB", "timestamp": 90.2},
        _user("Amy 5B", 91.0, "new"),
    ]
    tracker = SimpleNamespace(
        sender_id="conv-1", events=events, latest_message={"text": "Amy 5B", "message_id": "new"}, slots={}
    )
    conversation = Conversation(tracker)
    assert conversation.session_keys() == {"new", "event-ts:91.0"}
    assert conversation.disclosure_index() is None  # the disclosure was in the earlier session


# --- records under the old keys are still recognised ---------------------------------------------------


def _tracker_store(settings, rows):
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.tracker_database_url, future=True)
    _metadata.create_all(engine)
    with engine.begin() as connection:
        for row_id, data in rows:
            connection.execute(
                insert(tracker_events).values(
                    id=row_id,
                    sender_id="conv-1",
                    type_name=data["event"],
                    timestamp=data.get("timestamp"),
                    intent_name=(data.get("parse_data") or {}).get("intent", {}).get("name"),
                    data=json.dumps(data),
                )
            )
    engine.dispose()


def _disclosures(settings):
    with Session(get_engine(settings.database_url), future=True) as session:
        return session.execute(select(Disclosure.reference, Disclosure.message_id)).all()


def test_a_disclosure_an_older_reconciler_keyed_by_row_is_not_recorded_again(settings, record):
    _tracker_store(settings, [(1, _user("hi", 1.0, "m0", intent="greet")), (2, _user(WORDS, 2.5))])
    old = record(settings, sender_id="conv-1", message_id="tracker-event:2", text=WORDS).reference

    report = reconcile_from_tracker_store(settings)
    assert (report.found, report.recorded, report.already_recorded) == (1, 0, 1)
    assert _disclosures(settings) == [(old, "tracker-event:2")]


async def test_the_action_finds_a_record_under_a_legacy_key_of_its_message(settings, record):
    """Recorded by an older reconciler under the row key; the action now runs for the same message."""
    old = record(settings, sender_id="conv-1", message_id="event-ts:2.5", text=WORDS).reference
    again = record(
        settings, sender_id="conv-1", message_id="m-new", message_aliases=["event-ts:2.5"], text=WORDS
    )
    assert (again.reference, again.created) == (old, False)
    assert len(_disclosures(settings)) == 1


async def test_the_reconciler_and_the_action_agree_on_a_message_without_an_id(settings):
    events = [_user("hi", 1.0, "m0", intent="greet"), _user(WORDS, 2.5)]
    _tracker_store(settings, [(1, events[0]), (2, events[1])])
    latest = {**events[1]["parse_data"], "text": WORDS, "metadata": {}}
    tracker = Tracker(
        "conv-1", {"school": "lunsford", "audience": "pupil"}, latest, events, False, None, {}, ""
    )
    [slot, kind] = await ActionLogDisclosure(settings).run(CollectingDispatcher(), tracker, {})
    assert (slot["name"], kind["name"]) == ("disclosure_reference", "disclosure_kind")

    report = reconcile_from_tracker_store(settings)
    assert (report.found, report.recorded) == (1, 0)
    assert _disclosures(settings) == [(slot["value"], "event-ts:2.5")]
