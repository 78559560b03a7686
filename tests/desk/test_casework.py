"""Casework on the desk against a real database: scoping, the queue, the chronology, the actions."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot.desk import casework
from bot.desk.casework import CaseNotFound, InvalidStatusChange
from bot.desk.models import Assignment, CaseEntry, CaseworkIsAppendOnly
from bot.safeguarding.audit_chain import verify_chain
from bot.safeguarding.store import AuditEvent, Disclosure, OutboxMessage, get_engine

WORDS = "my teacher says our chats are a secret"
NOTE = "Spoke to Amy's form tutor Mr Okafor; referral to MASH made at 10:40"
OUTCOME = "Referred to children's social care; LADO informed about the teacher"


def _rows(settings, model):
    with Session(get_engine(settings.database_url), future=True) as session:
        return list(session.execute(select(model).order_by(model.id)).scalars())


def _raw_bytes(settings) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(settings.var_dir.glob("schoolguide.db*")))


@pytest.fixture
def people(settings, enrol):
    """A DSL and a deputy at Lunsford, a DSL at Scotts, the trust lead and an admin, all enrolled."""
    return {
        "dsl": enrol(settings, "dsl@lunsford.example")[0],
        "deputy": enrol(settings, "deputy@lunsford.example", role="deputy")[0],
        "scotts": enrol(settings, "dsl@scotts.example", school="scotts")[0],
        "lead": enrol(settings, "lead@trust.example", role="trust-lead", school=None)[0],
        "admin": enrol(settings, "admin@trust.example", role="admin", school=None)[0],
    }


def test_another_schools_case_and_any_case_for_an_admin_are_not_found(settings, people, record):
    reference = record(settings)
    for viewer in (people["scotts"], people["admin"]):
        for action in (
            lambda v: casework.open_case(settings, v, reference),
            lambda v: casework.acknowledge(settings, v, reference),
            lambda v: casework.add_action_note(settings, v, reference, "note"),
            lambda v: casework.change_status(settings, v, reference, "in_progress"),
            lambda v: casework.close_case(settings, v, reference, "outcome"),
            lambda v: casework.assign(settings, v, reference, "dsl@lunsford.example"),
        ):
            with pytest.raises(CaseNotFound):
                action(viewer)
    with pytest.raises(CaseNotFound):
        casework.open_case(settings, people["dsl"], "SG-NOPE-NOPE")
    # Nothing was read, changed or added by those attempts.
    assert {event.action for event in _rows(settings, AuditEvent) if event.disclosure_id} == {"created"}
    assert _rows(settings, CaseEntry) == [] and _rows(settings, Assignment) == []
    assert casework.queue(settings, people["admin"]) == []
    assert casework.open_case(settings, people["lead"], reference.lower()).case.text == WORDS


def test_the_queue_is_scoped_urgent_first_then_oldest_and_filtered(settings, people, record, clock):
    from datetime import timedelta

    now = clock()
    old_medium = record(
        settings, message_id="m1", risk="medium", categories=["bullying"], created_at=now - timedelta(hours=3)
    )
    new_immediate = record(settings, message_id="m2", risk="immediate", created_at=now - timedelta(minutes=5))
    old_immediate = record(settings, message_id="m3", risk="immediate", created_at=now - timedelta(hours=1))
    high = record(settings, message_id="m4", risk="high", categories=["self_harm_suicide"], created_at=now)
    scotts = record(settings, message_id="m5", school="scotts", risk="immediate", created_at=now)

    queue = casework.queue(settings, people["dsl"])
    assert [item.reference for item in queue] == [old_immediate, new_immediate, high, old_medium]
    first = queue[0]
    assert (first.school, first.status, first.risk, first.assigned_to) == (
        "lunsford",
        "new",
        "immediate",
        None,
    )
    assert first.age_minutes == 60 and first.escalated  # not acknowledged within 30 minutes
    assert not queue[1].escalated

    assert [item.reference for item in casework.queue(settings, people["scotts"])] == [scotts]
    assert len(casework.queue(settings, people["lead"])) == 5
    assert [i.reference for i in casework.queue(settings, people["lead"], school="scotts")] == [scotts]
    assert [i.reference for i in casework.queue(settings, people["dsl"], school="scotts")] == []
    assert [i.reference for i in casework.queue(settings, people["dsl"], category="bullying")] == [old_medium]
    assert [i.reference for i in casework.queue(settings, people["dsl"], risk="high")] == [high]

    casework.acknowledge(settings, people["dsl"], old_immediate)
    casework.close_case(settings, people["dsl"], high, OUTCOME)
    queue = casework.queue(settings, people["dsl"])
    assert [(i.reference, i.status, i.escalated) for i in queue] == [
        (old_immediate, "acknowledged", False),
        (new_immediate, "new", False),
        (old_medium, "new", True),
    ]
    assert [i.reference for i in casework.queue(settings, people["dsl"], status="closed")] == [high]
    assert len(casework.queue(settings, people["dsl"], status="all")) == 4
    with pytest.raises(ValueError):
        casework.queue(settings, people["dsl"], status="archived")


def test_working_a_case_leaves_a_readable_chronology_and_nothing_in_plaintext(any_settings, enrol, record):
    """On SQLite and PostgreSQL: open, acknowledge, assign, note, move on and close a case."""
    settings = any_settings
    dsl = enrol(settings, "dsl@lunsford.example")[0]
    deputy = enrol(settings, "deputy@lunsford.example", role="deputy")[0]
    other = enrol(settings, "dsl@scotts.example", school="scotts")[0]
    reference = record(settings)

    detail = casework.open_case(settings, dsl, reference)
    assert detail.case.text == WORDS and detail.case.reference == reference
    assert detail.case.context[0]["text"] == "hi"
    assert (detail.assigned_to, detail.escalated, detail.action_notes) == (None, False, ())

    casework.acknowledge(settings, dsl, reference)
    with pytest.raises(ValueError, match="not a colleague"):
        casework.assign(settings, dsl, reference, other.email)
    casework.assign(settings, dsl, reference, deputy.email)
    casework.add_action_note(settings, deputy, reference, NOTE)
    casework.change_status(settings, deputy, reference, "in_progress")
    with pytest.raises(InvalidStatusChange):
        casework.change_status(settings, deputy, reference, "closed")  # closing needs an outcome
    with pytest.raises(ValueError):
        casework.close_case(settings, deputy, reference, "   ")
    with pytest.raises(ValueError):
        casework.add_action_note(settings, deputy, reference, "x" * 5001)
    casework.close_case(settings, deputy, reference, OUTCOME)
    with pytest.raises(InvalidStatusChange):
        casework.close_case(settings, deputy, reference, OUTCOME)

    detail = casework.open_case(settings, deputy, reference)
    assert detail.case.status == "closed" and detail.assigned_to == deputy.email
    assert [(note["by"], note["text"]) for note in detail.action_notes] == [(deputy.email, NOTE)]
    lines = [(entry.actor, entry.what) for entry in detail.chronology]
    assert lines == [
        ("schoolguide", "Disclosure recorded"),
        ("desk:dsl@lunsford.example", "Read the case"),
        ("desk:dsl@lunsford.example", "Acknowledged"),
        ("desk:dsl@lunsford.example", "Assigned to deputy@lunsford.example"),
        ("desk:deputy@lunsford.example", "Action note added"),
        ("desk:deputy@lunsford.example", "Status: in progress"),
        ("desk:deputy@lunsford.example", f"Closed: {OUTCOME}"),
        ("desk:deputy@lunsford.example", "Read the case"),
    ]
    assert all(WORDS not in entry.what and NOTE not in entry.what for entry in detail.chronology)

    # Every read is audited as the signed-in person; the chain still verifies.
    reads = [e for e in _rows(settings, AuditEvent) if e.action == "read"]
    assert [(e.actor, e.detail["via"]) for e in reads] == [
        ("desk:dsl@lunsford.example", "desk"),
        ("desk:deputy@lunsford.example", "desk"),
    ]
    assert verify_chain(get_engine(settings.database_url)).ok

    # Notes and outcomes are stored encrypted, and cannot be changed or deleted, not even in SQL.
    entries = _rows(settings, CaseEntry)
    assert [entry.kind for entry in entries] == ["action_note", "outcome"]
    assert all(NOTE not in e.text_encrypted and OUTCOME not in e.text_encrypted for e in entries)
    with Session(get_engine(settings.database_url), future=True) as session:
        entry = session.get(CaseEntry, entries[0].id)
        entry.author = "someone else"
        with pytest.raises(CaseworkIsAppendOnly):
            session.flush()
    for statement in ("UPDATE desk_case_entries SET author = 'x'", "DELETE FROM desk_assignments"):
        with pytest.raises(DBAPIError, match="append-only"):
            with get_engine(settings.database_url).begin() as connection:
                connection.execute(text(statement))


def test_action_notes_are_not_in_the_raw_database_file(settings, people, record):
    reference = record(settings)
    casework.add_action_note(settings, people["dsl"], reference, NOTE)
    casework.close_case(settings, people["dsl"], reference, OUTCOME)
    raw = _raw_bytes(settings)
    assert NOTE.encode() not in raw and OUTCOME.encode() not in raw and b"MASH" not in raw
    assert casework.open_case(settings, people["dsl"], reference).action_notes[0]["text"] == NOTE


def test_assigning_queues_an_e_mail_to_the_assignee_without_the_words(settings, people, record):
    from bot.safeguarding.notifiers import EmailNotifier
    from bot.safeguarding.outbox import _alert_for

    reference = record(settings)
    casework.assign(settings, people["dsl"], reference, "DEPUTY@lunsford.example")
    casework.assign(settings, people["lead"], reference, people["dsl"].email)  # handed back
    rows = [row for row in _rows(settings, OutboxMessage) if row.kind.startswith("assigned:")]
    assert [(row.channel, row.recipient, row.status) for row in rows] == [
        ("email", "deputy@lunsford.example", "pending"),
        ("email", "dsl@lunsford.example", "pending"),
    ]
    assert casework.assignment_for(settings, rows[0].kind) == (
        "deputy@lunsford.example",
        "dsl@lunsford.example",
    )
    assert casework.queue(settings, people["dsl"])[0].assigned_to == "dsl@lunsford.example"
    # The message the worker will send: the category and the link, never the words.
    with Session(get_engine(settings.database_url), future=True) as session:
        disclosure = session.execute(select(Disclosure)).scalar_one()
        alert = _alert_for(settings, disclosure, rows[0], rows[0].created_at)
    message = EmailNotifier(settings).message(rows[0].recipient, alert).as_string()
    assert f"https://desk.trust.example/cases/{reference}" in message
    assert "Sexual abuse / grooming" in message
    assert WORDS not in message and "secret" not in message
    for row in rows:
        assert WORDS not in " ".join(str(value) for value in vars(row).values())


def test_a_trust_lead_works_every_school_but_assigns_only_to_those_who_can_see_it(settings, people, record):
    reference = record(settings, school="scotts", message_id="s1")
    with pytest.raises(ValueError, match="not a colleague"):
        casework.assign(settings, people["lead"], reference, people["dsl"].email)
    casework.assign(settings, people["lead"], reference, people["scotts"].email)
    assert casework.open_case(settings, people["scotts"], reference).assigned_to == "dsl@scotts.example"


def test_assignment_alerts_go_through_the_outbox_worded_for_the_assignee(settings, people, record):
    """Each hand-over is e-mailed once to whoever now has the case, naming who handed it over, and shows in
    the chronology; the words and the action notes stay out of it."""
    from bot.safeguarding.notifiers import EmailNotifier
    from bot.safeguarding.outbox import deliver_pending

    sent: list[tuple[str, str, str]] = []  # (recipient, raw message, decoded body)

    class RecordingEmail:
        """The real e-mail message, kept instead of handed to an SMTP server."""

        channel = "email"
        configured = True

        def send(self, recipient, alert):
            message = EmailNotifier(settings).message(recipient, alert)
            sent.append((recipient, message.as_string(), message.get_content()))

    reference = record(settings)
    casework.add_action_note(settings, people["dsl"], reference, NOTE)
    casework.assign(settings, people["dsl"], reference, people["deputy"].email)
    casework.assign(settings, people["lead"], reference, people["dsl"].email)  # handed back
    assert deliver_pending(settings, notifiers={"email": RecordingEmail()}).sent == 3  # + the DSL alert

    assigned = [item for item in sent if "Assigned to you" in item[1]]
    assert [to for to, _, _ in assigned] == ["deputy@lunsford.example", "dsl@lunsford.example"]
    assert assigned[0][2].startswith(
        "dsl@lunsford.example assigned this safeguarding case to you (deputy@lunsford.example)"
    )
    assert "Assigned by: lead@trust.example" in assigned[1][2]
    for _, raw, body in assigned:
        assert f"Open the case: https://desk.trust.example/cases/{reference}" in body
        assert "Sexual abuse / grooming" in body
        for shown in (raw, body):
            assert WORDS not in shown and NOTE not in shown and "MASH" not in shown
    lines = [entry.what for entry in casework.open_case(settings, people["dsl"], reference).chronology]
    assert "Assignment alert e-mailed to deputy@lunsford.example" in lines
    assert "Assignment alert e-mailed to dsl@lunsford.example" in lines
    # Sent, not waiting: a second pass sends nothing more.
    assert deliver_pending(settings, notifiers={"email": RecordingEmail()}).sent == 0 and len(sent) == 3


def test_an_assignment_alert_whose_assignment_is_missing_still_names_the_recipient(settings, record):
    from bot.safeguarding.outbox import _alert_for

    record(settings)
    with Session(get_engine(settings.database_url), future=True) as session:
        disclosure = session.execute(select(Disclosure)).scalar_one()
        row = OutboxMessage(
            kind="assigned:999", channel="email", recipient="deputy@lunsford.example", created_at=None
        )
        alert = _alert_for(settings, disclosure, row, disclosure.created_at)
    assert (alert.kind, alert.assigned_to, alert.assigned_by) == ("assigned", "deputy@lunsford.example", None)
    assert alert.body().startswith(
        "A colleague assigned this safeguarding case to you (deputy@lunsford.example)"
    )
