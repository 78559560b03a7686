"""The desk's tables: accounts, their enrolment links, recovery codes and sessions, and the casework that is
not in the disclosure row itself (action notes and outcomes, assignments).

Created by migration 0002 (``bot/migrations``), on a ``MetaData`` of their own so that nothing that creates
the first release's tables (``store.Base``) creates these by accident. Secrets are never stored as given:
enrolment tokens, session ids and recovery codes as sha256 digests, passwords as argon2id hashes, the TOTP
secret and every casework text encrypted with the disclosure cipher (``bot.safeguarding.crypto``).

``desk_case_entries`` and ``desk_assignments`` are append-only like the audit trail: the ORM refuses to flush
a change to an existing row, and migration 0002 installs triggers that abort UPDATE and DELETE.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Integer, String, Text, event
from sqlalchemy.orm import Session, declarative_base

from bot.safeguarding.store import UTCDateTime

DeskBase = declarative_base()

# What a case entry is: a follow-up note, or the outcome the case was closed with.
ENTRY_KINDS = ("action_note", "outcome")


class DeskUserRow(DeskBase):
    """A person who signs in to the desk."""

    __tablename__ = "desk_users"

    id = Column(Integer, primary_key=True, autoincrement=True)
    email = Column(String(320), nullable=False, unique=True)  # lower case
    role = Column(String(20), nullable=False)  # one of accounts.ROLES
    school = Column(String(100))  # the school of a dsl or deputy; None for a trust lead or admin
    password_hash = Column(Text)  # argon2id; None until enrolled
    totp_secret_encrypted = Column(Text)
    # The newest TOTP time step accepted: a code from it or an earlier step is refused (no replay).
    totp_last_step = Column(Integer)
    enrolled_at = Column(UTCDateTime)
    disabled_at = Column(UTCDateTime)
    failed_attempts = Column(Integer, nullable=False, default=0)  # consecutive, reset by a full sign-in
    lockouts = Column(Integer, nullable=False, default=0)  # doubles the next lock; reset by a full sign-in
    locked_until = Column(UTCDateTime)
    created_at = Column(UTCDateTime, nullable=False)
    created_by = Column(String(200), nullable=False)


class EnrolmentToken(DeskBase):
    """A one-time enrolment link (only its sha256 is kept)."""

    __tablename__ = "desk_enrolment_tokens"

    id = Column(Integer, primary_key=True, autoincrement=True)
    user_id = Column(Integer, nullable=False, index=True)
    token_hash = Column(String(64), nullable=False, unique=True)
    created_at = Column(UTCDateTime, nullable=False)
    expires_at = Column(UTCDateTime, nullable=False)
    used_at = Column(UTCDateTime)


class RecoveryCode(DeskBase):
    """One single-use recovery code (only its sha256 is kept)."""

    __tablename__ = "desk_recovery_codes"

    id = Column(Integer, primary_key=True, autoincrement=True)
    user_id = Column(Integer, nullable=False, index=True)
    code_hash = Column(String(64), nullable=False)
    used_at = Column(UTCDateTime)


class DeskSession(DeskBase):
    """A signed-in browser; the cookie holds the id, the table only its sha256."""

    __tablename__ = "desk_sessions"

    id = Column(Integer, primary_key=True, autoincrement=True)
    id_hash = Column(String(64), nullable=False, unique=True)
    user_id = Column(Integer, nullable=False, index=True)
    csrf_token = Column(String(64), nullable=False)
    created_at = Column(UTCDateTime, nullable=False)
    last_seen_at = Column(UTCDateTime, nullable=False)
    ended_at = Column(UTCDateTime)


class CaseEntry(DeskBase):
    """An action note or a closing outcome on a disclosure, encrypted; never changed, never deleted."""

    __tablename__ = "desk_case_entries"

    id = Column(Integer, primary_key=True, autoincrement=True)
    disclosure_id = Column(Integer, nullable=False, index=True)
    kind = Column(String(20), nullable=False)  # one of ENTRY_KINDS
    text_encrypted = Column(Text, nullable=False)
    author = Column(String(320), nullable=False)
    created_at = Column(UTCDateTime, nullable=False)


class Assignment(DeskBase):
    """Who a disclosure was handed to; the newest row is the current assignee."""

    __tablename__ = "desk_assignments"

    id = Column(Integer, primary_key=True, autoincrement=True)
    disclosure_id = Column(Integer, nullable=False, index=True)
    assignee = Column(String(320), nullable=False)
    assigned_by = Column(String(320), nullable=False)
    created_at = Column(UTCDateTime, nullable=False)


class CaseworkIsAppendOnly(RuntimeError):
    """Raised when code tries to change or delete an action note, outcome or assignment."""


@event.listens_for(Session, "before_flush")
def _refuse_casework_changes(session: Session, flush_context: Any, instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, (CaseEntry, Assignment)):
            raise CaseworkIsAppendOnly("action notes and assignments are append-only; add a new one instead")
