"""DSL alerts through the outbox: real SMTP and webhook servers, back-off, exactly once, escalation."""

from __future__ import annotations

import dataclasses
import email
import threading
from datetime import timedelta
from email import policy

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.safeguarding.cases import acknowledge
from bot.safeguarding.outbox import DeliveryReport, backoff_delay, deliver_pending, escalate_unacknowledged
from bot.safeguarding.store import AuditEvent, Disclosure, OutboxMessage, get_engine, utcnow

WORDS = "my teacher says our chats are a secret"
NOTE = "Spoke to Amy's form tutor Mr Okafor; referral to MASH made at 10:40"


def _outbox(settings) -> list[OutboxMessage]:
    with Session(get_engine(settings.database_url), future=True) as session:
        rows = session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
        session.expunge_all()
        return rows


def _audit_actions(settings) -> list[str]:
    with Session(get_engine(settings.database_url), future=True) as session:
        return list(session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def test_backoff_doubles_from_thirty_seconds_and_caps_at_an_hour():
    assert [backoff_delay(n).total_seconds() for n in range(1, 10)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]


def test_smtp_down_backs_off_then_delivers_exactly_once_when_it_is_back(any_settings, record, smtp_server):
    settings = any_settings
    reference = record(settings, text=WORDS).reference
    now = utcnow()

    # Nothing is listening on settings.smtp_port.
    report = deliver_pending(settings, now=now)
    assert (report.sent, report.retrying) == (0, 2)
    rows = _outbox(settings)
    assert {row.status for row in rows} == {"pending"}
    assert {row.attempts for row in rows} == {1}
    assert all(row.next_attempt_at == now + timedelta(seconds=30) for row in rows)
    assert all("SMTP 127.0.0.1" in row.last_error for row in rows)

    handler = smtp_server(settings.smtp_port)
    # Not due yet: the back-off is respected even though the server is now up.
    assert deliver_pending(settings, now=now + timedelta(seconds=29)).sent == 0
    assert handler.messages == []

    report = deliver_pending(settings, now=now + timedelta(seconds=31))
    assert report.sent == 2
    assert sorted(rcpt for message in handler.messages for rcpt in message["to"]) == [
        "dsl@lunsford.example",
        "head@lunsford.example",
    ]
    assert len(handler.messages) == 2
    for message in handler.messages:
        assert reference in message["data"]
        assert "https://dsl.lunsford.example/cases/" + reference in message["data"]
        assert "IMMEDIATE" in message["data"] and "lunsford" in message["data"]
        assert "Sexual abuse / grooming" in message["data"]
        assert WORDS not in message["data"]
    assert {row.status for row in _outbox(settings)} == {"sent"}

    # Running again (even much later) sends nothing more.
    assert deliver_pending(settings, now=now + timedelta(hours=5)).sent == 0
    assert len(handler.messages) == 2
    assert _audit_actions(settings).count("alert_sent") == 2


def test_alert_body_never_contains_the_words(settings, record, smtp_server):
    handler = smtp_server(settings.smtp_port)
    words = "Mr Jones sends me photos and says not to tell mum"
    record(settings, text=words, context=[{"who": "user", "text": "please help, Mr Jones"}])
    deliver_pending(settings)
    assert len(handler.messages) == 2
    for message in handler.messages:
        assert "Mr Jones" not in message["data"] and "photos" not in message["data"]


def test_webhook_gets_one_post_with_the_reference_and_no_words(make_settings, record, webhook_server):
    settings = make_settings(dsl_emails=(), alert_webhook_url=webhook_server.url)
    reference = record(settings, text=WORDS).reference

    report = deliver_pending(settings)
    assert report.sent == 1
    assert len(webhook_server.posts) == 1
    post = webhook_server.posts[0]
    assert post["content_type"] == "application/json"
    assert set(post["json"]) == {"text"}
    assert reference in post["json"]["text"]
    assert "https://dsl.lunsford.example/cases/" + reference in post["json"]["text"]
    assert WORDS not in post["json"]["text"]

    assert deliver_pending(settings, now=utcnow() + timedelta(days=1)).sent == 0
    assert len(webhook_server.posts) == 1
    # The webhook URL is a secret: it is not stored in the outbox.
    assert [row.recipient for row in _outbox(settings)] == ["alert_webhook"]


def test_webhook_error_is_retried_and_url_never_logged(make_settings, record, webhook_server):
    settings = make_settings(dsl_emails=(), alert_webhook_url=webhook_server.url)
    record(settings)
    webhook_server.status[0] = 500
    now = utcnow()
    assert deliver_pending(settings, now=now).retrying == 1
    row = _outbox(settings)[0]
    assert row.last_error.endswith("webhook answered HTTP 500") and "secret" not in row.last_error
    webhook_server.status[0] = 200
    assert deliver_pending(settings, now=now + timedelta(seconds=31)).sent == 1
    assert len(webhook_server.posts) == 2  # the failed post and the successful one


def test_gives_up_after_max_attempts_with_an_audit_event(settings, record, caplog):
    record(settings)
    now = utcnow()
    for _ in range(settings.delivery_max_attempts):
        now += timedelta(hours=2)
        deliver_pending(settings, now=now)
    rows = _outbox(settings)
    assert {row.status for row in rows} == {"failed"}
    assert {row.attempts for row in rows} == {settings.delivery_max_attempts}
    assert _audit_actions(settings).count("alert_failed") == 2
    assert "Gave up sending alert" in caplog.text
    # A failed row is not retried forever.
    assert deliver_pending(settings, now=now + timedelta(days=1)) == DeliveryReport()


def test_unconfigured_smtp_waits_without_using_up_attempts(
    make_settings, record, smtp_server, caplog, monkeypatch
):
    from bot.safeguarding import outbox

    monkeypatch.setattr(outbox, "_last_waiting_warning", {"count": 0, "at": 0.0})
    settings = make_settings(smtp_host=None)
    record(settings)
    report = deliver_pending(settings)
    assert report.waiting_for_settings == 2 and report.retrying == 0
    assert {row.attempts for row in _outbox(settings)} == {0}
    assert "waiting for a channel that is not configured" in caplog.text
    caplog.clear()
    deliver_pending(settings)
    assert "not configured" not in caplog.text  # the same backlog is not re-announced every pass

    configured = dataclasses.replace(settings, smtp_host="127.0.0.1")
    handler = smtp_server(configured.smtp_port)
    assert deliver_pending(configured).sent == 2
    assert len(handler.messages) == 2


def test_two_workers_at_once_send_each_alert_once(any_settings, record, smtp_server):
    settings = dataclasses.replace(
        any_settings, dsl_emails=tuple(f"dsl{i}@lunsford.example" for i in range(5))
    )
    for i in range(4):
        record(settings, message_id=f"m{i}")
    handler = smtp_server(settings.smtp_port)

    barrier = threading.Barrier(3)
    reports = []

    def worker():
        barrier.wait()
        reports.append(deliver_pending(settings))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sum(report.sent for report in reports) == 20
    deliveries = [
        (rcpt, message["data"].split("Reference:")[1].split()[0])
        for message in handler.messages
        for rcpt in message["to"]
    ]
    assert len(deliveries) == 20 and len(set(deliveries)) == 20


def test_worker_that_died_mid_send_is_released_after_the_lease(settings, record, smtp_server):
    record(settings)
    now = utcnow()
    with get_engine(settings.database_url).begin() as connection:
        connection.execute(
            OutboxMessage.__table__.update().values(status="sending", claim_token="dead", claimed_at=now)
        )
    handler = smtp_server(settings.smtp_port)
    assert deliver_pending(settings, now=now + timedelta(minutes=5)).sent == 0
    assert deliver_pending(settings, now=now + timedelta(minutes=11)).sent == 2
    assert len(handler.messages) == 2


def test_unacknowledged_disclosure_is_escalated_once_to_the_deputy(any_settings, record, smtp_server):
    settings = any_settings
    handler = smtp_server(settings.smtp_port)
    reference = record(settings).reference
    acknowledged = record(settings, message_id="msg-acked").reference
    acknowledge(settings, acknowledged, actor="Ms Patel")
    created = utcnow()
    deliver_pending(settings, now=created)
    assert len(handler.messages) == 4

    assert escalate_unacknowledged(settings, now=created + timedelta(minutes=29)) == 0
    assert escalate_unacknowledged(settings, now=created + timedelta(minutes=31)) == 1
    assert escalate_unacknowledged(settings, now=created + timedelta(minutes=45)) == 0

    assert deliver_pending(settings, now=created + timedelta(minutes=31)).sent == 1
    escalation = handler.messages[-1]
    assert escalation["to"] == ["deputy@lunsford.example"]
    assert reference in escalation["data"] and "NOT ACKNOWLEDGED" in escalation["data"]
    assert WORDS not in escalation["data"]
    assert deliver_pending(settings, now=created + timedelta(hours=3)).sent == 0
    assert len(handler.messages) == 5

    with Session(get_engine(settings.database_url), future=True) as session:
        escalated = (
            session.execute(
                select(Disclosure.reference)
                .join(AuditEvent, AuditEvent.disclosure_id == Disclosure.id)
                .where(AuditEvent.action == "escalated")
            )
            .scalars()
            .all()
        )
    assert escalated == [reference]


def test_acknowledged_in_time_is_not_escalated(settings, record):
    reference = record(settings).reference
    acknowledge(settings, reference, actor="Ms Patel")
    assert escalate_unacknowledged(settings, now=utcnow() + timedelta(hours=4)) == 0
    assert [row.kind for row in _outbox(settings)] == ["alert", "alert"]


def test_no_deputy_configured_is_logged(make_settings, record, caplog):
    settings = make_settings(deputy_dsl_emails=())
    record(settings)
    assert escalate_unacknowledged(settings, now=utcnow() + timedelta(hours=1)) == 0
    assert "no deputy DSL or webhook" in caplog.text


def test_escalation_is_cancelled_if_acknowledged_before_it_goes(settings, record, smtp_server):
    reference = record(settings).reference
    later = utcnow() + timedelta(minutes=40)
    assert escalate_unacknowledged(settings, now=later) == 1
    acknowledge(settings, reference, actor="Ms Patel")
    handler = smtp_server(settings.smtp_port)

    report = deliver_pending(settings, now=later)
    assert (report.sent, report.cancelled) == (2, 1)  # the two alerts still go; the escalation does not
    assert all(message["to"] != ["deputy@lunsford.example"] for message in handler.messages)
    escalation = [row for row in _outbox(settings) if row.kind == "escalation"]
    assert [row.status for row in escalation] == ["cancelled"]


def test_webhook_is_not_held_up_by_email_waiting_for_smtp_settings(make_settings, record, webhook_server):
    settings = make_settings(smtp_host=None, alert_webhook_url=webhook_server.url)
    for i in range(3):
        record(settings, message_id=f"m{i}")
    report = deliver_pending(settings)
    assert (report.sent, report.waiting_for_settings) == (3, 6)
    assert len(webhook_server.posts) == 3


def _desk_user(settings, address: str, *, role: str = "dsl", school: str | None = "lunsford"):
    """A desk account, enrolled the way a person would (TOTP from pyotp at the real time)."""
    import pyotp

    from bot.desk.accounts import add_user, complete_enrolment, list_users

    _, token = add_user(settings, address, role=role, school=school, actor="cli:root")
    secret = pyotp.random_base32()
    complete_enrolment(
        settings,
        token,
        password=f"correct horse {address} staple",
        totp_secret=secret,
        code=pyotp.TOTP(secret).now(),
    )
    return next(user for user in list_users(settings) if user.email == address)


def test_assignment_alert_says_who_assigned_the_case_and_never_the_words_or_notes(
    any_settings, record, smtp_server
):
    from bot.desk import casework

    settings = any_settings
    handler = smtp_server(settings.smtp_port)
    reference = record(settings, text=WORDS).reference
    assert deliver_pending(settings).sent == 2  # the DSL alerts for the disclosure itself
    dsl = _desk_user(settings, "dsl@lunsford.example")
    deputy = _desk_user(settings, "deputy@lunsford.example", role="deputy")
    casework.add_action_note(settings, dsl, reference, NOTE)
    casework.assign(settings, dsl, reference, deputy.email)

    assert deliver_pending(settings).sent == 1
    [message] = handler.messages[2:]
    assert message["to"] == ["deputy@lunsford.example"]
    raw = message["data"]
    parsed = email.message_from_string(raw, policy=policy.default)
    body = parsed.get_body(("plain",)).get_content()
    assert parsed["Subject"] == (
        f"[SchoolGuide] Assigned to you: IMMEDIATE risk safeguarding case {reference} (lunsford)"
    )
    assert body.startswith(
        "dsl@lunsford.example assigned this safeguarding case to you (deputy@lunsford.example) "
        "on the DSL desk."
    )
    assert "Assigned by: dsl@lunsford.example" in body
    assert "Categories: Sexual abuse / grooming, Adult boundary breach" in body
    assert f"Open the case: https://dsl.lunsford.example/cases/{reference}" in body
    assert "A safeguarding disclosure was made" not in body  # not worded as a new-disclosure alert
    for text in (raw, body):
        assert WORDS not in text and NOTE not in text
        assert "secret" not in text and "Okafor" not in text and "MASH" not in text

    # Sent once, audited; a later pass sends nothing more.
    assert [row.status for row in _outbox(settings) if row.kind.startswith("assigned:")] == ["sent"]
    assert deliver_pending(settings, now=utcnow() + timedelta(hours=2)).sent == 0
    assert len(handler.messages) == 3
    assert _audit_actions(settings).count("alert_sent") == 3
