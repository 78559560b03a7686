"""Contact details added after the alert went out: the DSL is told, once per note and channel, never the
details. Real SQLite under tmp_path, a real aiosmtpd server, a real local webhook server, the real spool."""

from __future__ import annotations

import dataclasses
import email
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.safeguarding.cases import read_case
from bot.safeguarding.notifiers import Alert, webhook_payload
from bot.safeguarding.outbox import alert_kind, contact_alert_kind, deliver_pending
from bot.safeguarding.service import attach_contact_details, replay_spool
from bot.safeguarding.spool import Spool
from bot.safeguarding.store import AuditEvent, DisclosureNote, OutboxMessage, get_engine, utcnow

WORDS = "my teacher says our chats are a secret"
DETAILS = "Amy Lowe 5B, mum's number 07700 900123"


def _rows(settings, model):
    with Session(get_engine(settings.database_url), future=True) as session:
        rows = session.execute(select(model).order_by(model.id)).scalars().all()
        session.expunge_all()
        return rows


def _contact_rows(settings):
    return [row for row in _rows(settings, OutboxMessage) if alert_kind(row.kind) == "contact_added"]


def _attach(settings, reference, *, message_id="msg-contact", text=DETAILS, disclosure_message="msg-1"):
    return attach_contact_details(
        settings,
        disclosure_reference=reference,
        disclosure_sender_id="conv-1",
        disclosure_message_id=disclosure_message,
        sender_id="conv-1",
        message_id=message_id,
        text=text,
    )


def _assert_says_only_that_details_were_added(text, reference):
    assert reference in text
    assert "https://dsl.lunsford.example/cases/" + reference in text
    assert "contact details" in text.lower()
    for secret in ("Amy", "Lowe", "07700", "900123", "class 6B", WORDS):
        assert secret not in text


def test_details_after_the_alert_are_announced_once_per_note_and_channel(settings, record, smtp_server):
    handler = smtp_server(settings.smtp_port)
    reference = record(settings, text=WORDS).reference
    assert deliver_pending(settings).sent == 2  # the alert itself, to both DSLs
    handler.messages.clear()

    note = _attach(settings, reference)
    assert (note.stored, note.reference) == ("database", reference)
    [stored_note] = _rows(settings, DisclosureNote)
    rows = _contact_rows(settings)
    assert sorted((row.channel, row.recipient) for row in rows) == [
        ("email", "dsl@lunsford.example"),
        ("email", "head@lunsford.example"),
    ]
    assert {row.kind for row in rows} == {contact_alert_kind(stored_note.id)}
    [audit] = [event for event in _rows(settings, AuditEvent) if event.action == "contact_added"]
    assert audit.detail["alerts_queued"] == ["email:dsl@lunsford.example", "email:head@lunsford.example"]

    report = deliver_pending(settings)
    assert report.sent == 2
    assert sorted(rcpt for message in handler.messages for rcpt in message["to"]) == [
        "dsl@lunsford.example",
        "head@lunsford.example",
    ]
    for message in handler.messages:
        subject = " ".join(email.message_from_string(message["data"])["Subject"].split())
        expected = f"[SchoolGuide] Contact details added to safeguarding disclosure {reference} (lunsford)"
        assert subject == expected
        _assert_says_only_that_details_were_added(message["data"], reference)
        assert f"schoolguide disclosures show {reference}" in message["data"]

    # The same message again (a retried action) is not a new note, so nothing new is queued or sent.
    assert not _attach(settings, reference).created
    assert deliver_pending(settings, now=utcnow() + timedelta(hours=2)).sent == 0
    assert len(handler.messages) == 2

    # A second note (a follow-up message) is announced once more.
    _attach(settings, reference, message_id="msg-contact-2", text="year 6 class 6B")
    assert len(_contact_rows(settings)) == 4
    assert deliver_pending(settings).sent == 2
    assert len(handler.messages) == 4
    case = read_case(settings, reference, actor="Ms Patel")
    assert [item["text"] for item in case.contact] == [DETAILS, "year 6 class 6B"]
    assert sum(1 for alert in case.alerts if alert["kind"].startswith("contact:")) == 4


def test_smtp_down_the_announcement_backs_off_then_goes_exactly_once(settings, record, smtp_server):
    reference = record(settings, text=WORDS).reference
    _attach(settings, reference)
    now = utcnow()

    report = deliver_pending(settings, now=now)  # nothing listens on the SMTP port yet
    assert (report.sent, report.retrying) == (0, 4)  # two alerts, two announcements
    contact = _contact_rows(settings)
    assert {(row.status, row.attempts) for row in contact} == {("pending", 1)}
    assert all(row.next_attempt_at == now + timedelta(seconds=30) for row in contact)

    handler = smtp_server(settings.smtp_port)
    assert deliver_pending(settings, now=now + timedelta(seconds=29)).sent == 0
    assert deliver_pending(settings, now=now + timedelta(seconds=31)).sent == 4
    assert deliver_pending(settings, now=now + timedelta(hours=5)).sent == 0
    announcements = [m for m in handler.messages if "Contact details added" in m["data"]]
    assert sorted(rcpt for message in announcements for rcpt in message["to"]) == [
        "dsl@lunsford.example",
        "head@lunsford.example",
    ]
    for message in announcements:
        _assert_says_only_that_details_were_added(message["data"], reference)
    assert {row.status for row in _contact_rows(settings)} == {"sent"}
    sent = [
        event.detail
        for event in _rows(settings, AuditEvent)
        if event.action == "alert_sent" and event.detail["kind"].startswith("contact:")
    ]
    assert len(sent) == 2


def test_the_webhook_gets_one_post_per_note_without_the_details(make_settings, record, webhook_server):
    settings = make_settings(dsl_emails=(), alert_webhook_url=webhook_server.url)
    reference = record(settings, text=WORDS).reference
    assert deliver_pending(settings).sent == 1
    _attach(settings, reference)

    webhook_server.status[0] = 503
    now = utcnow()
    assert deliver_pending(settings, now=now).retrying == 1
    webhook_server.status[0] = 200
    assert deliver_pending(settings, now=now + timedelta(seconds=31)).sent == 1
    assert deliver_pending(settings, now=now + timedelta(days=1)).sent == 0

    [alert_post, failed, announced] = webhook_server.posts
    assert failed == announced
    text = announced["json"]["text"]
    assert text.startswith(f"*Contact details added to safeguarding disclosure {reference}*")
    _assert_says_only_that_details_were_added(text, reference)
    assert "Contact details added" not in alert_post["json"]["text"]
    assert [row.recipient for row in _contact_rows(settings)] == ["alert_webhook"]


def test_spooled_details_queue_the_same_announcement_when_replayed(
    down_postgres, make_settings, record, webhook_server
):
    down = dataclasses.replace(down_postgres, alert_webhook_url=webhook_server.url)
    reference = record(down, text=WORDS).reference
    assert _attach(down, reference).stored == "spool"
    assert [r.get("record_type") for r in Spool(down.spool_dir).records()] == [None, "contact_note"]

    back = dataclasses.replace(down, database_url=make_settings().database_url)
    report = replay_spool(back)
    assert (report.replayed, report.notes_attached, report.remaining) == (1, 1, 0)
    [note] = _rows(back, DisclosureNote)
    contact = _contact_rows(back)
    assert sorted((row.channel, row.recipient, row.kind) for row in contact) == [
        ("email", "dsl@lunsford.example", contact_alert_kind(note.id)),
        ("email", "head@lunsford.example", contact_alert_kind(note.id)),
        ("webhook", "alert_webhook", contact_alert_kind(note.id)),
    ]
    [audit] = [event for event in _rows(back, AuditEvent) if event.action == "contact_added"]
    assert audit.detail["source"] == "spool" and len(audit.detail["alerts_queued"]) == 3

    assert replay_spool(back).notes_attached == 0  # a second replay queues nothing more
    assert len(_contact_rows(back)) == 3
    deliver_pending(back)
    announced = [post for post in webhook_server.posts if "Contact details added" in post["json"]["text"]]
    assert len(announced) == 1
    _assert_says_only_that_details_were_added(announced[0]["json"]["text"], reference)


def test_no_dsl_channel_configured_keeps_the_details_and_an_unrouted_alert(make_settings, record):
    settings = make_settings(dsl_emails=(), alert_webhook_url=None)
    reference = record(settings, text=WORDS).reference
    assert _attach(settings, reference).stored == "database"
    # Nobody to send to yet: one placeholder per message, routed once a DSL channel is set (outbox.py).
    assert [(row.channel, alert_kind(row.kind), row.status) for row in _rows(settings, OutboxMessage)] == [
        ("unrouted", "alert", "pending"),
        ("unrouted", "contact_added", "pending"),
    ]
    assert [item["text"] for item in read_case(settings, reference, actor="t").contact] == [DETAILS]


def test_the_announcement_text_names_the_case_and_nothing_the_person_said():
    from datetime import datetime, timezone

    alert = Alert(
        kind="contact_added",
        reference="SG-7K3P-QX9M",
        school="lunsford",
        audience="pupil",
        channel="socketio",
        categories=("bullying",),
        risk="immediate",
        created_at=datetime(2025, 1, 14, 16, 5, tzinfo=timezone.utc),
        link="https://dsl.lunsford.example/cases/SG-7K3P-QX9M",
        added_at=datetime(2025, 1, 14, 16, 9, tzinfo=timezone.utc),
    )
    body = alert.body()
    assert "added contact details" in body and "Details added: 2025-01-14 16:09 GMT (16:09 UTC)" in body
    assert "The contact details are not included in this message" in body
    assert "Risk:       IMMEDIATE" in body and "Categories: Bullying" in body
    assert alert.subject.startswith("[SchoolGuide] Contact details added to safeguarding disclosure SG-7K3P")
    assert "(added 2025-01-14 16:09 GMT (16:09 UTC))" in webhook_payload(alert)["text"]
