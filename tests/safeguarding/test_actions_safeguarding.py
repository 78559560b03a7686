"""The safeguarding actions, run as the action server runs them: real Tracker, real CollectingDispatcher."""

from __future__ import annotations

import sys
import types

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select
from sqlalchemy.orm import Session

from actions.safeguarding import ActionDisclosureReference, ActionLogDisclosure, maybe_start_worker
from bot.safeguarding.cases import read_case
from bot.safeguarding.handoff_texts import PUPIL_OFFER, REFERENCE_UNAVAILABLE
from bot.safeguarding.spool import Spool
from bot.safeguarding.store import Disclosure, get_engine

WORDS = "my teacher says our chats are a secret"


def make_tracker(
    text=WORDS,
    *,
    message_id="msg-disclose",
    audience="pupil",
    school="lunsford",
    sender_id="widget-123",
    reference=None,
    latest_extra=None,
):
    events = [
        {"event": "action", "name": "action_session_start", "timestamp": 1.0},
        {"event": "slot", "name": "school", "value": school, "timestamp": 1.1},
        {"event": "user", "text": "hello", "input_channel": "socketio", "message_id": "m0", "timestamp": 2.0},
        {"event": "bot", "text": "Hi! Ask me about the social media policy.", "timestamp": 3.0},
        {
            "event": "user",
            "text": "can I add Miss on Snapchat",
            "input_channel": "socketio",
            "timestamp": 4.0,
            "message_id": "m1",
        },
        {"event": "bot", "text": "No: staff must not befriend pupils (clause 3.1).", "timestamp": 5.0},
        {
            "event": "user",
            "text": text,
            "input_channel": "socketio",
            "message_id": message_id,
            "timestamp": 6.0,
            "parse_data": {"intent": {"name": "disclose", "confidence": 0.97}},
        },
    ]
    latest = {
        "text": text,
        "intent": {"name": "disclose", "confidence": 0.97},
        "entities": [],
        "message_id": message_id,
        "metadata": {},
        **(latest_extra or {}),
    }
    slots = {"school": school, "audience": audience, "disclosure_reference": reference}
    return Tracker(sender_id, slots, latest, events, False, None, {}, "action_listen")


async def _log(settings, tracker):
    dispatcher = CollectingDispatcher()
    events = await ActionLogDisclosure(settings).run(dispatcher, tracker, {})
    return dispatcher, events


async def test_log_disclosure_stores_before_returning_and_sends_nothing(settings):
    dispatcher, events = await _log(settings, make_tracker())

    assert dispatcher.messages == []
    assert len(events) == 2 and events[0]["event"] == "slot" and events[0]["name"] == "disclosure_reference"
    # Which pupil reply fits (an adult keeping secrets with a child: grooming); utter_disclosure_safe uses it.
    assert events[1] == {"event": "slot", "timestamp": None, "name": "disclosure_kind", "value": "grooming"}
    reference = events[0]["value"]
    with Session(get_engine(settings.database_url), future=True) as session:
        row = session.execute(select(Disclosure)).scalar_one()
    assert row.reference == reference
    assert (row.sender_id, row.message_id, row.school, row.audience, row.channel) == (
        "widget-123",
        "msg-disclose",
        "lunsford",
        "pupil",
        "socketio",
    )
    case = read_case(settings, reference, actor="test")
    assert case.text == WORDS
    assert case.context == (
        {"who": "user", "text": "hello"},
        {"who": "bot", "text": "Hi! Ask me about the social media policy."},
        {"who": "user", "text": "can I add Miss on Snapchat"},
        {"who": "bot", "text": "No: staff must not befriend pupils (clause 3.1)."},
    )


async def test_running_twice_for_the_same_message_keeps_one_record(settings):
    _, first = await _log(settings, make_tracker())
    _, second = await _log(settings, make_tracker())
    assert first[0]["value"] == second[0]["value"]
    with Session(get_engine(settings.database_url), future=True) as session:
        assert len(session.execute(select(Disclosure.id)).all()) == 1


async def test_database_down_still_gives_a_reference_from_the_spool(down_postgres):
    dispatcher, events = await _log(down_postgres, make_tracker())
    reference = events[0]["value"]
    assert reference and reference.startswith("SG-")
    assert dispatcher.messages == []
    assert [record["reference"] for record in Spool(down_postgres.spool_dir).records()] == [reference]


async def test_detector_missing_falls_back_to_other_high(settings, monkeypatch):
    monkeypatch.setitem(sys.modules, "bot.safeguarding.detector", None)  # import now fails
    _, events = await _log(settings, make_tracker())
    case = read_case(settings, events[0]["value"], actor="test")
    assert (case.categories, case.risk) == (("other",), "high")


async def test_detector_raising_falls_back_to_other_high(settings, monkeypatch):
    broken = types.ModuleType("bot.safeguarding.detector")

    def assess(text):
        raise RuntimeError("vocabulary failed to load")

    broken.assess = assess
    monkeypatch.setitem(sys.modules, "bot.safeguarding.detector", broken)
    _, events = await _log(settings, make_tracker())
    case = read_case(settings, events[0]["value"], actor="test")
    assert (case.categories, case.risk) == (("other",), "high")


async def test_categories_come_from_the_real_detector_when_present(settings):
    detector = pytest.importorskip(
        "bot.safeguarding.detector", reason="the detector module is not written yet"
    )
    expected = detector.assess(WORDS)
    _, events = await _log(settings, make_tracker())
    case = read_case(settings, events[0]["value"], actor="test")
    assert case.categories == (tuple(expected.categories) or ("other",))
    assert case.risk == expected.risk


async def test_nlu_pipeline_assessment_is_used_when_present(settings):
    tracker = make_tracker(latest_extra={"safeguarding": {"categories": ["bullying"], "risk": "medium"}})
    _, events = await _log(settings, tracker)
    case = read_case(settings, events[0]["value"], actor="test")
    assert (case.categories, case.risk) == (("bullying",), "medium")


@pytest.mark.parametrize(
    "tracker",
    [
        Tracker("s", {}, None, [], False, None, {}, None),
        Tracker("s", {}, {"text": None, "message_id": None}, [{"event": "user"}], False, None, {}, None),
        Tracker(
            "s",
            {"school": 7, "audience": ["x"]},
            {"text": {"a": 1}, "metadata": "nope"},
            ["garbage", None, 3],
            False,
            None,
            {},
            None,
        ),
        Tracker(None, None, {"text": "\ud83d" + "x" * 50_000}, None, False, None, {}, None),
    ],
    ids=["no-latest-message", "empty-text", "wrong-types", "odd-unicode-huge"],
)
async def test_malformed_trackers_never_raise_and_are_still_recorded(settings, tracker):
    dispatcher, events = await _log(settings, tracker)
    assert dispatcher.messages == []
    assert events[0]["name"] == "disclosure_reference" and events[0]["value"].startswith("SG-")
    with Session(get_engine(settings.database_url), future=True) as session:
        assert session.execute(select(Disclosure.reference)).scalar_one() == events[0]["value"]


async def test_unexpected_failure_uses_the_emergency_spool(settings, monkeypatch):
    import bot.safeguarding.contact as module  # where action_log_disclosure's recording lives

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(module, "record_disclosure", broken)
    _, events = await _log(settings, make_tracker())
    spooled = Spool(settings.spool_dir).records()
    assert [record["reference"] for record in spooled] == [events[0]["value"]]
    assert WORDS not in (settings.spool_dir / "disclosures.jsonl").read_text()


async def test_when_nothing_can_store_it_the_reference_slot_is_empty(down_postgres, tmp_path, caplog):
    import dataclasses

    blocker = tmp_path / "file"
    blocker.write_text("")
    hopeless = dataclasses.replace(down_postgres, spool_dir=blocker / "spool")
    _, events = await _log(hopeless, make_tracker())
    assert events == [
        {"event": "slot", "timestamp": None, "name": "disclosure_reference", "value": None},
        {"event": "slot", "timestamp": None, "name": "disclosure_kind", "value": "grooming"},
    ]
    assert "DISCLOSURE NOT STORED" in caplog.text


@pytest.mark.parametrize(("audience", "offered"), [("staff", False), ("parent", True)])
async def test_reference_is_given_to_staff_and_parents(settings, audience, offered):
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(audience=audience, reference="SG-7K3P-QX9M")
    events = await ActionDisclosureReference(settings).run(dispatcher, tracker, {})
    # contact_offered starts contact_form (data/rules/safeguarding.yml) for parents, never for staff.
    assert events == [{"event": "slot", "timestamp": None, "name": "contact_offered", "value": offered}]
    assert [m["text"] for m in dispatcher.messages] == [
        "I have passed this to the school's Designated Safeguarding Lead. Your reference is SG-7K3P-QX9M."
    ]


async def test_pupils_get_a_gentle_offer_without_jargon(settings):
    from actions.safeguarding import ActionAskContactDetails

    dispatcher = CollectingDispatcher()
    tracker = make_tracker(reference="SG-7K3P-QX9M")
    events = await ActionDisclosureReference(settings).run(dispatcher, tracker, {})
    assert dispatcher.messages == []  # no reference for a child: the form's question is all they get
    assert events[0]["name"] == "contact_offered" and events[0]["value"] is True
    tracker.events.append({"event": "action", "name": "action_disclosure_reference", "timestamp": 7.0})
    await ActionAskContactDetails(settings).run(dispatcher, tracker, {})
    assert [m["text"] for m in dispatcher.messages] == [PUPIL_OFFER]
    assert "SG-" not in PUPIL_OFFER and "reference" not in PUPIL_OFFER.lower()
    assert "don't have to" in PUPIL_OFFER


async def test_no_reference_never_claims_a_handoff(settings):
    dispatcher = CollectingDispatcher()
    await ActionDisclosureReference(settings).run(dispatcher, make_tracker(audience="parent"), {})
    assert [m["text"] for m in dispatcher.messages] == [REFERENCE_UNAVAILABLE]


async def test_full_rule_sequence_gives_the_stored_reference(settings):
    """action_log_disclosure then action_disclosure_reference, with the slot passed on as Rasa would."""
    tracker = make_tracker(audience="staff")
    _, events = await _log(settings, tracker)
    tracker.slots["disclosure_reference"] = events[0]["value"]
    dispatcher = CollectingDispatcher()
    await ActionDisclosureReference(settings).run(dispatcher, tracker, {})
    assert dispatcher.messages[0]["text"].endswith(f"Your reference is {events[0]['value']}.")


def test_worker_is_not_started_when_switched_off(settings):
    from dataclasses import replace

    assert maybe_start_worker(replace(settings, worker_enabled=False)) is False


def test_actions_package_registers_both_actions():
    from rasa_sdk.executor import ActionExecutor

    executor = ActionExecutor()
    executor.register_package("actions")
    assert {"action_log_disclosure", "action_disclosure_reference"} <= set(executor.actions)
