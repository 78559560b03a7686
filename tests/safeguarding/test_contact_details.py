"""Optional contact details after a disclosure, through the real actions (real rasa_sdk Tracker, real
CollectingDispatcher, real SQLite database and spool): kept encrypted with the disclosure, never echoed, never
kept when declined, and a disclosure inside them is recorded and alerted as a disclosure of its own."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import sys

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher
from sqlalchemy import select
from sqlalchemy.orm import Session

from actions.safeguarding import (
    ActionAskContactDetails,
    ActionDisclosureReference,
    ActionLogDisclosure,
    ActionSaveContactDetails,
    ValidateContactForm,
)
from bot.safeguarding import handoff_texts as texts
from bot.safeguarding.cases import list_cases, read_case
from bot.safeguarding.service import replay_spool
from bot.safeguarding.spool import Spool
from bot.safeguarding.store import AuditEvent, Disclosure, DisclosureNote, OutboxMessage, get_engine

DISCLOSURE = "my teacher keeps messaging me on snapchat and says its our secret"
SECOND = "amy 5b. and my uncle hit me again last night"
CONTACT_DOMAIN = {
    "forms": {"contact_form": {"required_slots": ["contact_details"]}},
    "slots": {
        "contact_details": {
            "type": "text",
            "mappings": [
                {
                    "type": "custom",
                    "action": "action_extract_contact_details",
                    "conditions": [{"active_loop": "contact_form", "requested_slot": "contact_details"}],
                }
            ],
        }
    },
}


def _user(text, message_id, timestamp, intent="disclose"):
    return {
        "event": "user",
        "text": text,
        "input_channel": "socketio",
        "message_id": message_id,
        "timestamp": timestamp,
        "parse_data": {"intent": {"name": intent, "confidence": 0.9}, "entities": []},
    }


def disclosure_tracker(audience="pupil", text=DISCLOSURE):
    """The moment action_log_disclosure runs."""
    events = [
        {"event": "action", "name": "action_session_start", "timestamp": 1.0},
        {"event": "slot", "name": "school", "value": "lunsford", "timestamp": 1.1},
        {"event": "slot", "name": "audience", "value": audience, "timestamp": 1.2},
        {"event": "action", "name": "action_listen", "timestamp": 1.3},
        _user("hello", "m0", 2.0, intent="greet"),
        {
            "event": "bot",
            "text": "Hi! I can help with questions about staying safe on apps.",
            "timestamp": 3.0,
        },
        _user(text, "msg-disclose", 4.0),
    ]
    latest = {
        "text": text,
        "intent": {"name": "disclose", "confidence": 0.9},
        "entities": [],
        "message_id": "msg-disclose",
        "metadata": {},
    }
    slots = {"school": "lunsford", "audience": audience, "disclosure_reference": None}
    return Tracker("widget-42", slots, latest, events, False, None, {}, "action_listen")


def answer_tracker(
    answer,
    *,
    audience="pupil",
    reference,
    intent="nlu_fallback",
    answers_before=(),
    disclosure_text=DISCLOSURE,
    latest_extra=None,
    form_closed=True,
):
    """The moment contact_form has taken ``answer`` and action_save_contact_details runs, as Rasa sends it
    (``form_closed=False``: the moment the form hands the answer to validate_contact_form)."""
    events = disclosure_tracker(audience, disclosure_text).events + [
        {"event": "action", "name": "action_log_disclosure", "timestamp": 4.1},
        {"event": "slot", "name": "disclosure_reference", "value": reference, "timestamp": 4.2},
        {"event": "action", "name": "utter_disclosure_safe", "timestamp": 4.3},
        {"event": "bot", "text": "Thank you for telling me.", "timestamp": 4.4},
        {"event": "action", "name": "action_disclosure_reference", "timestamp": 4.5},
        {"event": "slot", "name": "contact_offered", "value": True, "timestamp": 4.6},
        {"event": "action", "name": "contact_form", "timestamp": 4.7},
        {"event": "active_loop", "name": "contact_form", "timestamp": 4.8},
        {"event": "slot", "name": "requested_slot", "value": "contact_details", "timestamp": 4.9},
        {"event": "bot", "text": texts.contact_offer(audience), "timestamp": 5.0},
        {"event": "action", "name": "action_listen", "timestamp": 5.1},
    ]
    timestamp = 6.0
    for earlier in answers_before:
        events += [
            _user(earlier, f"msg-before-{timestamp}", timestamp, intent="affirm"),
            {"event": "action", "name": "contact_form", "timestamp": timestamp + 0.1},
            {"event": "bot", "text": texts.contact_prompt(audience), "timestamp": timestamp + 0.2},
            {"event": "action", "name": "action_listen", "timestamp": timestamp + 0.3},
        ]
        timestamp += 1
    events += [
        _user(answer, "msg-contact", timestamp, intent=intent),
        {"event": "slot", "name": "contact_details", "value": answer, "timestamp": timestamp + 0.1},
    ]
    if form_closed:
        events += [
            {"event": "action", "name": "contact_form", "timestamp": timestamp + 0.2},
            {"event": "active_loop", "name": None, "timestamp": timestamp + 0.3},
            {"event": "slot", "name": "requested_slot", "value": None, "timestamp": timestamp + 0.4},
        ]
    else:
        # Rasa's FormAction builds this temporary tracker for validate_contact_form: the form's own
        # execution, then the slot candidates last.
        events += [
            {"event": "slot", "name": "requested_slot", "value": "contact_details", "timestamp": None},
            {"event": "action", "name": "contact_form", "timestamp": None},
            {"event": "slot", "name": "contact_details", "value": answer, "timestamp": None},
        ]
    latest = {
        "text": answer,
        "intent": {"name": intent, "confidence": 0.9},
        "entities": [],
        "message_id": "msg-contact",
        "metadata": {},
        **(latest_extra or {}),
    }
    slots = {
        "school": "lunsford",
        "audience": audience,
        "disclosure_reference": reference,
        "contact_offered": True,
        "contact_details": answer,
        "requested_slot": None if form_closed else "contact_details",
    }
    active_loop = {} if form_closed else {"name": "contact_form"}
    return Tracker("widget-42", slots, latest, events, False, None, active_loop, "contact_form")


async def log_disclosure(settings, audience="pupil"):
    events = await ActionLogDisclosure(settings).run(CollectingDispatcher(), disclosure_tracker(audience), {})
    return events[0]["value"]


async def save(settings, tracker):
    dispatcher = CollectingDispatcher()
    events = await ActionSaveContactDetails(settings).run(dispatcher, tracker, {})
    return dispatcher, events


def _rows(settings, model):
    with Session(get_engine(settings.database_url), future=True) as session:
        return session.execute(select(model).order_by(model.id)).scalars().all()


def _contact_audits(settings):
    return [event for event in _rows(settings, AuditEvent) if event.action == "contact_added"]


def _said(dispatcher):
    return [message.get("text") for message in dispatcher.messages]


def _slot_events(events):
    return {event["name"]: event["value"] for event in events if event.get("event") == "slot"}


async def test_pupil_details_are_kept_encrypted_audited_and_never_echoed(settings):
    reference = await log_disclosure(settings)
    dispatcher, events = await save(settings, answer_tracker("Amy Lowe 5B", reference=reference))

    assert _said(dispatcher) == [texts.PUPIL_THANKS] == ["Thank you. I've passed that on too."]
    assert not any(
        "amy" in (text or "").lower() or "5b" in (text or "").lower() for text in _said(dispatcher)
    )
    # The form's slots are cleared; contact_followup lets the next message add to the details (only if it
    # looks like more of them: see below), else it is an ordinary message again.
    assert _slot_events(events) == {
        "contact_details": None,
        "contact_offered": None,
        "contact_followup": True,
    }

    [disclosure] = _rows(settings, Disclosure)
    [note] = _rows(settings, DisclosureNote)
    assert (note.disclosure_id, note.kind, note.sender_id, note.message_id, note.source) == (
        disclosure.id,
        "contact",
        "widget-42",
        "msg-contact",
        "action",
    )
    # Encrypted at rest: the plaintext is in no column of the table, nor anywhere in the database files.
    with sqlite3.connect(settings.var_dir / "schoolguide.db") as raw:
        for row in raw.execute("SELECT * FROM disclosure_notes"):
            assert not any("Amy" in str(value) or "5B" in str(value) for value in row)
    for path in settings.var_dir.glob("schoolguide.db*"):
        assert b"Amy Lowe" not in path.read_bytes()

    [audit] = _contact_audits(settings)
    assert audit.disclosure_id == disclosure.id and audit.actor == "schoolguide"
    assert audit.detail["text_chars"] == len("Amy Lowe 5B") and audit.detail["note_id"] == note.id
    assert "Amy" not in json.dumps(audit.detail)

    case = read_case(settings, reference, actor="Ms Patel")
    assert [item["text"] for item in case.contact] == ["Amy Lowe 5B"]
    assert case.text == DISCLOSURE  # the disclosure itself is untouched


async def test_parent_contact_is_confirmed_for_the_dsl_without_repeating_it(settings):
    reference = await log_disclosure(settings, audience="parent")
    answer = "you can reach me on 07700 900123 or jo.smith@example.com"
    dispatcher, _ = await save(
        settings,
        answer_tracker(answer, audience="parent", reference=reference, intent="policy_minimum_age"),
    )
    [reply] = _said(dispatcher)
    assert reply == texts.PARENT_THANKS and "Designated Safeguarding Lead will use them" in reply
    assert "07700" not in reply and "@" not in reply
    assert [item["text"] for item in read_case(settings, reference, actor="t").contact] == [answer]


@pytest.mark.parametrize(
    ("answer", "intent"),
    [
        ("no", "deny"),
        ("no thanks", "deny"),
        ("i dont want to", "disclose"),  # the classifier calls this "disclose"; it is a refusal
        ("I don't want to.", "nlu_fallback"),
        ("nope", "nlu_fallback"),
        ("it's ok thanks", "thank"),
    ],
)
@pytest.mark.parametrize("audience", ["pupil", "parent"])
async def test_a_refusal_keeps_nothing_and_is_answered_kindly(settings, audience, answer, intent):
    reference = await log_disclosure(settings, audience=audience)
    dispatcher, events = await save(
        settings, answer_tracker(answer, audience=audience, reference=reference, intent=intent)
    )
    [reply] = _said(dispatcher)
    assert reply.startswith("That's OK.")
    assert reply == texts.contact_declined(audience, reference)
    assert _rows(settings, DisclosureNote) == [] and _contact_audits(settings) == []
    assert len(_rows(settings, Disclosure)) == 1
    assert Spool(settings.spool_dir).records() == []
    # Nothing kept, so nothing more is waited for.
    assert _slot_events(events) == {
        "contact_details": None,
        "contact_offered": None,
        "contact_followup": None,
    }


async def test_a_disclosure_inside_the_details_is_recorded_alerted_and_kept_as_contact(settings):
    detector = pytest.importorskip("bot.safeguarding.detector")
    assert detector.assess(SECOND).is_disclosure  # the premise of this test
    first = await log_disclosure(settings)
    dispatcher, events = await save(settings, answer_tracker(SECOND, reference=first, intent="disclose"))

    disclosures = {row.reference: row for row in _rows(settings, Disclosure)}
    assert len(disclosures) == 2
    [second] = [reference for reference in disclosures if reference != first]
    row = disclosures[second]
    assert (row.sender_id, row.message_id, row.audience) == ("widget-42", "msg-contact", "pupil")
    case = read_case(settings, second, actor="t")
    assert case.text == SECOND
    assert "physical_abuse_neglect" in case.categories
    assert {"who": "user", "text": DISCLOSURE} in case.context  # the DSL sees what came before
    alerts = [m for m in _rows(settings, OutboxMessage) if m.disclosure_id == row.id]
    assert len(alerts) == 2  # queued for both DSLs, like any disclosure

    # ... and it is still kept as the contact details of the first disclosure.
    assert [item["text"] for item in read_case(settings, first, actor="t").contact] == [SECOND]
    [audit] = _contact_audits(settings)
    assert audit.disclosure_id == disclosures[first].id and audit.detail["also_recorded_as"] == second

    from bot.safeguarding.replies import safe_reply

    # The safe reply (for a child hit by a relative: 999 first), not "Thank you, passed that on".
    assert _said(dispatcher) == [safe_reply("pupil", kind="danger_at_home")]
    assert _slot_events(events)["disclosure_reference"] == second


async def test_a_parent_disclosing_again_gets_the_safe_reply_and_the_new_reference(settings):
    pytest.importorskip("bot.safeguarding.detector")
    first = await log_disclosure(settings, audience="parent")
    answer = "07700 900123. also her coach touched her at training"
    dispatcher, _ = await save(settings, answer_tracker(answer, audience="parent", reference=first))
    [second] = [row.reference for row in _rows(settings, Disclosure) if row.reference != first]
    from bot.safeguarding.replies import safe_reply

    assert _said(dispatcher) == [safe_reply("parent"), texts.REFERENCE_GIVEN.format(reference=second)]


async def test_the_classifier_alone_does_not_turn_contact_details_into_a_disclosure(settings):
    """The intent classifier says "disclose" for "call me on 07700900123"; the rules layer decides."""
    pytest.importorskip("bot.safeguarding.detector")
    reference = await log_disclosure(settings, audience="parent")
    classifier_only = {
        "is_disclosure": True,
        "categories": ["other"],
        "risk": "high",
        "matched": ["intent_classifier"],
    }
    dispatcher, _ = await save(
        settings,
        answer_tracker(
            "call me on 07700900123",
            audience="parent",
            reference=reference,
            intent="disclose",
            latest_extra={"safeguarding": classifier_only},
        ),
    )
    assert _said(dispatcher) == [texts.PARENT_THANKS]
    assert len(_rows(settings, Disclosure)) == 1 and len(_rows(settings, DisclosureNote)) == 1


async def test_without_the_detector_the_nlu_verdict_decides_erring_towards_recording(settings, monkeypatch):
    reference = await log_disclosure(settings)
    monkeypatch.setitem(sys.modules, "bot.safeguarding.detector", None)  # import now fails
    await save(settings, answer_tracker("he did it again", reference=reference, intent="disclose"))
    assert len(_rows(settings, Disclosure)) == 2  # recorded as its own disclosure
    assert len(_rows(settings, DisclosureNote)) == 1  # and kept with the first


async def test_details_for_a_spooled_disclosure_are_spooled_then_attached_on_replay(
    down_postgres, make_settings
):
    reference = await log_disclosure(down_postgres)
    assert [record["reference"] for record in Spool(down_postgres.spool_dir).records()] == [reference]

    dispatcher, _ = await save(down_postgres, answer_tracker("Amy Lowe 5B", reference=reference))
    assert _said(dispatcher) == [texts.PUPIL_THANKS]  # kept durably, so the thanks is true
    spool_text = (down_postgres.spool_dir / "disclosures.jsonl").read_text()
    assert "Amy" not in spool_text  # encrypted in the spool too
    assert [record.get("record_type") for record in Spool(down_postgres.spool_dir).records()] == [
        None,
        "contact_note",
    ]

    back = dataclasses.replace(down_postgres, database_url=make_settings().database_url)
    report = replay_spool(back)
    assert (report.replayed, report.notes_attached, report.remaining) == (1, 1, 0)
    case = read_case(back, reference, actor="t")
    assert [item["text"] for item in case.contact] == ["Amy Lowe 5B"]
    [audit] = _contact_audits(back)
    assert audit.detail["source"] == "spool"
    # Replaying again changes nothing.
    assert replay_spool(back).notes_attached == 0 and len(_rows(back, DisclosureNote)) == 1


async def test_a_note_waits_in_the_spool_until_its_disclosure_arrives(settings, down_postgres):
    """The database is up but the disclosure is still spooled: the note is spooled behind it."""
    reference = await log_disclosure(down_postgres)  # spooled while the database was down
    await save(settings, answer_tracker("Amy Lowe 5B", reference=reference))  # database up again
    assert _rows(settings, DisclosureNote) == []
    report = replay_spool(settings)
    assert (report.replayed, report.notes_attached, report.remaining) == (1, 1, 0)
    assert [item["text"] for item in read_case(settings, reference, actor="t").contact] == ["Amy Lowe 5B"]


async def test_with_no_reference_the_disclosure_is_recorded_again_from_the_tracker(settings):
    """Nothing could store the disclosure at the time (empty reference slot): the details must not be lost,
    and the disclosure is recovered from the conversation, keyed as action_log_disclosure keyed it."""
    dispatcher, events = await save(settings, answer_tracker("Amy Lowe 5B", reference=None))
    [disclosure] = _rows(settings, Disclosure)
    assert (disclosure.sender_id, disclosure.message_id) == ("widget-42", "msg-disclose")
    case = read_case(settings, disclosure.reference, actor="t")
    assert case.text == DISCLOSURE and [item["text"] for item in case.contact] == ["Amy Lowe 5B"]
    assert _contact_audits(settings)[0].detail["disclosure_recorded_again"] == "database"
    assert _slot_events(events)["disclosure_reference"] == disclosure.reference
    assert _said(dispatcher) == [texts.PUPIL_THANKS]
    # Had the first recording worked after all, it is the same row (idempotent on the message).
    assert (await log_disclosure(settings)) == disclosure.reference


async def test_when_nothing_can_keep_the_details_the_reply_says_so(down_postgres, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    hopeless = dataclasses.replace(down_postgres, spool_dir=blocker / "spool")
    dispatcher, events = await save(
        hopeless, answer_tracker("07700 900123", audience="parent", reference="SG-7K3P-QX9M")
    )
    assert _said(dispatcher) == [texts.PARENT_NOT_SAVED]
    assert _slot_events(events) == {
        "contact_details": None,
        "contact_offered": None,
        "contact_followup": None,
    }


async def test_staff_are_never_offered_the_form(settings):
    tracker = disclosure_tracker("staff")
    tracker.slots["disclosure_reference"] = "SG-7K3P-QX9M"
    events = await ActionDisclosureReference(settings).run(CollectingDispatcher(), tracker, {})
    assert _slot_events(events) == {"contact_offered": False}
    for audience in ("pupil", "parent"):
        tracker = disclosure_tracker(audience)
        events = await ActionDisclosureReference(settings).run(CollectingDispatcher(), tracker, {})
        assert _slot_events(events) == {"contact_offered": True}


def _asking_tracker(audience, answers):
    return answer_tracker(
        answers[-1],
        audience=audience,
        reference="SG-7K3P-QX9M",
        answers_before=answers[:-1],
        intent="affirm",
        form_closed=False,
    )


@pytest.mark.parametrize("audience", ["pupil", "parent"])
@pytest.mark.parametrize("yes", ["yes", "ok you can", "Yes please", "/affirm"])
async def test_a_yes_is_asked_once_more_then_only_details_or_a_refusal_are_taken(audience, yes):
    dispatcher = CollectingDispatcher()
    first = _asking_tracker(audience, [yes])
    events = await ValidateContactForm().run(dispatcher, first, CONTACT_DOMAIN)
    assert {"event": "slot", "timestamp": None, "name": "contact_details", "value": None} in events
    await ActionAskContactDetails().run(dispatcher, first, {})
    assert _said(dispatcher) == [texts.contact_prompt(audience)]

    # After the prompt a second "ok" is not an answer (action_extract_contact_details leaves it to the usual
    # rules); were it handed over anyway, it is not asked for again.
    assert await extract_details(offer_tracker("ok", answers_before=[yes], intent="affirm")) == {}
    again = _asking_tracker(audience, ["yes", "ok"])
    events = await ValidateContactForm().run(CollectingDispatcher(), again, CONTACT_DOMAIN)
    assert {"event": "slot", "timestamp": None, "name": "contact_details", "value": "ok"} in events

    details = _asking_tracker(audience, ["Amy 5B"])
    events = await ValidateContactForm().run(CollectingDispatcher(), details, CONTACT_DOMAIN)
    assert {"event": "slot", "timestamp": None, "name": "contact_details", "value": "Amy 5B"} in events


@pytest.mark.parametrize("audience", ["pupil", "parent"])
async def test_the_question_is_asked_once_by_the_form(settings, audience):
    """action_disclosure_reference does not ask; the form's first question is the offer."""
    tracker = disclosure_tracker(audience)
    tracker.slots["disclosure_reference"] = "SG-7K3P-QX9M"
    reference_dispatcher = CollectingDispatcher()
    await ActionDisclosureReference(settings).run(reference_dispatcher, tracker, {})
    assert texts.contact_offer(audience) not in _said(reference_dispatcher)
    tracker.events.append({"event": "action", "name": "action_disclosure_reference", "timestamp": 5.0})
    tracker.events.append({"event": "action", "name": "contact_form", "timestamp": 5.1})
    ask = CollectingDispatcher()
    await ActionAskContactDetails(settings).run(ask, tracker, {})
    assert _said(ask) == [texts.contact_offer(audience)]
    offer = texts.contact_offer(audience)
    assert "don't have to" in offer.lower()
    if audience == "pupil":
        assert "name" in offer and "class" in offer and "Designated" not in offer
    else:
        assert "phone number or email address" in offer


async def test_list_json_and_export_show_the_contact_details(settings):
    reference = await log_disclosure(settings)
    await save(settings, answer_tracker("Amy Lowe 5B", reference=reference))
    staff = Tracker(
        "teams-7",
        {"school": "lunsford", "audience": "staff"},
        {"text": "a pupil told me she is being hit at home", "message_id": "s1", "metadata": {}},
        [],
        False,
        None,
        {},
        "action_listen",
    )
    # Staff: the reference only (their reply kind for this disclosure is the generic one, already set).
    [other] = await ActionLogDisclosure(settings).run(CollectingDispatcher(), staff, {})
    assert other["name"] == "disclosure_reference"
    listed = {case.reference: case.as_json() for case in list_cases(settings, actor="t", with_text=True)}
    assert [item["text"] for item in listed[reference]["contact"]] == ["Amy Lowe 5B"]
    assert listed[reference]["contact"][0]["added_at"].startswith("20")
    assert listed[other["value"]]["contact"] == []
    # Not read: not decrypted.
    assert all(case.contact is None for case in list_cases(settings, actor="t"))


def test_the_action_server_registers_the_contact_actions():
    executor = ActionExecutor()
    executor.register_package("actions")
    assert {
        "action_ask_contact_details",
        "validate_contact_form",
        "action_save_contact_details",
    } <= set(executor.actions)


async def test_an_upgraded_least_privilege_postgres_database_keeps_working(make_settings, postgres_url):
    """A database from before disclosure_notes, run by a role that may not create tables: disclosures are
    still stored and readable, contact details wait in the spool, and are attached once the owner has
    created the table and granted it."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from bot.safeguarding.store import Base, create_engine_for, dispose_engines

    owner_engine = create_engine_for(postgres_url)
    Base.metadata.create_all(
        owner_engine, tables=[t for t in Base.metadata.sorted_tables if t.name != "disclosure_notes"]
    )
    schema = make_url(postgres_url).query["options"].split("=", 1)[1]
    role = f"sg_app_{schema[-12:]}"
    with owner_engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN"))
        connection.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}'))
        connection.execute(text(f"GRANT SELECT, INSERT, UPDATE ON disclosures, outbox_messages TO {role}"))
        connection.execute(text(f"GRANT SELECT, INSERT ON audit_events TO {role}"))
        # The audit chain's head (store.py): started by the owner, locked and advanced by every append.
        connection.execute(
            text("INSERT INTO audit_chain_head (id, seq, last_hash) VALUES (1, 0, :h)"), {"h": "0" * 64}
        )
        connection.execute(text(f"GRANT SELECT, UPDATE ON audit_chain_head TO {role}"))
        connection.execute(text(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}'))
    try:
        app = make_settings(
            database_url=make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
        )
        reference = await log_disclosure(app)
        assert [row.reference for row in _rows(app, Disclosure)] == [reference]  # not spooled
        dispatcher, _ = await save(app, answer_tracker("Amy Lowe 5B", reference=reference))
        assert _said(dispatcher) == [texts.PUPIL_THANKS]
        assert [r.get("record_type") for r in Spool(app.spool_dir).records()] == ["contact_note"]
        case = read_case(app, reference, actor="Ms Patel")
        assert case.text == DISCLOSURE and case.contact[0]["text"] is None
        assert "could not be read" in case.contact[0]["error"]

        dispose_engines()
        owner = make_settings(database_url=postgres_url)
        read_case(owner, reference, actor="the owner")  # any command run as the owner creates the table
        with owner_engine.begin() as connection:
            connection.execute(text(f"GRANT SELECT, INSERT ON disclosure_notes TO {role}"))
            connection.execute(text(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}'))
        dispose_engines()
        assert replay_spool(app).notes_attached == 1
        assert [item["text"] for item in read_case(app, reference, actor="Ms Patel").contact] == [
            "Amy Lowe 5B"
        ]
    finally:
        dispose_engines()
        with owner_engine.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))
        owner_engine.dispose()


# --- contact details split over two messages -------------------------------------------------------------

from actions.safeguarding import (  # noqa: E402 - kept next to the tests that use them
    ActionExtractContactMore,
    ActionSaveMoreContactDetails,
    ValidateContactMoreForm,
)
from bot.safeguarding.outbox import alert_kind  # noqa: E402


def more_tracker(
    first,
    second,
    *,
    audience="pupil",
    reference,
    intent="nlu_fallback",
    taken=True,
    stage="save",
    latest_extra=None,
):
    """After ``first`` was kept as contact details and contact_more_form started waiting, ``second`` arrives.

    ``stage``: "extract" (action_extract_contact_more runs), "returned" (the form comes back after the usual
    rules answered a message it did not take: validate_contact_more_form runs) or "save" (the form ended and
    action_save_more_contact_details runs; ``taken``: whether the extraction took ``second``).
    """
    before = answer_tracker(first, audience=audience, reference=reference)
    events = before.events + [
        {"event": "action", "name": "action_save_contact_details", "timestamp": 20.0},
        {"event": "slot", "name": "contact_details", "value": None, "timestamp": 20.1},
        {"event": "slot", "name": "contact_offered", "value": None, "timestamp": 20.2},
        {"event": "slot", "name": "contact_followup", "value": True, "timestamp": 20.3},
        {"event": "bot", "text": texts.contact_thanks(audience, saved=True), "timestamp": 20.4},
        {"event": "action", "name": "contact_more_form", "timestamp": 20.5},
        {"event": "active_loop", "name": "contact_more_form", "timestamp": 20.6},
        {"event": "slot", "name": "requested_slot", "value": "contact_more", "timestamp": 20.7},
        {"event": "action", "name": "action_listen", "timestamp": 20.8},
        _user(second, "msg-more", 21.0, intent=intent),
    ]
    slots = {
        "school": "lunsford",
        "audience": audience,
        "disclosure_reference": reference,
        "contact_followup": True,
        "requested_slot": "contact_more",
        "contact_more": None,
    }
    active_loop = {"name": "contact_more_form"}
    if stage in ("returned", "save") and taken:
        events.append({"event": "slot", "name": "contact_more", "value": second, "timestamp": 21.1})
        slots["contact_more"] = second
    if stage == "returned":
        events += [
            {"event": "action_execution_rejected", "name": "contact_more_form", "timestamp": 21.2},
            {"event": "action", "name": "action_answer_policy", "timestamp": 21.3},
        ]
    if stage == "save":
        events += [
            {"event": "action", "name": "contact_more_form", "timestamp": 21.4},
            {"event": "active_loop", "name": None, "timestamp": 21.5},
            {"event": "slot", "name": "requested_slot", "value": None, "timestamp": 21.6},
        ]
        slots["requested_slot"], active_loop = None, {}
    latest = {
        "text": second,
        "intent": {"name": intent, "confidence": 0.9},
        "entities": [],
        "message_id": "msg-more",
        "metadata": {},
        **(latest_extra or {}),
    }
    return Tracker("widget-42", slots, latest, events, False, None, active_loop, "action_listen")


async def save_more(settings, tracker):
    dispatcher = CollectingDispatcher()
    events = await ActionSaveMoreContactDetails(settings).run(dispatcher, tracker, {})
    return dispatcher, events


async def extract(tracker):
    return _slot_events(await ActionExtractContactMore().run(CollectingDispatcher(), tracker, {}))


async def test_a_name_then_a_class_in_the_next_message_are_both_kept(settings):
    reference = await log_disclosure(settings)
    _, events = await save(settings, answer_tracker("jess", reference=reference))
    assert _slot_events(events)["contact_followup"] is True

    second = "year 6 class 6B"
    assert await extract(more_tracker("jess", second, reference=reference, stage="extract")) == {
        "contact_more": second
    }
    dispatcher, events = await save_more(settings, more_tracker("jess", second, reference=reference))
    assert _said(dispatcher) == [texts.PUPIL_MORE_THANKS]
    assert "6B" not in texts.PUPIL_MORE_THANKS
    assert _slot_events(events) == {"contact_more": None, "contact_followup": None}

    [disclosure] = _rows(settings, Disclosure)
    notes = _rows(settings, DisclosureNote)
    assert [(n.disclosure_id, n.message_id) for n in notes] == [
        (disclosure.id, "msg-contact"),
        (disclosure.id, "msg-more"),
    ]
    first_audit, more_audit = _contact_audits(settings)
    assert "follow_up" not in first_audit.detail
    assert more_audit.detail["follow_up"] is True and more_audit.detail["note_id"] == notes[1].id
    assert "6B" not in json.dumps(more_audit.detail)
    case = read_case(settings, reference, actor="Ms Patel")
    assert [item["text"] for item in case.contact] == ["jess", second]
    # The DSLs are told, once per note and DSL, that contact details were added.
    contact_alerts = [
        row for row in _rows(settings, OutboxMessage) if alert_kind(row.kind) == "contact_added"
    ]
    assert sorted((row.kind, row.recipient) for row in contact_alerts) == sorted(
        (f"contact:{note.id}", recipient)
        for note in notes
        for recipient in ("dsl@lunsford.example", "head@lunsford.example")
    )

    # The same message again (Rasa retried the action) adds nothing.
    await save_more(settings, more_tracker("jess", second, reference=reference))
    assert len(_rows(settings, DisclosureNote)) == 2


async def test_a_parent_says_the_number_is_coming_then_sends_it(settings):
    """Issue #15: "yes my number is" accepts the offer but is not contact details: the form asks for them,
    and the number that follows is what is kept (then an e-mail address after it, too)."""
    reference = await log_disclosure(settings, audience="parent")
    accepted = offer_tracker("yes my number is", audience="parent", intent="affirm")
    assert await extract_details(accepted) == {"contact_details": "yes my number is"}
    events = await ValidateContactForm().run(
        CollectingDispatcher(), _asking_tracker("parent", ["yes my number is"]), CONTACT_DOMAIN
    )
    assert {"event": "slot", "timestamp": None, "name": "contact_details", "value": None} in events

    number = "07700 900123"
    answer = offer_tracker(
        number, audience="parent", answers_before=["yes my number is"], intent="policy_minimum_age"
    )
    assert await extract_details(answer) == {"contact_details": number}
    first = answer_tracker(
        number,
        audience="parent",
        reference=reference,
        answers_before=["yes my number is"],
        intent="policy_minimum_age",
    )
    dispatcher, events = await save(settings, first)
    assert _said(dispatcher) == [texts.PARENT_THANKS]
    assert _slot_events(events)["contact_followup"] is True

    email = "jo.smith@example.com"
    assert await extract(
        more_tracker(number, email, audience="parent", reference=reference, stage="extract")
    ) == {"contact_more": email}
    dispatcher, _ = await save_more(
        settings, more_tracker(number, email, audience="parent", reference=reference)
    )
    assert _said(dispatcher) == [texts.PARENT_MORE_THANKS]
    assert "07700" not in texts.PARENT_MORE_THANKS
    case = read_case(settings, reference, actor="t")
    assert [item["text"] for item in case.contact] == [number, email]


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("jess", "greet"),
        ("Jess Smith", "disclose"),
        ("it's Jess, 6B", "nlu_fallback"),
        ("year 6 class 6B", "policy_minimum_age"),
        ("I'm in year 10", "nlu_fallback"),
        ("reception", "nlu_fallback"),
        ("07700 900123", "policy_minimum_age"),
        ("+44 7700 900123", "nlu_fallback"),
        ("jo.smith@example.com", "nlu_fallback"),
        ("yes call me on 07700900123 after 5pm", "affirm"),
        ("Siobhan O'Brien", "nlu_fallback"),
    ],
)
async def test_the_next_message_is_taken_when_it_looks_like_more_contact_details(text, intent):
    tracker = more_tracker("amy", text, reference="SG-7K3P-QX9M", intent=intent, stage="extract")
    assert await extract(tracker) == {"contact_more": text}


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("how old do you have to be for whatsapp", "policy_minimum_age"),
        ("can year 6 use tiktok", "policy_minimum_age"),
        ("what about instagram?", "ask_other_platform"),
        ("can staff follow pupils on instagram", "policy_staff_befriend_pupils"),
        ("thank you", "thank"),
        ("ok thanks", "thank"),
        ("ok", "affirm"),
        ("no", "deny"),
        ("bye", "goodbye"),
        ("hello", "greet"),
        ("snapchat", "nlu_fallback"),
        ("he hit me again last night", "disclose"),  # a disclosure: the disclosure rules record it
        ("year 6 kids on tiktok", "policy_minimum_age"),
        ("sad", "nlu_fallback"),
        ("why", "ask_why"),
    ],
)
async def test_anything_else_is_left_to_the_usual_rules(text, intent):
    tracker = more_tracker("amy", text, reference="SG-7K3P-QX9M", intent=intent, stage="extract")
    assert await extract(tracker) == {}


async def test_a_word_the_nlu_knows_as_a_platform_or_role_is_not_a_name():
    entity = {"entity": "platform", "value": "Kik", "start": 0, "end": 3}
    tracker = more_tracker(
        "amy", "kik", reference="SG-7K3P-QX9M", stage="extract", latest_extra={"entities": [entity]}
    )
    assert await extract(tracker) == {}


async def test_only_the_message_right_after_the_details_is_taken_and_only_in_that_session():
    tracker = more_tracker("amy", "6B", reference="SG-7K3P-QX9M", stage="extract")
    assert await extract(tracker) == {"contact_more": "6B"}

    later = more_tracker("amy", "6B", reference="SG-7K3P-QX9M", stage="extract")
    later.events.insert(-1, _user("thanks", "msg-between", 20.9, intent="thank"))
    assert await extract(later) == {}

    new_session = more_tracker("amy", "6B", reference="SG-7K3P-QX9M", stage="extract")
    new_session.events[-1:-1] = [
        {"event": "action", "name": "action_session_start", "timestamp": 20.85},
        {"event": "session_started", "timestamp": 20.86},
    ]
    assert await extract(new_session) == {}

    not_waiting = more_tracker("amy", "6B", reference="SG-7K3P-QX9M", stage="extract")
    not_waiting.slots["contact_followup"] = None
    assert await extract(not_waiting) == {}


async def test_a_disclosure_in_the_next_message_is_recorded_first_and_kept_as_contact_too(settings):
    pytest.importorskip("bot.safeguarding.detector")
    first = await log_disclosure(settings)
    await save(settings, answer_tracker("jess", reference=first))
    second_text = "6B. and my uncle hit me again last night"
    assert await extract(more_tracker("jess", second_text, reference=first, stage="extract")) == {
        "contact_more": second_text
    }
    dispatcher, events = await save_more(
        settings, more_tracker("jess", second_text, reference=first, intent="disclose")
    )
    disclosures = {row.reference: row for row in _rows(settings, Disclosure)}
    [second] = [reference for reference in disclosures if reference != first]
    assert (disclosures[second].sender_id, disclosures[second].message_id) == ("widget-42", "msg-more")
    assert read_case(settings, second, actor="t").text == second_text
    assert len([m for m in _rows(settings, OutboxMessage) if m.disclosure_id == disclosures[second].id]) >= 2
    assert [item["text"] for item in read_case(settings, first, actor="t").contact] == ["jess", second_text]
    assert _contact_audits(settings)[-1].detail["also_recorded_as"] == second

    from bot.safeguarding.replies import safe_reply

    assert _said(dispatcher) == [safe_reply("pupil", kind="danger_at_home")]  # "my uncle hit me"
    assert _slot_events(events) == {
        "contact_more": None,
        "contact_followup": None,
        "disclosure_reference": second,
    }


async def test_when_the_form_took_nothing_the_save_action_does_and_says_nothing(settings):
    reference = await log_disclosure(settings)
    tracker = more_tracker("jess", "how old for whatsapp", reference=reference, taken=False)
    dispatcher, events = await save_more(settings, tracker)
    assert _said(dispatcher) == []
    assert _slot_events(events) == {"contact_more": None, "contact_followup": None}
    assert _rows(settings, DisclosureNote) == []


async def test_the_wait_ends_once_the_usual_rules_have_answered():
    validate = ValidateContactMoreForm()
    returned = more_tracker("jess", "how old for whatsapp", reference="R", stage="returned", taken=False)
    events = await validate.run(CollectingDispatcher(), returned, {})
    assert _slot_events(events) == {"requested_slot": None}  # the form ends; nothing is asked

    taken = more_tracker("jess", "6B", reference="R", stage="returned", taken=True)
    assert await validate.run(CollectingDispatcher(), taken, {}) == []
    starting = answer_tracker("jess", reference="R")  # no active loop yet: the form is starting
    assert await validate.run(CollectingDispatcher(), starting, {}) == []


async def test_the_wait_is_not_ended_as_it_starts():
    """Rasa runs validate_contact_more_form as the form starts, with the form already active and nothing in
    contact_more: that is no reason to end it (it used to, so the wait never happened in a real run)."""
    starting = answer_tracker("jess", reference="R")
    starting.events += [
        {"event": "action", "name": "action_save_contact_details", "timestamp": 20.0},
        {"event": "slot", "name": "contact_followup", "value": True, "timestamp": 20.3},
        {"event": "active_loop", "name": "contact_more_form", "timestamp": None},
        {"event": "slot", "name": "requested_slot", "value": None, "timestamp": None},
        {"event": "action", "name": "contact_more_form", "timestamp": None},
    ]
    starting.active_loop = {"name": "contact_more_form"}
    starting.slots.update({"contact_followup": True, "contact_more": None, "requested_slot": None})
    assert await ValidateContactMoreForm().run(CollectingDispatcher(), starting, {}) == []


async def test_more_details_while_the_database_is_down_are_spooled_then_attached_and_announced(
    down_postgres, make_settings
):
    reference = await log_disclosure(down_postgres)
    await save(down_postgres, answer_tracker("jess", reference=reference))
    dispatcher, _ = await save_more(down_postgres, more_tracker("jess", "6B", reference=reference))
    assert _said(dispatcher) == [texts.PUPIL_MORE_THANKS]  # kept durably, so the thanks is true
    assert [r.get("record_type") for r in Spool(down_postgres.spool_dir).records()] == [
        None,
        "contact_note",
        "contact_note",
    ]
    back = dataclasses.replace(down_postgres, database_url=make_settings().database_url)
    assert replay_spool(back).notes_attached == 2
    assert [item["text"] for item in read_case(back, reference, actor="t").contact] == ["jess", "6B"]
    assert len([r for r in _rows(back, OutboxMessage) if alert_kind(r.kind) == "contact_added"]) == 4


def test_the_action_server_registers_the_follow_up_actions():
    executor = ActionExecutor()
    executor.register_package("actions")
    assert {
        "action_extract_contact_more",
        "validate_contact_more_form",
        "action_save_more_contact_details",
    } <= set(executor.actions)


# --- contact details attach only within the conversation and session of their disclosure -------------------

from bot.safeguarding.service import attach_contact_details  # noqa: E402


def _note(settings, *, sender_id, message_id, session_keys, reference=None, disclosure=(None, None)):
    """attach_contact_details for ``reference`` (else the disclosure of message ``disclosure``)."""
    return attach_contact_details(
        settings,
        disclosure_reference=reference,
        disclosure_sender_id=disclosure[0],
        disclosure_message_id=disclosure[1],
        sender_id=sender_id,
        message_id=message_id,
        text="Amy Lowe 5B",
        session_keys=session_keys,
    )


def _no_reference_said(dispatcher, *references):
    return not any(reference in (text or "") for text in _said(dispatcher) for reference in references)


async def test_a_note_aimed_at_another_conversations_reference_is_refused(settings, record):
    """The slot (or anything else) names a disclosure of another conversation: nothing is attached or kept,
    the person is thanked without a reference, and the other record is untouched."""
    other = record(settings, sender_id="someone-else", message_id="their-msg", text="not yours").reference
    await log_disclosure(settings)  # this conversation's own disclosure, but the slot names the other one
    dispatcher, events = await save(settings, answer_tracker("Amy Lowe 5B", reference=other))

    assert _rows(settings, DisclosureNote) == []
    assert Spool(settings.spool_dir).records() == []
    assert _said(dispatcher) == [texts.PUPIL_NOT_SAVED]
    assert _no_reference_said(dispatcher, other)
    assert _slot_events(events) == {
        "contact_details": None,
        "contact_offered": None,
        "contact_followup": None,  # nothing kept: no wait for more
    }
    assert all(event.get("metadata") is None for event in events)  # no commit marker: nothing committed
    assert read_case(settings, other, actor="t").contact == ()


def test_the_service_refuses_another_conversations_disclosure_whatever_the_caller_says(settings, record):
    reference = record(settings, sender_id="conv-1", message_id="msg-1").reference
    # The caller's claim of whose disclosure it is is not trusted: the record's own sender decides.
    refused = _note(
        settings,
        reference=reference,
        disclosure=("conv-1", "msg-1"),
        sender_id="conv-2",
        message_id="m-7",
        session_keys=["msg-1", "m-7"],
    )
    assert (refused.stored, refused.reference, refused.kept) == ("refused", None, False)
    assert _rows(settings, DisclosureNote) == [] and Spool(settings.spool_dir).records() == []
    assert not any(event.action == "contact_added" for event in _rows(settings, AuditEvent))
    # The DSL can see that something was aimed at the record, never what.
    [attempt] = [event for event in _rows(settings, AuditEvent) if event.action == "contact_refused"]
    assert attempt.detail["why"] == "it belongs to another conversation" and "Amy" not in json.dumps(
        attempt.detail
    )


def test_the_contact_modules_need_no_rasa():
    """Plain functions: the classifier and record-or-attach load without Rasa or its SDK."""
    import subprocess

    code = (
        "import sys, bot.safeguarding.contact, bot.safeguarding.turns; "
        "sys.exit(any(name.split('.')[0] in ('rasa', 'rasa_sdk') for name in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_service_refuses_a_disclosure_from_an_earlier_session(settings, record):
    reference = record(settings, sender_id="conv-1", message_id="msg-1").reference
    later = _note(settings, reference=reference, sender_id="conv-1", message_id="m-9", session_keys=["m-9"])
    assert later.stored == "refused" and _rows(settings, DisclosureNote) == []
    same = _note(
        settings, reference=reference, sender_id="conv-1", message_id="m-2", session_keys=["msg-1", "m-2"]
    )
    assert (same.stored, same.reference) == ("database", reference)


async def test_a_note_after_a_new_session_does_not_attach_to_the_previous_sessions_disclosure(settings):
    """Rasa carries the reference slot over to a new session (domain.yml): an answer there is not the
    answer to the earlier session's contact offer."""
    reference = await log_disclosure(settings)
    first = answer_tracker("Amy Lowe 5B", reference=reference)
    events = disclosure_tracker().events + [
        {"event": "action", "name": "action_log_disclosure", "timestamp": 4.1},
        {"event": "slot", "name": "disclosure_reference", "value": reference, "timestamp": 4.2},
        {"event": "action", "name": "action_session_start", "timestamp": 4000.0},
        {"event": "session_started", "timestamp": 4000.1},
        {"event": "slot", "name": "disclosure_reference", "value": reference, "timestamp": 4000.2},
        {"event": "action", "name": "action_listen", "timestamp": 4000.3},
        {
            "event": "user",
            "text": "Amy Lowe 5B",
            "input_channel": "socketio",
            "message_id": "msg-next-day",
            "timestamp": 4001.0,
            "parse_data": {"intent": {"name": "nlu_fallback"}, "entities": []},
        },
    ]
    latest = {**first.latest_message, "message_id": "msg-next-day"}
    tracker = Tracker("widget-42", first.slots, latest, events, False, None, {}, "contact_form")
    dispatcher, events = await save(settings, tracker)

    assert _rows(settings, DisclosureNote) == [] and Spool(settings.spool_dir).records() == []
    assert _said(dispatcher) == [texts.PUPIL_NOT_SAVED] and _no_reference_said(dispatcher, reference)
    assert _slot_events(events)["contact_followup"] is None
    assert [row.reference for row in _rows(settings, Disclosure)] == [reference]  # nothing recorded anew


async def test_a_note_for_another_conversations_spooled_disclosure_is_refused_too(down_postgres, record):
    other = record(down_postgres, sender_id="someone-else", message_id="their-msg").reference
    assert [r["reference"] for r in Spool(down_postgres.spool_dir).records()] == [other]
    dispatcher, _ = await save(down_postgres, answer_tracker("Amy Lowe 5B", reference=other))
    assert [r.get("record_type") for r in Spool(down_postgres.spool_dir).records()] == [None]  # no note
    assert _said(dispatcher) == [texts.PUPIL_NOT_SAVED] and _no_reference_said(dispatcher, other)


async def test_a_spooled_note_is_checked_again_when_it_is_replayed(down_postgres, make_settings, record):
    """Spooled before its disclosure was anywhere: the scope is checked once the disclosure is in the
    database, and a note that is not its session's is dropped, never attached."""
    spooled = _note(
        down_postgres,
        disclosure=("conv-1", "m-1"),
        sender_id="conv-2",
        message_id="m-2",
        session_keys=["m-1"],
    )
    assert spooled.stored == "spool"
    back = dataclasses.replace(down_postgres, database_url=make_settings().database_url)
    record(back, sender_id="conv-1", message_id="m-1")
    report = replay_spool(back)
    assert (report.notes_attached, report.notes_refused, report.remaining) == (0, 1, 0)
    assert _rows(back, DisclosureNote) == []


async def test_each_note_says_where_it_came_from(settings):
    reference = await log_disclosure(settings)
    await save(settings, answer_tracker("Amy", reference=reference))
    more = more_tracker("Amy", "year 6 class 6B", reference=reference)
    await ActionSaveMoreContactDetails(settings).run(CollectingDispatcher(), more, {})

    notes = read_case(settings, reference, actor="t").contact
    assert [(n["text"], n["origin"], n["channel"], n["source"]) for n in notes] == [
        ("Amy", "contact_form", "socketio", "action"),
        ("year 6 class 6B", "contact_more", "socketio", "action"),
    ]
    assert [event.detail.get("origin") for event in _contact_audits(settings)] == [
        "contact_form",
        "contact_more",
    ]


# --- only contact details are taken as contact details (issue #15) ------------------------------------------

from actions.safeguarding import ActionExtractContactDetails  # noqa: E402
from bot.safeguarding.contact import is_question, looks_like_details, offer_answer  # noqa: E402


def offer_tracker(answer, *, answers_before=(), intent="nlu_fallback", audience="pupil", latest_extra=None):
    """The moment ``answer`` arrives while contact_form asks (after ``answers_before``): Rasa's
    action_extract_slots runs action_extract_contact_details."""
    tracker = answer_tracker(
        answer,
        audience=audience,
        reference="SG-7K3P-QX9M",
        intent=intent,
        answers_before=answers_before,
        latest_extra=latest_extra,
        form_closed=False,
    )
    last_user = max(i for i, event in enumerate(tracker.events) if event.get("event") == "user")
    tracker.events = tracker.events[: last_user + 1]
    tracker.slots.update({"contact_details": None, "requested_slot": "contact_details"})
    return tracker


async def extract_details(tracker):
    return _slot_events(await ActionExtractContactDetails().run(CollectingDispatcher(), tracker, {}))


QUESTIONS = [
    ("what age can kids have WhatsApp", "policy_minimum_age"),
    ("is it ok to meet my online bestie irl", "policy_meeting_online_friends"),
    ("why?", "ask_why"),
    ("why", "ask_why"),
    ("can i add mr smith on insta lol", "policy_pupils_befriend_staff"),
    ("what about instagram?", "ask_other_platform"),
    ("how old do you have to be for tiktok", "policy_minimum_age"),
    ("ok but why", "ask_why"),
    ("so what happens now", "nlu_fallback"),
    ("will you tell my mum", "nlu_fallback"),
    # Questions with a name, a class or a number in them are still questions.
    ("is jess in 6B?", "nlu_fallback"),
    ("can jess from year 6 use tiktok", "policy_minimum_age"),
    ("jess 6B?", "affirm"),
    ("what if i give you 07700 900123", "nlu_fallback"),
    ("is 07700 900123 a scam number", "policy_scams"),
    ("who is mr smith", "nlu_fallback"),
]


@pytest.mark.parametrize(("text", "intent"), QUESTIONS)
def test_a_question_is_never_contact_details(text, intent):
    latest = {"text": text, "intent": {"name": intent}, "entities": []}
    assert is_question(text)
    assert not looks_like_details(text, latest)
    assert offer_answer(text, latest) == "other"
    assert offer_answer(text, latest, accepted=True) == "other"


@pytest.mark.parametrize(
    ("text", "first", "after_yes"),
    [
        ("jess year 6", "details", "details"),
        ("jess 6B", "details", "details"),
        ("Amy Lowe 5B", "details", "details"),
        ("May 6B", "details", "details"),  # a name that is also a word, next to a class
        ("07700 900123", "details", "details"),
        ("jo.smith@example.com", "details", "details"),
        ("you can reach me on 07700 900123", "details", "details"),
        ("no", "declined", "declined"),
        ("no thanks", "declined", "declined"),
        ("it's ok thanks", "declined", "declined"),
        ("yes", "accepted", "other"),
        ("ok you can", "accepted", "other"),
        ("yes my number is", "accepted", "other"),
        ("/affirm", "accepted", "other"),
        ("thanks", "other", "other"),
        ("kids on tiktok", "other", "other"),  # another topic
        ("he hit me again last night", "other", "other"),  # a disclosure, no details: the usual rules
        ("amy 5b. and my uncle hit me again last night", "details", "details"),  # recorded first, then kept
    ],
)
def test_what_an_answer_to_the_offer_is(text, first, after_yes):
    intent = "disclose" if "hit me" in text else "nlu_fallback"
    latest = {"text": text, "intent": {"name": intent}, "entities": []}
    if "uncle" in text:
        pytest.importorskip("bot.safeguarding.detector")
    assert offer_answer(text, latest) == first
    assert offer_answer(text, latest, accepted=True) == after_yes


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("jess year 6", "affirm"),
        ("jess 6B", "affirm"),
        ("Amy Lowe 5B", "nlu_fallback"),
        ("07700 900123", "policy_minimum_age"),
        ("no thanks", "deny"),
        ("yes", "affirm"),
        ("ok you can", "affirm"),
    ],
)
async def test_the_answer_to_the_offer_is_taken(text, intent):
    assert await extract_details(offer_tracker(text, intent=intent)) == {"contact_details": text}


@pytest.mark.parametrize(("text", "intent"), [*QUESTIONS, ("thanks", "thank"), ("hello", "greet")])
async def test_anything_else_is_not_taken_and_goes_to_the_usual_rules(text, intent):
    assert await extract_details(offer_tracker(text, intent=intent)) == {}
    assert await extract_details(offer_tracker(text, intent=intent, answers_before=["yes"])) == {}


async def test_after_a_yes_only_details_or_a_refusal_are_taken():
    assert await extract_details(offer_tracker("jess 6B", answers_before=["yes"])) == {
        "contact_details": "jess 6B"
    }
    assert await extract_details(offer_tracker("no", answers_before=["ok you can"], intent="deny")) == {
        "contact_details": "no"
    }
    for text in ("yes", "ok", "why?", "is it ok to meet my online bestie irl"):
        assert await extract_details(offer_tracker(text, answers_before=["yes"])) == {}
    # Only the message right after a yes: not after anything else, and never a third one.
    assert await extract_details(offer_tracker("jess 6B", answers_before=["why?"])) == {}
    assert await extract_details(offer_tracker("jess 6B", answers_before=["yes", "ok"])) == {}


async def test_nothing_is_taken_unless_the_offer_is_waiting_in_this_session():
    not_asking = offer_tracker("jess 6B")
    not_asking.active_loop = {}
    assert await extract_details(not_asking) == {}
    not_offered = offer_tracker("jess 6B")
    not_offered.slots["contact_offered"] = None
    assert await extract_details(not_offered) == {}
    new_session = offer_tracker("jess 6B")
    new_session.events[-1:-1] = [
        {"event": "action", "name": "action_session_start", "timestamp": 5.5},
        {"event": "session_started", "timestamp": 5.6},
    ]
    assert await extract_details(new_session) == {}


def _returned_tracker(answer, *, intent, after):
    """contact_form runs again after the usual rules answered ``answer`` (which it did not take): Rasa's
    temporary tracker for validate_contact_form."""
    tracker = offer_tracker(answer, intent=intent)
    tracker.events += [
        {"event": "action_execution_rejected", "name": "contact_form", "timestamp": 7.0},
        *({"event": "action", "name": name, "timestamp": 7.1} for name in after),
        {"event": "slot", "name": "requested_slot", "value": "contact_details", "timestamp": None},
        {"event": "action", "name": "contact_form", "timestamp": None},
    ]
    return tracker


async def test_the_form_ends_once_the_usual_rules_have_answered_a_message_it_did_not_take():
    returned = _returned_tracker(
        "what age can kids have WhatsApp", intent="policy_minimum_age", after=["action_answer_policy"]
    )
    events = await ValidateContactForm().run(CollectingDispatcher(), returned, CONTACT_DOMAIN)
    assert _slot_events(events) == {"requested_slot": None}

    # A new disclosure instead: recorded, safe reply, hand-off; the offer is then made again.
    disclosed = _returned_tracker(
        "he hit me again",
        intent="disclose",
        after=["action_log_disclosure", "utter_disclosure_safe", "action_disclosure_reference"],
    )
    events = await ValidateContactForm().run(CollectingDispatcher(), disclosed, CONTACT_DOMAIN)
    assert "requested_slot" not in _slot_events(events)
    ask = CollectingDispatcher()
    await ActionAskContactDetails().run(ask, disclosed, {})
    assert _said(ask) == [texts.contact_offer("pupil")]

    # As the form starts (already active, nothing asked yet, nothing rejected), it does not end.
    starting = disclosure_tracker("pupil")
    starting.events += [
        {"event": "action", "name": "action_disclosure_reference", "timestamp": 4.5},
        {"event": "active_loop", "name": "contact_form", "timestamp": None},
        {"event": "slot", "name": "requested_slot", "value": None, "timestamp": None},
        {"event": "action", "name": "contact_form", "timestamp": None},
    ]
    starting.active_loop = {"name": "contact_form"}
    starting.slots.update({"contact_offered": True, "requested_slot": None})
    events = await ValidateContactForm().run(CollectingDispatcher(), starting, CONTACT_DOMAIN)
    assert "requested_slot" not in _slot_events(events)


@pytest.mark.parametrize("audience", ["pupil", "parent"])
async def test_when_the_form_took_nothing_nothing_is_stored_or_said(settings, audience):
    reference = await log_disclosure(settings, audience=audience)
    tracker = answer_tracker(
        "what age can kids have WhatsApp", audience=audience, reference=reference, intent="policy_minimum_age"
    )
    tracker.slots["contact_details"] = None  # action_extract_contact_details took nothing
    dispatcher, events = await save(settings, tracker)
    assert _said(dispatcher) == []
    assert _slot_events(events) == {
        "contact_details": None,
        "contact_offered": None,
        "contact_followup": None,
    }
    assert _rows(settings, DisclosureNote) == [] and _contact_audits(settings) == []
    assert Spool(settings.spool_dir).records() == [] or all(
        record.get("record_type") != "contact_note" for record in Spool(settings.spool_dir).records()
    )


@pytest.mark.parametrize(("text", "intent"), QUESTIONS[:6])
async def test_a_question_handed_to_the_save_action_is_never_stored(settings, text, intent):
    """Defence in depth: even if a question reached action_save_contact_details, it is not kept."""
    reference = await log_disclosure(settings)
    dispatcher, events = await save(settings, answer_tracker(text, reference=reference, intent=intent))
    assert _rows(settings, DisclosureNote) == [] and _contact_audits(settings) == []
    assert _slot_events(events)["contact_followup"] is None
    assert texts.PUPIL_THANKS not in _said(dispatcher)


def test_the_action_server_registers_the_extractor():
    executor = ActionExecutor()
    executor.register_package("actions")
    assert "action_extract_contact_details" in executor.actions
