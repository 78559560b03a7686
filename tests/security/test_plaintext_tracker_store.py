"""Finding 3: Rasa's tracker store kept every disclosure and every contact detail word for word.

Real actions (rasa_sdk Tracker, CollectingDispatcher, real SQLite or PostgreSQL stores) and the real tracker
store class Rasa loads from var/endpoints.yml. The conversation is saved the way Rasa saves it: the user event
and the actions' events in one call at the end of each message. The check is on the raw bytes of the SQLite
file (and its journals), not on what the store reads back.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import create_engine, text

from actions.safeguarding import ActionLogDisclosure, ActionSaveContactDetails
from bot.safeguarding.cases import list_cases, read_case
from bot.safeguarding.reconcile import reconcile_from_tracker_store
from bot.settings import Settings

DISCLOSURE = "my teacher keeps messaging me on snapchat and says its our secret"
CONTACT = "Amy Lowe 5B"
SENDER = "pupil-42"


@pytest.fixture(scope="module")
def rasa():
    """Rasa's tracker classes and the redacting store (slow to import: once per module)."""
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.safeguarding.tracker_store import RedactingTrackerStore

    names = ("school", "audience", "disclosure_reference", "contact_details", "requested_slot")
    slots = {name: {"type": "any", "mappings": [{"type": "custom"}]} for name in names}
    slots["contact_offered"] = {"type": "bool", "mappings": [{"type": "custom"}]}
    domain = Domain.from_dict({"intents": ["greet", "disclose", "nlu_fallback"], "slots": slots})
    return dataclasses.make_dataclass("Rasa", ["store", "plain", "tracker", "domain"])(
        RedactingTrackerStore, SQLTrackerStore, DialogueStateTracker, domain
    )


@pytest.fixture
def settings(tmp_path) -> Settings:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    return dataclasses.replace(
        Settings.from_env(),
        home=tmp_path,
        var_dir=var_dir,
        database_url=f"sqlite:///{var_dir / 'schoolguide.db'}",
        tracker_database_url=f"sqlite:///{var_dir / 'tracker.db'}",
        encryption_key=Fernet.generate_key().decode(),
        spool_dir=var_dir / "spool",
        dsl_emails=("dsl@lunsford.example",),
        smtp_host=None,
        alert_webhook_url=None,
    )


def _user(words: str, message_id: str, timestamp: float, intent: str) -> dict:
    return {
        "event": "user",
        "text": words,
        "input_channel": "pupil",
        "message_id": message_id,
        "timestamp": timestamp,
        "metadata": {"school": "lunsford", "audience": "pupil", "echo": words},
        "parse_data": {
            "text": words,
            "intent": {"name": intent, "confidence": 0.9},
            "entities": [{"entity": "platform", "value": "snapchat", "start": 32, "end": 40}]
            if "snapchat" in words
            else [],
            "message_id": message_id,
            "metadata": {"school": "lunsford", "audience": "pupil"},
        },
    }


def _sdk_tracker(events: list[dict], slots: dict) -> Tracker:
    user = [event for event in events if event["event"] == "user"][-1]
    latest = {**user["parse_data"], "message_id": user["message_id"], "metadata": user["metadata"]}
    latest["intent"] = user["parse_data"]["intent"]
    return Tracker(SENDER, slots, latest, events, False, None, {}, "action_listen")


def _store(rasa, settings, url: str | None = None, cls=None):
    cls = cls or rasa.store
    if url:
        return cls(rasa.domain, host=url)
    return cls(rasa.domain, dialect="sqlite", db=str(settings.var_dir / "tracker.db"))


async def _save(rasa, store, events: list[dict]) -> None:
    await store.save(rasa.tracker.from_dict(SENDER, events, rasa.domain.slots))


async def _disclosure_turn(settings, events: list[dict]) -> list[dict]:
    """The user's disclosure, action_log_disclosure and the safe reply; returns the events after it."""
    slots = {"school": "lunsford", "audience": "pupil", "disclosure_reference": None}
    events.append(_user(DISCLOSURE, "m-disclose", 4.0, "disclose"))
    returned = await ActionLogDisclosure(settings).run(
        CollectingDispatcher(), _sdk_tracker(events, slots), {}
    )
    events += [{"event": "action", "name": "action_log_disclosure", "timestamp": 4.1}]
    events += [{**event, "timestamp": 4.2} for event in returned]
    events += [
        {"event": "action", "name": "utter_disclosure_safe", "timestamp": 4.3},
        {"event": "bot", "text": "Thank you for telling me.", "timestamp": 4.4},
        {"event": "slot", "name": "contact_offered", "value": True, "timestamp": 4.6},
        {"event": "action", "name": "contact_form", "timestamp": 4.7},
        {"event": "active_loop", "name": "contact_form", "timestamp": 4.8},
        {"event": "slot", "name": "requested_slot", "value": "contact_details", "timestamp": 4.9},
        {"event": "action", "name": "action_listen", "timestamp": 5.1},
    ]
    return returned


async def _contact_turn(settings, events: list[dict], reference: str | None) -> None:
    events += [
        _user(CONTACT, "m-contact", 6.0, "nlu_fallback"),
        {"event": "slot", "name": "contact_details", "value": CONTACT, "timestamp": 6.1},
        {"event": "action", "name": "contact_form", "timestamp": 6.2},
        {"event": "active_loop", "name": None, "timestamp": 6.3},
        {"event": "slot", "name": "requested_slot", "value": None, "timestamp": 6.4},
    ]
    slots = {
        "school": "lunsford",
        "audience": "pupil",
        "disclosure_reference": reference,
        "contact_offered": True,
        "contact_details": CONTACT,
    }
    returned = await ActionSaveContactDetails(settings).run(
        CollectingDispatcher(), _sdk_tracker(events, slots), {}
    )
    events += [{"event": "action", "name": "action_save_contact_details", "timestamp": 6.5}]
    events += [{**event, "timestamp": 6.6} for event in returned]
    events += [{"event": "action", "name": "action_listen", "timestamp": 6.7}]


def _start() -> list[dict]:
    return [
        {"event": "action", "name": "action_session_start", "timestamp": 1.0},
        {"event": "session_started", "timestamp": 1.0},
        {"event": "slot", "name": "school", "value": "lunsford", "timestamp": 1.1},
        {"event": "slot", "name": "audience", "value": "pupil", "timestamp": 1.2},
        {"event": "action", "name": "action_listen", "timestamp": 1.3},
    ]


def _file_bytes(settings) -> bytes:
    """The tracker store file and any journal SQLite left beside it."""
    base = settings.var_dir / "tracker.db"
    return b"".join(path.read_bytes() for path in base.parent.glob("tracker.db*"))


def _stored(url: str) -> list[dict]:
    engine = create_engine(url, future=True)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT type_name, intent_name, data FROM events ORDER BY id")).all()
    engine.dispose()
    return [{"type": row.type_name, "intent": row.intent_name, **json.loads(row.data)} for row in rows]


def _words_in(values: list[dict]) -> list[str]:
    dump = json.dumps(values).lower()
    return [words for words in (DISCLOSURE, CONTACT, "snapchat", "amy lowe") if words.lower() in dump]


async def test_the_plain_sql_tracker_store_keeps_the_words(rasa, settings):
    """The finding as it was (and proof that the byte check below can see the words)."""
    store = _store(rasa, settings, cls=rasa.plain)
    events = _start()
    await _disclosure_turn(settings, events)
    await _save(rasa, store, events)
    store.engine.dispose()
    assert DISCLOSURE.encode() in _file_bytes(settings)


async def test_committed_disclosure_and_contact_details_never_reach_the_tracker_store_file(rasa, settings):
    store = _store(rasa, settings)
    events = _start()
    returned = await _disclosure_turn(settings, events)
    reference = returned[0]["value"]
    await _save(rasa, store, events)
    await _contact_turn(settings, events, reference)
    await _save(rasa, store, events)
    store.engine.dispose()

    raw = _file_bytes(settings)
    for words in (DISCLOSURE, CONTACT, "snapchat"):
        assert words.encode() not in raw, words
    stored = _stored(settings.tracker_database_url)
    users = [event for event in stored if event["type"] == "user"]
    assert [user["text"] for user in users] == [
        f"[disclosure {reference}]",
        f"[contact details for {reference}]",
    ]
    assert users[0]["parse_data"]["text"] == f"[disclosure {reference}]"
    assert users[0]["metadata"]["echo"] == f"[disclosure {reference}]"  # a copy in the metadata too
    # What the dialogue policies and the reconciler rely on is kept: intent, entity type, message id.
    assert users[0]["intent"] == "disclose" and users[0]["message_id"] == "m-disclose"
    assert [entity["entity"] for entity in users[0]["parse_data"]["entities"]] == ["platform"]
    slot_values = [event.get("value") for event in stored if event["type"] == "slot"]
    assert CONTACT not in slot_values and f"[contact details for {reference}]" in slot_values

    # Our own store has the words (encrypted), so nothing was lost...
    [case] = list_cases(settings, actor="test")
    assert read_case(settings, case.reference, actor="test").text == DISCLOSURE
    assert [note["text"] for note in read_case(settings, case.reference, actor="test").contact] == [CONTACT]
    # ...and the reconciler sees both messages as recorded.
    report = reconcile_from_tracker_store(settings)
    assert (report.found, report.recorded) == (1, 0)

    # Rasa still loads the conversation, with its slots, from the redacted store.
    reloaded = await _store(rasa, settings).retrieve(SENDER)
    assert reloaded.get_slot("disclosure_reference") == reference
    assert reloaded.latest_message.text == f"[contact details for {reference}]"


async def test_a_disclosure_whose_record_failed_keeps_its_words_until_reconciled(rasa, settings, tmp_path):
    broken = dataclasses.replace(
        settings,
        database_url="postgresql+psycopg2://postgres@127.0.0.1:9/nowhere",  # nothing listens on port 9
        spool_dir=_unwritable(tmp_path),
    )
    store = _store(rasa, settings)
    events = _start()
    returned = await _disclosure_turn(broken, events)
    assert returned == [
        {"event": "slot", "timestamp": None, "name": "disclosure_reference", "value": None},
        {"event": "slot", "timestamp": None, "name": "disclosure_kind", "value": "grooming"},
    ]
    await _save(rasa, store, events)
    store.engine.dispose()
    assert DISCLOSURE.encode() in _file_bytes(settings)  # the reconciler's only copy: must stay

    report = reconcile_from_tracker_store(settings)  # the database is back
    assert (report.recorded, report.redacted) == (1, 1)
    assert DISCLOSURE.encode() not in _file_bytes(settings)
    [case] = list_cases(settings, actor="test")
    assert read_case(settings, case.reference, actor="test").text == DISCLOSURE
    users = [event for event in _stored(settings.tracker_database_url) if event["type"] == "user"]
    assert users[0]["text"] == f"[disclosure {case.reference}]"
    assert reconcile_from_tracker_store(settings).recorded == 0  # found as recorded, never twice


async def test_a_marker_for_a_message_saved_earlier_rewrites_the_stored_row(rasa, settings):
    store = _store(rasa, settings)
    events = _start() + [_user(DISCLOSURE, "m-disclose", 4.0, "disclose")]
    await _save(rasa, store, events)
    assert DISCLOSURE.encode() in _file_bytes(settings)
    marker = {
        "schoolguide_committed": {
            "message_id": "m-disclose",
            "reference": "SG-AAAA-BBBB",
            "kind": "disclosure",
        }
    }
    events += [
        {"event": "action", "name": "action_save_contact_details", "timestamp": 5.0},
        {
            "event": "slot",
            "name": "disclosure_reference",
            "value": "SG-AAAA-BBBB",
            "timestamp": 5.1,
            "metadata": marker,
        },
    ]
    await _save(rasa, store, events)
    store.engine.dispose()
    assert DISCLOSURE.encode() not in _file_bytes(settings)  # secure_delete: not left in a free page


async def test_postgresql_tracker_store_never_receives_the_words(rasa, settings, postgres_url):
    store = _store(rasa, settings, url=postgres_url)
    events = _start()
    returned = await _disclosure_turn(settings, events)
    await _save(rasa, store, events)
    await _contact_turn(settings, events, returned[0]["value"])
    await _save(rasa, store, events)
    store.engine.dispose()
    stored = _stored(postgres_url)
    assert [event for event in stored if event["type"] == "user"]
    assert _words_in(stored) == []


def test_the_runner_configures_the_redacting_store(settings):
    import yaml

    from bot.runner import write_endpoints

    endpoints = yaml.safe_load(write_endpoints(settings).read_text())
    assert endpoints["tracker_store"]["type"] == "bot.safeguarding.tracker_store.RedactingTrackerStore"


def test_rasa_loads_the_redacting_store_from_the_endpoint_config(rasa, settings):
    """Rasa falls back to an in-memory store (no reconciliation possible) if the type cannot be imported."""
    import yaml
    from rasa.core.tracker_store import create_tracker_store
    from rasa.utils.endpoints import EndpointConfig

    from bot.runner import write_endpoints

    config = yaml.safe_load(write_endpoints(settings).read_text())["tracker_store"]
    store = create_tracker_store(EndpointConfig.from_dict(config), rasa.domain)
    assert isinstance(store, rasa.store)
    store.engine.dispose()


def _unwritable(tmp_path: Path) -> Path:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the spool folder should be")
    return blocker / "spool"
