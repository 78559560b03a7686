"""Disclosures the action server missed are recovered from a tracker store written by Rasa itself."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.safeguarding.cases import read_case
from bot.safeguarding.reconcile import reconcile_from_tracker_store
from bot.safeguarding.store import Disclosure, get_engine

WORDS = "I want to die"


@pytest.fixture(scope="module")
def rasa():
    """Rasa's own tracker classes (imported once; slow to import)."""
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    domain = Domain.from_dict(
        {
            "intents": ["greet", "disclose", "policy_question"],
            "slots": {
                name: {"type": "text", "influence_conversation": False, "mappings": [{"type": "custom"}]}
                for name in ("school", "audience")
            },
        }
    )

    class Rasa:
        pass

    ns = Rasa()
    ns.__dict__.update(
        SQLTrackerStore=SQLTrackerStore,
        DialogueStateTracker=DialogueStateTracker,
        domain=domain,
        ActionExecuted=ActionExecuted,
        BotUttered=BotUttered,
        SlotSet=SlotSet,
        UserUttered=UserUttered,
    )
    return ns


def _user(rasa, text, intent, message_id, timestamp, **extra):
    return rasa.UserUttered(
        text,
        intent={"name": intent, "confidence": 0.93},
        timestamp=timestamp,
        input_channel="socketio",
        message_id=message_id,
        **extra,
    )


async def _save(rasa, settings, sender_id, events):
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    store = rasa.SQLTrackerStore(rasa.domain, dialect="sqlite", db=str(settings.var_dir / "tracker.db"))
    tracker = rasa.DialogueStateTracker.from_events(sender_id, events, slots=rasa.domain.slots)
    await store.save(tracker)
    store.engine.dispose()


def _conversation(rasa, start):
    return [
        rasa.ActionExecuted("action_listen", timestamp=start),
        rasa.SlotSet("school", "scotts", timestamp=start + 1),
        rasa.SlotSet("audience", "pupil", timestamp=start + 1),
        _user(rasa, "hi", "greet", "m-hi", start + 2),
        rasa.BotUttered("Hello! What would you like to know?", timestamp=start + 3),
        _user(rasa, "can I post photos of my friends?", "policy_question", "m-q", start + 4),
        rasa.BotUttered("Only with their permission (clause 4.2).", timestamp=start + 5),
        _user(rasa, WORDS, "disclose", "m-disclose", start + 6),
        rasa.BotUttered("Thank you for telling me. You are not in trouble.", timestamp=start + 7),
    ]


async def test_missed_disclosure_is_recorded_with_context_and_slots(rasa, settings):
    start = time.time() - 3600
    await _save(rasa, settings, "pupil-42", _conversation(rasa, start))

    report = reconcile_from_tracker_store(settings)
    assert (report.found, report.recorded, report.already_recorded) == (1, 1, 0)

    with Session(get_engine(settings.database_url), future=True) as session:
        row = session.execute(select(Disclosure)).scalar_one()
    assert (row.sender_id, row.message_id, row.source) == ("pupil-42", "m-disclose", "reconcile")
    assert (row.school, row.audience, row.channel) == ("scotts", "pupil", "socketio")
    assert row.risk in ("high", "immediate")
    assert abs(row.created_at - datetime.fromtimestamp(start + 6, timezone.utc)).total_seconds() < 1
    case = read_case(settings, row.reference, actor="test")
    assert case.text == WORDS
    assert case.context == (
        {"who": "user", "text": "hi"},
        {"who": "bot", "text": "Hello! What would you like to know?"},
        {"who": "user", "text": "can I post photos of my friends?"},
        {"who": "bot", "text": "Only with their permission (clause 4.2)."},
    )
    assert [alert["recipient"] for alert in case.alerts] == ["dsl@lunsford.example", "head@lunsford.example"]

    again = reconcile_from_tracker_store(settings)
    assert (again.found, again.recorded, again.already_recorded) == (1, 0, 1)


async def test_disclosure_the_action_recorded_is_not_recorded_again(rasa, settings, record):
    await _save(rasa, settings, "pupil-42", _conversation(rasa, time.time()))
    by_action = record(settings, sender_id="pupil-42", message_id="m-disclose", text=WORDS)

    report = reconcile_from_tracker_store(settings)
    assert (report.recorded, report.already_recorded) == (0, 1)
    with Session(get_engine(settings.database_url), future=True) as session:
        assert session.execute(select(Disclosure.reference)).scalars().all() == [by_action.reference]


async def test_categories_from_parse_data_and_school_from_metadata(rasa, settings):
    stored = {"categories": ["image_sharing_sextortion"], "risk": "immediate"}
    events = [
        _user(
            rasa,
            "someone is sharing my nudes",
            "disclose",
            "m-1",
            time.time(),
            parse_data={"safeguarding": stored, "intent": {"name": "disclose", "confidence": 1.0}},
            metadata={"school": "linden-lodge", "audience": "parent"},
        ),
    ]
    await _save(rasa, settings, "parent-7", events)

    assert reconcile_from_tracker_store(settings).recorded == 1
    with Session(get_engine(settings.database_url), future=True) as session:
        row = session.execute(select(Disclosure)).scalar_one()
    assert (row.categories, row.risk) == (["image_sharing_sextortion"], "immediate")
    assert (row.school, row.audience) == ("linden-lodge", "parent")


async def test_since_limits_the_search(rasa, settings):
    old = time.time() - 10 * 86400
    await _save(rasa, settings, "pupil-old", _conversation(rasa, old))
    assert reconcile_from_tracker_store(settings, since=datetime.now(timezone.utc)).found == 0
    assert reconcile_from_tracker_store(settings, since=old).recorded == 1


def test_no_tracker_store_yet_means_nothing_to_reconcile(settings):
    assert not (settings.var_dir / "tracker.db").exists()
    assert reconcile_from_tracker_store(settings).found == 0


async def test_reconcile_reads_rasa_rows_not_guesses(rasa, settings):
    """Guard the schema assumption: the row Rasa wrote carries the fields reconcile relies on."""
    await _save(rasa, settings, "pupil-42", _conversation(rasa, time.time()))
    from sqlalchemy import create_engine, text

    engine = create_engine(settings.tracker_database_url, future=True)
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT type_name, intent_name, data FROM events WHERE intent_name = 'disclose'")
        ).one()
        slot = connection.execute(
            text("SELECT action_name FROM events WHERE type_name = 'slot' LIMIT 1")
        ).one()
    engine.dispose()
    data = json.loads(row.data)
    assert row.type_name == "user" and data["message_id"] == "m-disclose" and data["text"] == WORDS
    assert slot.action_name == "school"
