"""Desk accounts against a real database: enrolment, both factors, replay, lockout, sessions, scoping, CLI."""

from __future__ import annotations

import sqlite3

import pyotp
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bot.desk import accounts
from bot.desk.accounts import (
    EnrolmentError,
    LockedOut,
    add_user,
    check_password,
    check_second_factor,
    colleagues,
    complete_enrolment,
    disable_user,
    end_session,
    enrolment_link,
    list_users,
    remove_user,
    session_user,
    start_session,
    user_for_enrolment,
)
from bot.desk.models import DeskSession, DeskUserRow
from bot.safeguarding.audit_chain import verify_chain
from bot.safeguarding.store import AuditEvent, get_engine


def _rows(settings, model):
    with Session(get_engine(settings.database_url), future=True) as session:
        return list(session.execute(select(model).order_by(model.id)).scalars())


def _audit(settings, action):
    with Session(get_engine(settings.database_url), future=True) as session:
        return list(
            session.execute(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            ).scalars()
        )


def _raw_bytes(settings) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(settings.var_dir.glob("schoolguide.db*")))


def test_adding_a_user_checks_role_school_and_address(settings, clock):
    user, token = add_user(
        settings, " Ms.Patel@Lunsford.Example ", role="dsl", school="lunsford", actor="cli:root"
    )
    assert (user.email, user.role, user.school, user.enrolled, user.disabled) == (
        "ms.patel@lunsford.example",
        "dsl",
        "lunsford",
        False,
        False,
    )
    assert enrolment_link(settings, token) == f"https://desk.trust.example/enrol/{token}"
    assert user_for_enrolment(settings, token) == user
    assert user_for_enrolment(settings, "not-a-token") is None
    assert token not in _raw_bytes(settings).decode("latin-1")  # only its sha256 is kept

    with pytest.raises(ValueError, match="already has a desk account"):
        add_user(settings, "ms.patel@lunsford.example", role="deputy", school="lunsford", actor="cli:root")
    with pytest.raises(ValueError, match="role must be one of"):
        add_user(settings, "a@b.example", role="headteacher", school="lunsford", actor="cli:root")
    with pytest.raises(ValueError, match="needs one of the trust's schools"):
        add_user(settings, "a@b.example", role="deputy", school="hogwarts", actor="cli:root")
    with pytest.raises(ValueError, match="needs one of the trust's schools"):
        add_user(settings, "a@b.example", role="dsl", school=None, actor="cli:root")
    with pytest.raises(ValueError, match="not an e-mail address"):
        add_user(settings, "not an address", role="admin", school=None, actor="cli:root")
    lead, _ = add_user(settings, "lead@trust.example", role="trust-lead", school="lunsford", actor="cli:root")
    assert lead.school is None  # a trust lead sees every school, an admin none: no school is kept

    [added, _lead] = _audit(settings, "user_added")
    assert (added.disclosure_id, added.actor, added.detail) == (
        None,
        "cli:root",
        {"email": "ms.patel@lunsford.example", "role": "dsl", "school": "lunsford"},
    )


def test_enrolment_sets_an_argon2id_hash_an_encrypted_secret_and_single_use_recovery_codes(settings, clock):
    _, token = add_user(settings, "dsl@lunsford.example", role="dsl", school="lunsford", actor="cli:root")
    secret = pyotp.random_base32()
    code = pyotp.TOTP(secret).at(clock())
    password = "purple elephant kettle"

    with pytest.raises(EnrolmentError, match="at least 12 characters"):
        complete_enrolment(settings, token, password="short", totp_secret=secret, code=code)
    with pytest.raises(EnrolmentError, match="too easy to guess"):
        complete_enrolment(settings, token, password="password1234", totp_secret=secret, code=code)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with pytest.raises(EnrolmentError, match="does not match"):
        complete_enrolment(settings, token, password=password, totp_secret=secret, code=wrong)
    assert user_for_enrolment(settings, token) is not None  # refusals do not burn the link

    codes = complete_enrolment(settings, token, password=password, totp_secret=secret, code=code)
    assert len(codes) == 10 and len(set(codes)) == 10
    with pytest.raises(EnrolmentError, match="used or has expired"):
        complete_enrolment(settings, token, password=password, totp_secret=secret, code=code)
    assert user_for_enrolment(settings, token) is None

    [row] = _rows(settings, DeskUserRow)
    assert row.password_hash.startswith("$argon2id$") and password not in row.password_hash
    assert secret not in row.totp_secret_encrypted
    raw = _raw_bytes(settings)
    for secret_text in (password, secret, *codes):
        assert secret_text.encode() not in raw
    [user] = list_users(settings)
    assert user.enrolled and not user.disabled
    assert [event.detail for event in _audit(settings, "user_enrolled")] == [
        {"email": "dsl@lunsford.example"}
    ]


def test_an_enrolment_link_expires_after_72_hours(settings, clock):
    _, token = add_user(settings, "dsl@lunsford.example", role="dsl", school="lunsford", actor="cli:root")
    clock.advance(hours=72, seconds=1)
    assert user_for_enrolment(settings, token) is None
    secret = pyotp.random_base32()
    with pytest.raises(EnrolmentError, match="used or has expired"):
        complete_enrolment(
            settings,
            token,
            password="purple elephant kettle",
            totp_secret=secret,
            code=pyotp.TOTP(secret).at(clock()),
        )


def test_sign_in_needs_both_factors_and_a_totp_code_works_once(settings, clock, enrol):
    user, password, secret, codes = enrol(settings, "dsl@lunsford.example")
    totp = pyotp.TOTP(secret)
    assert check_password(settings, "dsl@lunsford.example", "wrong password here") is None
    assert check_password(settings, "nobody@lunsford.example", password) is None
    assert check_password(settings, "DSL@lunsford.example", password) == user

    # The code typed at enrolment is spent: the same 30-second step cannot sign in.
    assert check_second_factor(settings, user.id, totp.at(clock())) is False
    clock.advance(seconds=30)
    fresh = totp.at(clock())
    assert check_second_factor(settings, user.id, fresh) is True
    assert check_second_factor(settings, user.id, fresh) is False  # replayed
    clock.advance(seconds=30)
    assert check_second_factor(settings, user.id, totp.at(clock().timestamp() - 30)) is False  # older step
    assert check_second_factor(settings, user.id, totp.at(clock())) is True

    # A recovery code works once, in any case or spacing.
    assert check_second_factor(settings, user.id, codes[0].upper().replace("-", " ")) is True
    assert check_second_factor(settings, user.id, codes[0]) is False
    assert accounts.recovery_codes_left(settings, user.id) == 9
    assert [e.detail for e in _audit(settings, "recovery_code_used")] == [
        {"email": user.email, "recovery_codes_left": 9}
    ]


def test_five_failures_lock_the_account_for_15_minutes_then_doubling(settings, clock, enrol):
    user, password, secret, _ = enrol(settings, "dsl@lunsford.example")
    for _ in range(4):
        assert check_password(settings, user.email, "not the password") is None
    with pytest.raises(LockedOut) as locked:
        check_password(settings, user.email, "not the password")
    assert locked.value.retry_after == 15 * 60
    with pytest.raises(LockedOut):
        check_password(settings, user.email, password)  # even the right password waits
    assert check_second_factor(settings, user.id, pyotp.TOTP(secret).at(clock().timestamp() + 30)) is False

    clock.advance(minutes=15, seconds=1)
    assert check_password(settings, user.email, password) == user
    # Second-factor failures count too: two wrong codes and three wrong passwords lock again, for 30 minutes.
    assert check_second_factor(settings, user.id, "000000") is False
    assert check_second_factor(settings, user.id, "not-a-code") is False
    for _ in range(2):
        assert check_password(settings, user.email, "not the password") is None
    with pytest.raises(LockedOut) as locked:
        check_password(settings, user.email, "not the password")
    assert locked.value.retry_after == 30 * 60
    assert [event.detail["minutes"] for event in _audit(settings, "locked_out")] == [15, 30]

    clock.advance(minutes=31)
    assert check_password(settings, user.email, password) == user
    assert check_second_factor(settings, user.id, pyotp.TOTP(secret).at(clock())) is True  # resets the count
    for _ in range(4):
        assert check_password(settings, user.email, "not the password") is None
    with pytest.raises(LockedOut) as locked:
        check_password(settings, user.email, "not the password")
    assert locked.value.retry_after == 15 * 60  # a full sign-in started the doubling again


def test_sessions_are_stored_hashed_expire_when_idle_or_old_and_end(settings, clock, enrol):
    user, *_ = enrol(settings, "dsl@lunsford.example")
    session_id, csrf = start_session(settings, user.id)
    assert session_user(settings, session_id) == (user, csrf)
    [row] = _rows(settings, DeskSession)
    assert row.id_hash != session_id and session_id.encode() not in _raw_bytes(settings)
    assert session_user(settings, "forged") is None

    clock.advance(minutes=29)
    assert session_user(settings, session_id) == (user, csrf)  # and touched: idle time starts again
    clock.advance(minutes=29)
    assert session_user(settings, session_id) == (user, csrf)
    clock.advance(minutes=31)
    assert session_user(settings, session_id) is None  # idle for more than 30 minutes
    clock.advance(minutes=1)
    assert session_user(settings, session_id) is None  # and stays ended

    session_id, _ = start_session(settings, user.id)
    for _ in range(25):  # busy all day, never idle: 11 h 40 min
        clock.advance(minutes=28)
        assert session_user(settings, session_id) is not None
    clock.advance(minutes=28)
    assert session_user(settings, session_id) is None  # 12 h 8 min old

    session_id, _ = start_session(settings, user.id)
    end_session(settings, session_id)
    assert session_user(settings, session_id) is None
    assert _audit(settings, "signed_out")[0].actor == user.email


def test_idle_minutes_come_from_settings(make_settings, clock, enrol):
    settings = make_settings(desk_idle_minutes=5)
    user, *_ = enrol(settings, "dsl@lunsford.example")
    session_id, _ = start_session(settings, user.id)
    clock.advance(minutes=5, seconds=1)
    assert session_user(settings, session_id) is None


def test_disabling_ends_sessions_and_removing_keeps_the_audit_trail(settings, clock, enrol):
    user, password, *_ = enrol(settings, "dsl@lunsford.example")
    session_id, _ = start_session(settings, user.id)
    disable_user(settings, user.email, actor="cli:root")
    assert session_user(settings, session_id) is None
    assert check_password(settings, user.email, password) is None
    assert list_users(settings)[0].disabled
    with pytest.raises(ValueError):
        start_session(settings, user.id)

    remove_user(settings, user.email, actor="admin@trust.example")
    assert list_users(settings) == []
    assert _rows(settings, DeskSession) == []
    assert [(e.actor, e.detail["email"]) for e in _audit(settings, "user_removed")] == [
        ("admin@trust.example", "dsl@lunsford.example")
    ]
    assert [e.detail["email"] for e in _audit(settings, "user_added")] == ["dsl@lunsford.example"]
    with pytest.raises(ValueError, match="no desk account"):
        remove_user(settings, user.email, actor="admin@trust.example")
    assert verify_chain(get_engine(settings.database_url)).ok


def test_colleagues_are_enrolled_enabled_case_workers_who_can_see_the_school(settings, clock, enrol):
    dsl, *_ = enrol(settings, "dsl@lunsford.example")
    deputy, *_ = enrol(settings, "deputy@lunsford.example", role="deputy")
    lead, *_ = enrol(settings, "lead@trust.example", role="trust-lead", school=None)
    other, *_ = enrol(settings, "dsl@scotts.example", school="scotts")
    admin, *_ = enrol(settings, "admin@trust.example", role="admin", school=None)
    add_user(
        settings, "new@lunsford.example", role="dsl", school="lunsford", actor="cli:root"
    )  # not enrolled
    gone, *_ = enrol(settings, "gone@lunsford.example")
    disable_user(settings, gone.email, actor="cli:root")

    assert [u.email for u in colleagues(settings, dsl)] == [
        "deputy@lunsford.example",
        "dsl@lunsford.example",
        "lead@trust.example",
    ]
    assert [u.email for u in colleagues(settings, other)] == ["dsl@scotts.example", "lead@trust.example"]
    assert [u.email for u in colleagues(settings, lead)] == [
        "deputy@lunsford.example",
        "dsl@lunsford.example",
        "dsl@scotts.example",
        "lead@trust.example",
    ]
    assert colleagues(settings, admin) == []


def test_the_cli_adds_lists_disables_and_removes_users(make_settings, monkeypatch, capsys):
    from bot.cli import main

    settings = make_settings()
    for name, value in {
        "DATABASE_URL": settings.database_url,
        "ENCRYPTION_KEY": settings.encryption_key,
        "VAR_DIR": str(settings.var_dir),
        "DESK_URL": "https://desk.trust.example",
    }.items():
        monkeypatch.setenv(f"SCHOOLGUIDE_{name}", value)
    assert main(["desk", "add-user", "dsl@lunsford.example", "--school", "lunsford", "--role", "dsl"]) == 0
    link = capsys.readouterr().out.strip().splitlines()[-1]
    assert link.startswith("https://desk.trust.example/enrol/")
    assert user_for_enrolment(settings, link.rsplit("/", 1)[1]).email == "dsl@lunsford.example"
    assert main(["desk", "add-user", "x@lunsford.example", "--school", "nowhere", "--role", "dsl"]) == 2
    assert "trust's schools" in capsys.readouterr().err

    assert main(["desk", "list-users"]) == 0
    assert "dsl@lunsford.example" in capsys.readouterr().out
    assert main(["desk", "disable-user", "dsl@lunsford.example"]) == 0
    assert list_users(settings)[0].disabled
    assert main(["desk", "remove-user", "dsl@lunsford.example"]) == 0
    assert list_users(settings) == []
    actors = {event.actor for event in _audit(settings, "user_removed") + _audit(settings, "user_added")}
    assert len(actors) == 1 and actors.pop().startswith("cli:")


def test_a_second_enrolment_in_the_same_time_step_cannot_reuse_the_code_to_sign_in(
    any_settings, clock, enrol
):
    """On SQLite and PostgreSQL: the enrolment code is spent; the next step's code signs in once."""
    user, password, secret, _ = enrol(any_settings, "dsl@lunsford.example")
    assert check_password(any_settings, user.email, password) == user
    assert check_second_factor(any_settings, user.id, pyotp.TOTP(secret).at(clock())) is False
    clock.advance(seconds=30)
    code = pyotp.TOTP(secret).at(clock())
    assert check_second_factor(any_settings, user.id, code) is True
    assert check_second_factor(any_settings, user.id, code) is False
    assert verify_chain(get_engine(any_settings.database_url)).ok


def test_the_raw_sqlite_file_holds_no_password_or_secret(settings, clock, enrol):
    user, password, secret, codes = enrol(settings, "dsl@lunsford.example")
    with sqlite3.connect(settings.var_dir / "schoolguide.db") as raw:
        values = [str(v) for row in raw.execute(text("SELECT * FROM desk_users").text) for v in row]
        values += [str(v) for row in raw.execute("SELECT * FROM desk_recovery_codes") for v in row]
    assert not any(password in v or secret in v or any(code in v for code in codes) for v in values)


def test_desk_settings_and_alert_links_default_to_the_desk(monkeypatch):
    from bot.settings import Settings

    for name in ("DESK_HOST", "DESK_PORT", "DESK_URL", "DESK_IDLE_MINUTES", "CASE_LINK_BASE"):
        monkeypatch.delenv(f"SCHOOLGUIDE_{name}", raising=False)
    settings = Settings.from_env()
    assert (settings.desk_host, settings.desk_port, settings.desk_url, settings.desk_idle_minutes) == (
        "127.0.0.1",
        5080,
        "http://127.0.0.1:5080",
        30,
    )
    assert settings.case_link_base == "http://127.0.0.1:5080/cases/"
    monkeypatch.setenv("SCHOOLGUIDE_DESK_URL", "https://desk.trust.example/")
    assert Settings.from_env().case_link_base == "https://desk.trust.example/cases/"
    monkeypatch.setenv("SCHOOLGUIDE_CASE_LINK_BASE", "https://elsewhere.example/c/")
    assert Settings.from_env().case_link_base == "https://elsewhere.example/c/"
    monkeypatch.setenv("SCHOOLGUIDE_DESK_IDLE_MINUTES", "0")
    with pytest.raises(ValueError, match="DESK_IDLE_MINUTES"):
        Settings.from_env()
