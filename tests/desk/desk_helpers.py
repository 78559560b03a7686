"""What the desk's web tests share (tests/desk/test_web_*.py, tests/e2e/test_desk_browser.py): settings for a
desk on a loopback port, the desk served by uvicorn in a thread, and an authenticator app."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyotp
from cryptography.fernet import Fernet

from bot.desk.web import create_app
from bot.settings import Settings

PASSWORD = "violet kettle harbour 42"
STEP = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def desk_settings(tmp_path, port: int, **overrides: object) -> Settings:
    """Settings for a desk at http://127.0.0.1:<port> with var/ under tmp_path, a fresh key and no SMTP."""
    var_dir = tmp_path / "var"
    url = f"http://127.0.0.1:{port}"
    base = dataclasses.replace(
        Settings.from_env(),
        var_dir=var_dir,
        database_url=f"sqlite:///{var_dir / 'schoolguide.db'}",
        tracker_database_url=f"sqlite:///{var_dir / 'tracker.db'}",
        encryption_key=Fernet.generate_key().decode(),
        spool_dir=var_dir / "spool",
        smtp_host=None,
        alert_webhook_url=None,
        desk_host="127.0.0.1",
        desk_port=port,
        desk_url=url,
        case_link_base=f"{url}/cases/",
    )
    return dataclasses.replace(base, **overrides)


@contextmanager
def running_desk(settings: Settings) -> Iterator[object]:
    """The desk on uvicorn in a thread, at ``settings.desk_url``; yields the app it serves."""
    import uvicorn

    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.desk_port, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the desk did not start"
        time.sleep(0.05)
    try:
        yield app
    finally:
        server.should_exit = True
        thread.join(10)


class Phone:
    """An authenticator app: gives a code for a time step later than any it gave before (as a person
    waiting for the next code would), and never one the server's clock could already call stale.

    ``margin``: seconds before the end of a step in which it waits for the next one (a browser takes a
    moment to submit, so it wants more than a script)."""

    def __init__(self, secret: str, margin: float = 4) -> None:
        self.totp = pyotp.TOTP(secret)
        self.margin = margin
        self.last_step: int | None = None

    def code(self) -> str:
        while True:
            now = time.time()
            if now % STEP > STEP - self.margin:  # too close to the next step: wait for it
                time.sleep(STEP - now % STEP + 0.2)
                continue
            current = int(now) // STEP
            step = current - 1 if self.last_step is None else max(current - 1, self.last_step + 1)
            if step <= current + 1:
                self.last_step = step
                return self.totp.at(step * STEP)
            time.sleep(1)
