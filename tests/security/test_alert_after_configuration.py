"""Finding 6: a disclosure stored while no DSL e-mail or webhook is configured is alerted, exactly once, as
soon as one is. Real SQLite under tmp_path and the real PostgreSQL server, a real aiosmtpd server, a real
local webhook server, the real worker pass."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.safeguarding.outbox import deliver_pending
from bot.safeguarding.service import attach_contact_details, record_disclosure
from bot.safeguarding.store import AuditEvent, OutboxMessage, dispose_engines, get_engine, utcnow
from bot.safeguarding.worker import run_once
from bot.settings import Settings

WORDS = "my teacher says our chats are a secret"
DSL = "dsl@lunsford.example"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    dispose_engines()


@pytest.fixture(params=["sqlite", "postgresql"])
def unalerted(request, tmp_path) -> Settings:
    """Settings with nobody to alert: no DSL addresses, no webhook, no SMTP host."""
    var_dir = tmp_path / "var"
    database_url = f"sqlite:///{var_dir / 'schoolguide.db'}"
    if request.param == "postgresql":
        database_url = request.getfixturevalue("postgres_url")
    return dataclasses.replace(
        Settings.from_env(),
        home=tmp_path,
        var_dir=var_dir,
        database_url=database_url,
        tracker_database_url=f"sqlite:///{var_dir / 'tracker.db'}",
        encryption_key=Fernet.generate_key().decode(),
        spool_dir=var_dir / "spool",
        dsl_emails=(),
        deputy_dsl_emails=(),
        smtp_host=None,
        smtp_port=_free_port(),
        smtp_username=None,
        smtp_password=None,
        smtp_starttls=False,
        alert_webhook_url=None,
        alert_from="schoolguide@lunsford.example",
        case_link_base="https://dsl.lunsford.example/cases/",
        ack_timeout_minutes=30,
        delivery_max_attempts=3,
    )


@pytest.fixture
def smtp_messages():
    """Start a real aiosmtpd server on a port; returns the list of messages it accepted."""
    from aiosmtpd.controller import Controller

    controllers = []

    def start(port: int) -> list[dict]:
        messages: list[dict] = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
                messages.append({"to": list(envelope.rcpt_tos), "data": envelope.content.decode()})
                return "250 OK"

        controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return messages

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def webhook_posts():
    posts: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", posts
    server.shutdown()
    server.server_close()


def _disclose(settings: Settings, message_id: str = "msg-1") -> str:
    return record_disclosure(
        settings,
        school="lunsford",
        audience="pupil",
        channel="pupil",
        sender_id="pupil-conv-1",
        message_id=message_id,
        text=WORDS,
        context=[],
        categories=["sexual_abuse_grooming"],
        risk="immediate",
    ).reference


def _outbox(settings: Settings) -> list[OutboxMessage]:
    with Session(get_engine(settings.database_url), future=True) as session:
        rows = session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
        session.expunge_all()
        return rows


def _audit_actions(settings: Settings) -> list[str]:
    with Session(get_engine(settings.database_url), future=True) as session:
        return list(session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def test_disclosure_stored_with_alerting_off_is_alerted_exactly_once_after_configuration(
    unalerted, smtp_messages
):
    # An SMTP server is listening all along, so a mail sent too early, or twice, would be seen.
    messages = smtp_messages(unalerted.smtp_port)
    reference = _disclose(unalerted)
    assert _outbox(unalerted), "a disclosure must get an outbox row even with nobody configured"

    # Many worker passes over many hours with nobody configured: nothing sent, failed or counted as a try.
    now = utcnow()
    for hours in range(0, 48, 6):
        report = run_once(unalerted, now=now + timedelta(hours=hours))
        assert report.errors == {}
    assert messages == []
    rows = _outbox(unalerted)
    assert {(row.status, row.attempts) for row in rows} == {("pending", 0)}
    assert not {"alert_sent", "alert_failed"} & set(_audit_actions(unalerted))
    assert deliver_pending(unalerted).waiting_for_settings == len(rows)

    configured = dataclasses.replace(unalerted, dsl_emails=(DSL,), smtp_host="127.0.0.1")
    dispose_engines()  # as after a restart with the new settings
    assert run_once(configured).errors == {}
    assert run_once(configured).errors == {}
    assert deliver_pending(configured).sent == 0

    assert len(messages) == 1
    assert messages[0]["to"] == [DSL]
    assert reference in messages[0]["data"] and WORDS not in messages[0]["data"]
    actions = _audit_actions(configured)
    assert actions.count("alert_queued") == 1 and actions.count("alert_sent") == 1


def test_contact_details_given_while_alerting_off_are_announced_once_on_the_webhook(unalerted, webhook_posts):
    url, posts = webhook_posts
    reference = _disclose(unalerted)
    attached = attach_contact_details(
        unalerted,
        disclosure_reference=reference,
        disclosure_sender_id="pupil-conv-1",
        disclosure_message_id="msg-1",
        sender_id="pupil-conv-1",
        message_id="msg-2",
        text="Amy Lowe 5B",
    )
    assert attached.stored == "database"
    assert deliver_pending(unalerted).sent == 0 and posts == []

    configured = dataclasses.replace(unalerted, alert_webhook_url=url)
    assert deliver_pending(configured).sent == 2
    assert deliver_pending(configured).sent == 0
    texts = [post["text"] for post in posts]
    assert len(texts) == 2 and all(reference in text for text in texts)
    assert sum("Contact details added" in text for text in texts) == 1
    assert not any("Amy" in text or WORDS in text for text in texts)


def test_two_workers_routing_at_once_send_each_waiting_alert_once(unalerted, smtp_messages):
    references = [_disclose(unalerted, message_id=f"m{i}") for i in range(3)]
    configured = dataclasses.replace(unalerted, dsl_emails=(DSL,), smtp_host="127.0.0.1")
    messages = smtp_messages(configured.smtp_port)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            deliver_pending(configured)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    sent = sorted(message["data"].split("Reference:")[1].split()[0] for message in messages)
    assert sent == sorted(references)
