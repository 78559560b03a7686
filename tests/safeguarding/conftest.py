"""Fixtures for the safeguarding hand-off tests: real databases, a real SMTP server, a real webhook server.

Nothing here fakes a result: SQLite files live under tmp_path, PostgreSQL tests use a fresh schema on the
server named by SCHOOLGUIDE_TEST_POSTGRES_URL (skipped, with the reason, when none is reachable), e-mail goes
to an aiosmtpd server on a local port and webhooks to an http.server thread.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

os.environ.setdefault("SCHOOLGUIDE_WORKER", "off")


def free_port() -> int:
    """A local TCP port with nothing listening on it (yet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(name="free_port")
def _free_port_fixture() -> Callable[[], int]:
    return free_port


@pytest.fixture
def down_postgres(make_settings):
    """Settings whose database is a PostgreSQL port with nothing listening (the database is "down")."""
    return make_settings(database_url=f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test")


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    from bot.safeguarding.store import dispose_engines

    yield
    dispose_engines()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., object]:
    """Settings with var/ under tmp_path, a fixed key, two DSLs, one deputy and SMTP on a closed port."""
    from bot.settings import Settings

    key = Fernet.generate_key().decode()

    def build(**overrides: object) -> Settings:
        var_dir = tmp_path / "var"
        base = dataclasses.replace(
            Settings.from_env(),
            home=tmp_path,
            var_dir=var_dir,
            database_url=f"sqlite:///{var_dir / 'schoolguide.db'}",
            tracker_database_url=f"sqlite:///{var_dir / 'tracker.db'}",
            default_school="lunsford",
            default_audience="parent",
            encryption_key=key,
            spool_dir=var_dir / "spool",
            dsl_emails=("dsl@lunsford.example", "head@lunsford.example"),
            deputy_dsl_emails=("deputy@lunsford.example",),
            alert_from="schoolguide@lunsford.example",
            smtp_host="127.0.0.1",
            smtp_port=free_port(),
            smtp_username=None,
            smtp_password=None,
            smtp_starttls=False,
            alert_webhook_url=None,
            case_link_base="https://dsl.lunsford.example/cases/",
            ack_timeout_minutes=30,
            delivery_max_attempts=4,
            worker_interval_seconds=1,
        )
        return dataclasses.replace(base, **overrides)

    return build


@pytest.fixture
def settings(make_settings):
    return make_settings()


# postgres_url (a fresh schema on the real PostgreSQL server) is in tests/conftest.py.


@pytest.fixture(params=["sqlite", "postgresql"])
def any_settings(request, make_settings):
    """The same test on SQLite and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return make_settings()
    return make_settings(database_url=request.getfixturevalue("postgres_url"))


class RecordingHandler:
    """aiosmtpd handler that keeps every accepted message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, object]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "data": envelope.content.decode("utf-8", "replace"),
            }
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[Callable[[int], RecordingHandler]]:
    """Start a real aiosmtpd server on a given port; returns its recording handler."""
    from aiosmtpd.controller import Controller

    controllers = []

    def start(port: int) -> RecordingHandler:
        handler = RecordingHandler()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return handler

    yield start
    for controller in controllers:
        controller.stop()


@dataclasses.dataclass
class WebhookServer:
    url: str
    posts: list[dict[str, object]]
    status: list[int]  # the status the next posts get; a list so tests can change it


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    """A real local HTTP server standing in for a Slack/Teams incoming webhook."""
    posts: list[dict[str, object]] = []
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            posts.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "json": json.loads(body.decode("utf-8")),
                }
            )
            self.send_response(status[0])
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WebhookServer(
            url=f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/secret",
            posts=posts,
            status=status,
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def record():
    """record_disclosure with realistic defaults; keyword arguments override them."""
    return _record


def _record(settings, **overrides):
    from bot.safeguarding.service import record_disclosure

    fields = dict(
        school="lunsford",
        audience="pupil",
        channel="socketio",
        sender_id="conv-1",
        message_id="msg-1",
        text="my teacher says our chats are a secret",
        context=[{"who": "user", "text": "hi"}, {"who": "bot", "text": "Hello! How can I help?"}],
        categories=["sexual_abuse_grooming", "adult_boundary_breach"],
        risk="immediate",
    )
    fields.update(overrides)
    return record_disclosure(settings, **fields)
