"""Who may sign in to the desk, and how: accounts, enrolment, both factors, lockout and sessions.

One deployment is one trust. A ``dsl`` or ``deputy`` works one school's cases, a ``trust-lead`` every
school's; an ``admin`` manages accounts and never reads a case. Every account change and every sign-in is an
audit event (``disclosure_id`` NULL) on the same hash chain as the casework.

Passwords are argon2id hashes (argon2-cffi); the second factor is a TOTP code (pyotp) whose time step is
remembered so that a code is accepted once, or a single-use recovery code. Enrolment links, session ids and
recovery codes are random and kept only as sha256 digests: a copy of the database signs nobody in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bot.desk.models import DeskSession, DeskUserRow, EnrolmentToken, RecoveryCode
from bot.safeguarding.crypto import load_cipher
from bot.safeguarding.store import add_audit_event, get_engine, utcnow
from bot.settings import Settings

ROLES = ("dsl", "deputy", "trust-lead", "admin")
SCHOOL_ROLES = ("dsl", "deputy")  # tied to one school
CASE_ROLES = ("dsl", "deputy", "trust-lead")  # may read cases

ENROLMENT_VALID = timedelta(hours=72)
SESSION_MAX_AGE = timedelta(hours=12)
MAX_FAILURES = 5
FIRST_LOCK = timedelta(minutes=15)
MAX_LOCK = timedelta(days=1)
RECOVERY_CODES = 10
MIN_PASSWORD_LENGTH = 12
TOTP_STEP_SECONDS = 30
# The most common long-enough passwords (breach lists): refused even though they are 12+ characters.
COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "qwertyuiopas",
        "qwertyuiop123",
        "password1234",
        "password12345",
        "password123!",
        "passwordpassword",
        "iloveyou1234",
        "abcdefghijkl",
        "abc123abc123",
        "letmein12345",
        "welcome12345",
        "welcome123!!",
        "changeme1234",
        "safeguarding",
        "safeguarding1",
        "safeguarding123",
        "schoolguide1",
        "schoolguide123",
        "aaaaaaaaaaaa",
        "111111111111",
        "000000000000",
    }
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when the address is unknown, so that it takes as long as a wrong password."""
    return _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class DeskUser:
    """A desk account as the web pages see it (no secrets)."""

    id: int
    email: str
    role: str
    school: str | None
    enrolled: bool
    disabled: bool


class LockedOut(Exception):
    """Too many failed attempts: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"locked for {retry_after} more second(s)")
        self.retry_after = retry_after


class EnrolmentError(ValueError):
    """Enrolment refused; the message can be shown to the person as it is."""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _user(row: DeskUserRow) -> DeskUser:
    return DeskUser(
        id=row.id,
        email=row.email,
        role=row.role,
        school=row.school,
        enrolled=row.enrolled_at is not None,
        disabled=row.disabled_at is not None,
    )


def _session(settings: Settings) -> Session:
    return Session(get_engine(settings.database_url), future=True)


@lru_cache(maxsize=8)
def _schools_in(knowledge_dir: Path) -> frozenset[str]:
    from bot.knowledge import load_knowledge

    return frozenset(load_knowledge(knowledge_dir).schools)


def known_schools(settings: Settings) -> frozenset[str]:
    """The trust's school slugs: the schools of the clause base (``settings.knowledge_dir``)."""
    return _schools_in(Path(settings.knowledge_dir))


def _normalise_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ValueError(f"not an e-mail address: {email!r}")
    return email


def _audit(session: Session, actor: str, action: str, detail: dict, at: datetime) -> None:
    """An account event on the audit trail's hash chain (tied to no disclosure)."""
    add_audit_event(session, disclosure_id=None, actor=actor, action=action, detail=detail, at=at)


def add_user(
    settings: Settings, email: str, *, role: str, school: str | None, actor: str
) -> tuple[DeskUser, str]:
    """Add an account; returns it and the one-time enrolment token (valid 72 hours).

    A dsl or deputy needs a known school; a trust lead sees every school and an admin none, so their school
    is not kept. ValueError on a bad role, school or e-mail, or an address that already has an account.
    """
    email = _normalise_email(email)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role in SCHOOL_ROLES:
        school = (school or "").strip().lower()
        schools = known_schools(settings)
        if school not in schools:
            raise ValueError(
                f"a {role} needs one of the trust's schools ({', '.join(sorted(schools))}), got {school!r}"
            )
    else:
        school = None
    now = utcnow()
    token = secrets.token_urlsafe(32)
    with _session(settings) as session, session.begin():
        if session.execute(select(DeskUserRow.id).where(DeskUserRow.email == email)).first():
            raise ValueError(f"{email} already has a desk account")
        row = DeskUserRow(
            email=email,
            role=role,
            school=school,
            failed_attempts=0,
            lockouts=0,
            created_at=now,
            created_by=actor[:200],
        )
        session.add(row)
        session.flush()
        session.add(
            EnrolmentToken(
                user_id=row.id, token_hash=_digest(token), created_at=now, expires_at=now + ENROLMENT_VALID
            )
        )
        _audit(session, actor, "user_added", {"email": email, "role": role, "school": school}, now)
        user = _user(row)
    return user, token


def enrolment_link(settings: Settings, token: str) -> str:
    """The link that opens the enrolment page for ``token``."""
    return f"{settings.desk_url}/enrol/{token}"


def _valid_token(session: Session, token: str, now: datetime) -> tuple[EnrolmentToken, DeskUserRow] | None:
    found = session.execute(
        select(EnrolmentToken, DeskUserRow)
        .join(DeskUserRow, DeskUserRow.id == EnrolmentToken.user_id)
        .where(EnrolmentToken.token_hash == _digest(token or ""))
    ).first()
    if found is None:
        return None
    link, row = found
    if link.used_at is not None or link.expires_at <= now or row.disabled_at is not None:
        return None
    return link, row


def user_for_enrolment(settings: Settings, token: str) -> DeskUser | None:
    """The account an enrolment link is for, if the link is valid, unused and unexpired."""
    with _session(settings) as session:
        found = _valid_token(session, token, utcnow())
        return _user(found[1]) if found else None


def password_problem(password: str, email: str = "") -> str | None:
    """Why a password is refused (too short, too common), or None."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        return f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters."
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(lowered)) < 4:
        return "That password is too easy to guess. Choose another: a few unrelated words work well."
    if email and lowered == email.lower():
        return "Do not use your e-mail address as your password."
    return None


def _totp_step(secret: str, code: str, now: datetime, after_step: int | None) -> int | None:
    """The time step of ``code`` (this one or a neighbour), if it is later than ``after_step``."""
    code = (code or "").strip().replace(" ", "")
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // TOTP_STEP_SECONDS
    for step in (current - 1, current, current + 1):
        if after_step is not None and step <= after_step:
            continue
        if hmac.compare_digest(totp.at(step * TOTP_STEP_SECONDS), code):
            return step
    return None


def _recovery_code() -> str:
    raw = "".join(secrets.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def _normalise_recovery(code: str) -> str:
    return re.sub(r"[^a-z0-9]", "", (code or "").lower())


def complete_enrolment(
    settings: Settings, token: str, *, password: str, totp_secret: str, code: str
) -> list[str]:
    """Set the password and authenticator, burn the link; returns the 10 single-use recovery codes.

    ``code`` is the authenticator's current code, proving it was set up. EnrolmentError (a message for the
    person) on a weak password, a wrong code, or a used, expired or unknown link.
    """
    now = utcnow()
    with _session(settings) as session, session.begin():
        found = _valid_token(session, token, now)
        if found is None:
            raise EnrolmentError("This enrolment link has been used or has expired. Ask for a new one.")
        link, row = found
        problem = password_problem(password, row.email)
        if problem:
            raise EnrolmentError(problem)
        try:
            step = _totp_step(totp_secret, code, now, None)
        except (ValueError, TypeError) as exc:  # not base32
            raise EnrolmentError(
                "The authenticator secret is not valid. Reload the page and scan again."
            ) from exc
        if step is None:
            raise EnrolmentError(
                "That code does not match. Check the time on your phone and try the new code."
            )
        burnt = session.execute(
            update(EnrolmentToken)
            .where(EnrolmentToken.id == link.id, EnrolmentToken.used_at.is_(None))
            .values(used_at=now)
        ).rowcount
        if burnt != 1:
            raise EnrolmentError("This enrolment link has been used or has expired. Ask for a new one.")
        row.password_hash = _hasher.hash(password)
        row.totp_secret_encrypted = load_cipher(settings).encrypt(totp_secret)
        row.totp_last_step = step  # the code just typed cannot sign anyone in
        row.enrolled_at = now
        row.failed_attempts = 0
        row.lockouts = 0
        row.locked_until = None
        # A second enrolment (a new link after a lost phone) replaces the old codes.
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == row.id))
        codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
        for recovery in codes:
            session.add(RecoveryCode(user_id=row.id, code_hash=_digest(_normalise_recovery(recovery))))
        _audit(session, row.email, "user_enrolled", {"email": row.email}, now)
    return codes


def _locked_for(row: DeskUserRow, now: datetime) -> int:
    if row.locked_until is None or row.locked_until <= now:
        return 0
    return max(1, int((row.locked_until - now).total_seconds() + 0.999))


def _fail(session: Session, row: DeskUserRow, now: datetime, what: str) -> None:
    """Count a failed attempt; the fifth in a row locks the account (15 minutes, doubling each time)."""
    row.failed_attempts = (row.failed_attempts or 0) + 1
    _audit(
        session,
        row.email,
        "sign_in_failed",
        {"email": row.email, "factor": what, "failures": row.failed_attempts},
        now,
    )
    if row.failed_attempts >= MAX_FAILURES:
        row.lockouts = (row.lockouts or 0) + 1
        lock = min(FIRST_LOCK * 2 ** (row.lockouts - 1), MAX_LOCK)
        row.locked_until = now + lock
        row.failed_attempts = 0
        _audit(
            session,
            row.email,
            "locked_out",
            {"email": row.email, "minutes": int(lock.total_seconds() // 60)},
            now,
        )


def check_password(settings: Settings, email: str, password: str) -> DeskUser | None:
    """The account if ``password`` is right (first factor only); None otherwise.

    LockedOut after five failures in a row (either factor). An unknown address costs the same argon2
    verification as a known one.
    """
    now = utcnow()
    email = (email or "").strip().lower()
    user = None
    locked = 0
    with _session(settings) as session, session.begin():
        row = session.execute(select(DeskUserRow).where(DeskUserRow.email == email)).scalar_one_or_none()
        usable = row is not None and row.enrolled_at is not None and row.disabled_at is None
        if usable:
            retry_after = _locked_for(row, now)
            if retry_after:
                raise LockedOut(retry_after)
        try:
            ok = _hasher.verify(row.password_hash if usable else _dummy_hash(), password or "") and usable
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if usable and not ok:
            _fail(session, row, now, "password")
            locked = _locked_for(row, now)
        elif ok:
            if _hasher.check_needs_rehash(row.password_hash):
                row.password_hash = _hasher.hash(password)
            user = _user(row)
    if locked:  # raised after the commit, so the lock is kept
        raise LockedOut(locked)
    return user


def check_second_factor(settings: Settings, user_id: int, code: str) -> bool:
    """True for a TOTP code not used before (this 30-second step or a neighbour) or an unused recovery
    code (which is then burnt). Failures count toward the lockout; a locked account gets False."""
    now = utcnow()
    with _session(settings) as session, session.begin():
        row = session.get(DeskUserRow, user_id, with_for_update=True)
        if row is None or row.enrolled_at is None or row.disabled_at is not None or _locked_for(row, now):
            return False
        secret = load_cipher(settings).decrypt(row.totp_secret_encrypted, what="a desk authenticator secret")
        step = _totp_step(secret, code, now, row.totp_last_step)
        factor = None
        if step is not None:
            # Conditional: of two sign-ins racing with the same code, only one moves the step on.
            moved = session.execute(
                update(DeskUserRow)
                .where(
                    DeskUserRow.id == row.id,
                    (DeskUserRow.totp_last_step.is_(None)) | (DeskUserRow.totp_last_step < step),
                )
                .values(totp_last_step=step)
                .execution_options(synchronize_session="fetch")
            ).rowcount
            factor = "totp" if moved == 1 else None
        elif _normalise_recovery(code) and not re.fullmatch(r"\d{6}", (code or "").strip()):
            burnt = session.execute(
                update(RecoveryCode)
                .where(
                    RecoveryCode.user_id == row.id,
                    RecoveryCode.code_hash == _digest(_normalise_recovery(code)),
                    RecoveryCode.used_at.is_(None),
                )
                .values(used_at=now)
            ).rowcount
            factor = "recovery code" if burnt == 1 else None
        if factor is None:
            _fail(session, row, now, "second factor")
            return False
        row.failed_attempts = 0
        row.lockouts = 0
        row.locked_until = None
        if factor == "recovery code":
            left = session.execute(
                select(func.count(RecoveryCode.id)).where(
                    RecoveryCode.user_id == row.id, RecoveryCode.used_at.is_(None)
                )
            ).scalar_one()
            _audit(
                session,
                row.email,
                "recovery_code_used",
                {"email": row.email, "recovery_codes_left": left},
                now,
            )
        return True


def recovery_codes_left(settings: Settings, user_id: int) -> int:
    """How many unused recovery codes the account has."""
    with _session(settings) as session:
        return session.execute(
            select(func.count(RecoveryCode.id)).where(
                RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
            )
        ).scalar_one()


def start_session(settings: Settings, user_id: int) -> tuple[str, str]:
    """A new server-side session after both factors: (session id for the cookie, CSRF token)."""
    now = utcnow()
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with _session(settings) as session, session.begin():
        row = session.get(DeskUserRow, user_id)
        if row is None or row.disabled_at is not None or row.enrolled_at is None:
            raise ValueError("no such enabled, enrolled account")
        session.add(
            DeskSession(
                id_hash=_digest(session_id),
                user_id=user_id,
                csrf_token=csrf,
                created_at=now,
                last_seen_at=now,
            )
        )
        _audit(session, row.email, "signed_in", {"email": row.email}, now)
    return session_id, csrf


def session_user(settings: Settings, session_id: str) -> tuple[DeskUser, str] | None:
    """(user, CSRF token) for a live session, and marks it seen; None if unknown, ended, idle longer than
    ``settings.desk_idle_minutes``, older than 12 hours, or the account is disabled."""
    if not session_id:
        return None
    now = utcnow()
    with _session(settings) as session, session.begin():
        found = session.execute(
            select(DeskSession, DeskUserRow)
            .join(DeskUserRow, DeskUserRow.id == DeskSession.user_id)
            .where(DeskSession.id_hash == _digest(session_id))
        ).first()
        if found is None:
            return None
        live, row = found
        if live.ended_at is not None:
            return None
        idle = timedelta(minutes=settings.desk_idle_minutes)
        if (
            now - live.last_seen_at > idle
            or now - live.created_at > SESSION_MAX_AGE
            or row.disabled_at is not None
        ):
            live.ended_at = now
            return None
        live.last_seen_at = now
        return _user(row), live.csrf_token


def end_session(settings: Settings, session_id: str) -> None:
    """Sign out: the session cannot be used again."""
    if not session_id:
        return
    now = utcnow()
    with _session(settings) as session, session.begin():
        live = session.execute(
            select(DeskSession).where(
                DeskSession.id_hash == _digest(session_id), DeskSession.ended_at.is_(None)
            )
        ).scalar_one_or_none()
        if live is None:
            return
        live.ended_at = now
        email = session.execute(select(DeskUserRow.email).where(DeskUserRow.id == live.user_id)).scalar()
        _audit(session, email or "unknown", "signed_out", {"email": email}, now)


def list_users(settings: Settings) -> list[DeskUser]:
    """Every account, by e-mail address."""
    with _session(settings) as session:
        return [
            _user(row) for row in session.execute(select(DeskUserRow).order_by(DeskUserRow.email)).scalars()
        ]


def _row_by_email(session: Session, email: str) -> DeskUserRow:
    row = session.execute(
        select(DeskUserRow).where(DeskUserRow.email == (email or "").strip().lower())
    ).scalar_one_or_none()
    if row is None:
        raise ValueError(f"no desk account for {email!r}")
    return row


def disable_user(settings: Settings, email: str, *, actor: str) -> None:
    """Stop an account signing in, and end its sessions; the account and its history stay."""
    now = utcnow()
    with _session(settings) as session, session.begin():
        row = _row_by_email(session, email)
        if row.disabled_at is None:
            row.disabled_at = now
        session.execute(
            update(DeskSession)
            .where(DeskSession.user_id == row.id, DeskSession.ended_at.is_(None))
            .values(ended_at=now)
        )
        _audit(session, actor, "user_disabled", {"email": row.email}, now)


def remove_user(settings: Settings, email: str, *, actor: str) -> None:
    """Delete an account with its sessions, links and codes; the audit trail keeps its e-mail address."""
    now = utcnow()
    with _session(settings) as session, session.begin():
        row = _row_by_email(session, email)
        for table in (DeskSession, EnrolmentToken, RecoveryCode):
            session.execute(delete(table).where(table.user_id == row.id))
        session.delete(row)
        _audit(
            session, actor, "user_removed", {"email": row.email, "role": row.role, "school": row.school}, now
        )


def can_see_school(user: DeskUser, school: str) -> bool:
    """Whether ``user`` may read cases of ``school`` (an admin never may)."""
    if user.disabled or user.role not in CASE_ROLES:
        return False
    return user.role == "trust-lead" or user.school == school


def colleagues(settings: Settings, viewer: DeskUser) -> list[DeskUser]:
    """Enrolled, enabled case workers (dsl, deputy, trust lead) who can see the viewer's school(s)."""
    if viewer.role not in CASE_ROLES:
        return []
    with _session(settings) as session:
        rows = session.execute(
            select(DeskUserRow)
            .where(
                DeskUserRow.role.in_(CASE_ROLES),
                DeskUserRow.enrolled_at.is_not(None),
                DeskUserRow.disabled_at.is_(None),
            )
            .order_by(DeskUserRow.email)
        ).scalars()
        users = [_user(row) for row in rows]
    if viewer.role == "trust-lead":
        return users
    return [user for user in users if can_see_school(user, viewer.school or "")]
