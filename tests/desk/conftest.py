"""Fixtures for the desk's tests: real SQLite files under tmp_path (and the real PostgreSQL server through
``postgres_url`` in tests/conftest.py, skipped with the reason when none is reachable), the project's own
clause base for school slugs, the real cipher, and a clock the tests can move."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

# The safeguarding tests' fixtures serve as they are: engine clean-up, settings (var/ under tmp_path, a fresh
# key, SMTP on a closed port; the desk's make_settings below adds its own addresses), SQLite and PostgreSQL.
from tests.safeguarding.conftest import _fresh_engines, _record, any_settings  # noqa: F401
from tests.safeguarding.conftest import make_settings as safeguarding_settings  # noqa: F401

os.environ.setdefault("SCHOOLGUIDE_WORKER", "off")


@pytest.fixture
def make_settings(safeguarding_settings) -> Callable[..., object]:  # noqa: F811 - the imported fixture
    """Settings with var/ under tmp_path, a fixed key, one DSL address and SMTP on a closed port."""

    def build(**overrides: object):
        desk = dict(
            dsl_emails=("dsl@lunsford.example",),
            desk_url="https://desk.trust.example",
            case_link_base="https://desk.trust.example/cases/",
            desk_idle_minutes=30,
        )
        return safeguarding_settings(**{**desk, **overrides})

    return build


@pytest.fixture
def settings(make_settings):
    return make_settings()


@dataclasses.dataclass
class Clock:
    """The desk's notion of now: starts at the real time, moved forward by tests."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now = self.now + timedelta(**delta)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    import bot.desk.accounts
    import bot.desk.casework

    moving = Clock(datetime.now(timezone.utc))
    monkeypatch.setattr(bot.desk.accounts, "utcnow", moving)
    monkeypatch.setattr(bot.desk.casework, "utcnow", moving)
    return moving


@pytest.fixture
def record():
    """record_disclosure with realistic defaults (the safeguarding tests'); keyword arguments override them.
    Returns the stored disclosure's reference."""

    def _record_reference(settings, **overrides):
        result = _record(settings, **{"categories": ["sexual_abuse_grooming"], **overrides})
        assert result.stored == "database", result
        return result.reference

    return _record_reference


@pytest.fixture
def enrol(clock):
    """Add and enrol an account the way a person would (TOTP computed with pyotp at the test's clock);
    returns (user, password, totp secret, recovery codes)."""
    import pyotp

    from bot.desk.accounts import add_user, complete_enrolment, list_users

    def _enrol(settings, email: str, *, role: str = "dsl", school: str | None = "lunsford"):
        _, token = add_user(settings, email, role=role, school=school, actor="cli:root")
        secret = pyotp.random_base32()
        password = f"correct horse {email} staple"
        codes = complete_enrolment(
            settings, token, password=password, totp_secret=secret, code=pyotp.TOTP(secret).at(clock())
        )
        [user] = [user for user in list_users(settings) if user.email == email]
        return user, password, secret, codes

    return _enrol
