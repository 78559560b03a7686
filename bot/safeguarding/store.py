"""Database models for disclosures, their audit trail and their alert outbox.

One declarative ``Base`` holds four tables:

* ``disclosures``     one row per disclosed user message; the child's words and the preceding conversation are
  encrypted (see ``crypto``). ``(sender_id, message_id)`` is unique so the same Rasa message is never recorded
  twice, however many times the action, the spool replay or the reconciler sees it.
* ``disclosure_notes`` what the person added after their disclosure (so far only ``kind="contact"``: the
  optional name and class of a pupil, or a parent's phone number or e-mail address), encrypted like the words.
  ``(disclosure_id, kind, sender_id, message_id)`` is unique, so a retried action adds a note once. Each note
  says where it came from: ``channel``, ``origin`` (``NOTE_ORIGINS``: what asked for it) and ``source``
  ("action", or "spool" when replayed). ``channel`` and ``origin`` came later: ``init_db`` adds them to an
  existing table (``_add_columns``; empty for older notes).
* ``audit_events``    append-only. The code has no update or delete path for it, the ORM refuses to flush
  a change to an existing row, and ``init_db`` installs database triggers (SQLite and PostgreSQL) that abort
  any UPDATE or DELETE. Triggers do not stop ``TRUNCATE`` or a superuser dropping them: in production run the
  application as a PostgreSQL role with only ``SELECT, INSERT`` on ``audit_events``
  (``REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM schoolguide``). Such a role needs ``SELECT, INSERT``
  on ``disclosure_notes`` too (notes are never changed either), and cannot create it on an existing
  database: see ``_create_notes_table``.
  Every row is also a link in a hash chain (``audit_chain``), so a change made around the triggers shows in
  ``schoolguide disclosures verify-audit``. The chain's newest link is the one row of ``audit_chain_head``
  (the application role needs ``SELECT, UPDATE`` on it); appends lock that row, so two writers can never fork
  the chain. Databases from before the chain are upgraded in place by ``init_db`` (``_upgrade_audit_chain``).
* ``outbox_messages`` one row per (disclosure, channel, recipient, kind); the unique key is what makes
  delivery exactly-once per channel (see ``outbox``). Contact details added to a disclosure get one row per
  note and channel: the note's id is part of the kind (``contact:<id>``), so no column had to be added.

Works on SQLite (WAL, foreign keys, busy timeout, ``synchronous=FULL``) and PostgreSQL.

The schema is made and changed by Alembic migrations (``bot/migrations``), run by ``init_db``. A database made
by the first release (tables, no ``alembic_version``) is brought to the shape of revision 0001 in place by the
upgrade helpers below (which kept such databases current before migrations existed), stamped 0001, then
upgraded. The desk's tables (accounts, sessions, action notes) are in ``bot.desk.models``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, declarative_base

from bot.safeguarding.audit_chain import GENESIS_HASH, normalise_detail, row_hash

logger = logging.getLogger(__name__)

Base = declarative_base()

STATUSES = ("new", "acknowledged", "in_progress", "closed")
SOURCES = ("action", "spool", "reconcile")
AUDIT_ACTIONS = (
    "created",
    "read",
    "status_changed",
    "alert_sent",
    "alert_failed",
    "escalated",
    "exported",
    "contact_added",
    "alert_queued",
    # Contact details aimed at this disclosure from another conversation or session: not stored.
    "contact_refused",
    # The DSL's desk (bot.desk): casework on a disclosure ...
    "assigned",
    "action_note_added",
    "closed",
    # ... and desk accounts (disclosure_id NULL): added, enrolled, signed in, locked, disabled, removed.
    "user_added",
    "user_enrolled",
    "signed_in",
    "recovery_code_used",
    "sign_in_failed",
    "locked_out",
    "signed_out",
    "user_disabled",
    "user_removed",
)
NOTE_KINDS = ("contact",)
# What asked for a note: the contact form's answer, or the message right after it (contact_more_form).
NOTE_ORIGINS = ("contact_form", "contact_more")
# "sending" is the short-lived claim a worker holds while talking to SMTP or the webhook; "cancelled" is an
# escalation that became moot because the disclosure was acknowledged before it went out; "routed" is a
# placeholder (channel "unrouted", see outbox) replaced by real rows once an alert channel was configured.
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed", "cancelled", "routed")

# No 0/O, 1/I/L: references are read aloud and copied by hand.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Treat naive datetimes as UTC and convert aware ones to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def new_reference() -> str:
    """A random human-readable reference such as ``SG-7K3P-QX9M`` (about 2^39 possibilities)."""
    chars = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))
    return f"SG-{chars[:4]}-{chars[4:]}"


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC on every backend, returned as aware UTC, so comparisons behave the same."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class Disclosure(Base):
    """A safeguarding disclosure handed to the DSL; the words themselves are only stored encrypted."""

    __tablename__ = "disclosures"
    __table_args__ = (UniqueConstraint("sender_id", "message_id", name="uq_disclosures_message"),)

    id = Column(Integer, primary_key=True, autoincrement=True)
    reference = Column(String(20), nullable=False, unique=True)
    school = Column(String(100), nullable=False)
    audience = Column(String(20), nullable=False)
    channel = Column(String(64), nullable=False)
    sender_id = Column(String(255), nullable=False)
    message_id = Column(String(255), nullable=False)
    text_encrypted = Column(Text, nullable=False)
    context_encrypted = Column(Text, nullable=False)
    categories = Column(JSON, nullable=False)
    risk = Column(String(20), nullable=False)
    status = Column(String(20), nullable=False, default="new", index=True)
    created_at = Column(UTCDateTime, nullable=False, index=True)
    updated_at = Column(UTCDateTime, nullable=False)
    acknowledged_at = Column(UTCDateTime)
    acknowledged_by = Column(String(200))
    source = Column(String(20), nullable=False)


class DisclosureNote(Base):
    """Something the person added after their disclosure (their contact details); only stored encrypted."""

    __tablename__ = "disclosure_notes"
    __table_args__ = (
        UniqueConstraint(
            "disclosure_id", "kind", "sender_id", "message_id", name="uq_disclosure_notes_message"
        ),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    disclosure_id = Column(Integer, ForeignKey("disclosures.id"), nullable=False, index=True)
    kind = Column(String(20), nullable=False)  # one of NOTE_KINDS
    # The user message the note came from (not the disclosure's own message).
    sender_id = Column(String(255), nullable=False)
    message_id = Column(String(255), nullable=False)
    text_encrypted = Column(Text, nullable=False)
    created_at = Column(UTCDateTime, nullable=False)
    source = Column(String(20), nullable=False)  # "action", or "spool" when replayed
    # Added after the first release (init_db adds them in place): None for notes stored before.
    channel = Column(String(64))  # the Rasa input channel of the message
    origin = Column(String(30))  # one of NOTE_ORIGINS


class AuditEvent(Base):
    """One thing that happened to a disclosure. Append-only: see the module docstring."""

    __tablename__ = "audit_events"

    id = Column(Integer, primary_key=True, autoincrement=True)
    # Nullable only for events about no single disclosure (e.g. an export that matched nothing).
    disclosure_id = Column(Integer, ForeignKey("disclosures.id"), index=True)
    at = Column(UTCDateTime, nullable=False)
    actor = Column(String(200), nullable=False)
    action = Column(String(30), nullable=False)
    detail = Column(JSON, nullable=False)
    # The hash chain (see audit_chain). Nullable only so that older databases can add the columns in place.
    seq = Column(Integer, index=True, unique=True)
    prev_hash = Column(String(64))
    row_hash = Column(String(64))


class AuditChainHead(Base):
    """The newest link of the audit chain (one row, id 1): locked by every append, checked by verify."""

    __tablename__ = "audit_chain_head"

    id = Column(Integer, primary_key=True, autoincrement=False)
    seq = Column(Integer, nullable=False)
    last_hash = Column(String(64), nullable=False)


class OutboxMessage(Base):
    """An alert or escalation waiting to go (or gone) to one recipient on one channel."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        UniqueConstraint("disclosure_id", "channel", "recipient", "kind", name="uq_outbox_delivery"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    disclosure_id = Column(Integer, ForeignKey("disclosures.id"), nullable=False, index=True)
    channel = Column(String(20), nullable=False)  # "email" | "webhook"
    # An e-mail address, or "alert_webhook": the webhook URL is a secret, so it stays in settings.
    recipient = Column(String(320), nullable=False)
    # "alert" | "escalation" | "contact:<disclosure_notes.id>" (contact details added; see outbox)
    kind = Column(String(20), nullable=False)
    status = Column(String(20), nullable=False, default="pending")
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(UTCDateTime, nullable=False)
    last_error = Column(Text)
    created_at = Column(UTCDateTime, nullable=False)
    claimed_at = Column(UTCDateTime)
    claim_token = Column(String(64))
    sent_at = Column(UTCDateTime)


def add_audit_event(
    session: Session,
    *,
    disclosure_id: int | None,
    actor: str,
    action: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """The only way the code writes to the audit trail: it adds a link to the chain, never changes one.

    Holds the chain head's row lock until the caller's transaction ends, so appends are serialised.
    """
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    at = at or utcnow()
    actor = (actor or "unknown")[:200]
    detail = normalise_detail(detail)
    head = AuditChainHead.__table__
    # The UPDATE comes first: it takes the row lock on PostgreSQL and the write lock on SQLite before the
    # head is read, so a concurrent writer cannot read the same head and fork the chain.
    locked = session.execute(update(head).where(head.c.id == 1).values(seq=head.c.seq + 1)).rowcount
    if locked != 1:
        raise RuntimeError(
            "the audit chain head is missing: run any `schoolguide disclosures` command as owner"
        )
    seq, prev_hash = session.execute(select(head.c.seq, head.c.last_hash).where(head.c.id == 1)).one()
    audit = AuditEvent(
        disclosure_id=disclosure_id,
        at=at,
        actor=actor,
        action=action,
        detail=detail,
        seq=seq,
        prev_hash=prev_hash,
        row_hash=row_hash(
            prev_hash, seq=seq, disclosure_id=disclosure_id, at=at, actor=actor, action=action, detail=detail
        ),
    )
    session.add(audit)
    session.execute(update(head).where(head.c.id == 1).values(last_hash=audit.row_hash))
    return audit


class AuditTrailIsAppendOnly(RuntimeError):
    """Raised when code tries to change or delete an audit event."""


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, flush_context: Any, instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEvent):
            raise AuditTrailIsAppendOnly("audit events are append-only; add a new event instead")


_SQLITE_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
)

_POSTGRES_TRIGGERS = (
    """CREATE OR REPLACE FUNCTION schoolguide_audit_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit_events is append-only'; END; $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events",
    """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
       FOR EACH ROW EXECUTE FUNCTION schoolguide_audit_append_only()""",
)


def create_engine_for(url: str) -> Engine:
    """An engine for ``url``; for SQLite, creates the parent directory and tunes connections for safety."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            from bot.safeguarding.file_modes import private_sqlite_database  # owner-only (D1)

            private_sqlite_database(Path(database))
        engine = create_engine(url, future=True, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            # FULL: a committed disclosure survives power loss, not just a process crash.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg2", ""):
        # Fail fast when the server is unreachable: the person is waiting for a reply, the spool is ready.
        connect_args["connect_timeout"] = 5
    return create_engine(url, future=True, pool_pre_ping=True, connect_args=connect_args)


def _postgres_trigger_exists(connection: Any) -> bool:
    return (
        connection.execute(
            text(
                "SELECT 1 FROM pg_trigger WHERE tgname = 'audit_events_append_only' "
                "AND tgrelid = to_regclass('audit_events')"
            )
        ).first()
        is not None
    )


_RELEASE_TABLES = ("disclosures", "disclosure_notes", "audit_events", "audit_chain_head", "outbox_messages")
# pg_advisory_lock key for schema changes: any fixed number, the same in every process ("SG" + 0x1601).
_MIGRATION_LOCK_KEY = 0x5347_1601


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest migration; safe when several processes start at once.

    A fresh database is created by the migrations. One made by the first release (no ``alembic_version``) is
    brought to revision 0001's shape in place, stamped, then upgraded. A least-privilege role that cannot
    read or change the schema is logged and goes on with the schema it has (see the module docstring).
    """
    with _migration_lock(engine):
        existing = inspect(engine).has_table("disclosures")
        if existing:
            # Idempotent and cheap when nothing is missing: they log, never raise, when the role cannot.
            _upgrade_in_place(engine)
        try:
            current = current_revision(engine)
        except (OperationalError, ProgrammingError) as exc:
            logger.warning(
                "Cannot read the schema version (%s): assuming the database owner keeps it current with "
                "`schoolguide db upgrade` (grant SELECT ON alembic_version to this role to silence this)",
                getattr(exc, "orig", exc),
            )
            return
        if existing and current is None:
            missing = _release_shape_missing(engine)
            if missing:
                logger.error(
                    "The database is not yet in the first release's shape (%s), so it cannot be migrated; "
                    "run `schoolguide db upgrade` as the database owner",
                    missing,
                )
                return
            _alembic(engine, "stamp", _baseline_revision())
        elif current == _head_revision():
            return
        try:
            _alembic(engine, "upgrade", "head")
        except (OperationalError, ProgrammingError) as exc:
            if not existing:
                raise
            logger.error(
                "Cannot upgrade the schema (%s): disclosures are still stored; run `schoolguide db upgrade` "
                "as the database owner",
                getattr(exc, "orig", exc),
            )


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None: not under migrations yet, e.g. made by the first release)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _baseline_revision() -> str:
    from bot.migrations import BASELINE

    return BASELINE


def _head_revision() -> str:
    from bot.migrations import head_revision

    return head_revision()


def _alembic(engine: Engine, command_name: str, revision: str) -> None:
    from alembic import command

    from bot.migrations import alembic_config

    with engine.connect() as connection:
        getattr(command, command_name)(alembic_config(connection), revision)
        connection.commit()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One migrating process at a time: a PostgreSQL advisory lock, or a lock file beside a SQLite file."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    import fcntl

    fd = os.open(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _release_shape_missing(engine: Engine) -> str | None:
    """What the database lacks of revision 0001's shape, or None when it has it all."""
    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    absent = [name for name in _RELEASE_TABLES if name not in tables]
    if absent:
        return f"missing table(s) {', '.join(absent)}"
    for table, columns in (("disclosure_notes", _NOTE_COLUMNS), ("audit_events", _CHAIN_COLUMNS)):
        present = {column["name"] for column in inspector.get_columns(table)}
        lacking = [name for name in columns if name not in present]
        if lacking:
            return f"{table} lacks {', '.join(lacking)}"
    head = AuditChainHead.__table__
    with engine.connect() as connection:
        if connection.execute(select(head.c.id).where(head.c.id == 1)).first() is None:
            return "the audit chain head is missing"
        if connection.execute(select(AuditEvent.id).where(AuditEvent.seq.is_(None)).limit(1)).first():
            return "audit rows outside the hash chain"
    return None


def _upgrade_in_place(engine: Engine) -> None:
    """The first release's own upgrade path (before migrations): missing tables, columns, the hash chain and
    the append-only triggers. Brings its databases to revision 0001's shape; a no-op on one that has it."""
    core = [
        table
        for table in Base.metadata.sorted_tables
        if table.name in _RELEASE_TABLES and table is not DisclosureNote.__table__
    ]
    try:
        Base.metadata.create_all(engine, tables=core)
    except (IntegrityError, ProgrammingError, OperationalError) as exc:
        logger.error("Cannot create the missing tables (%s)", getattr(exc, "orig", exc))
    _create_notes_table(engine)
    _upgrade_notes(engine)
    _upgrade_audit_chain(engine)
    if engine.dialect.name == "sqlite":
        with engine.begin() as connection:
            for statement in _SQLITE_TRIGGERS:
                connection.execute(text(statement))
    elif engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            if _postgres_trigger_exists(connection):
                return  # checked first: a least-privilege application role may not create triggers
        try:
            with engine.begin() as connection:
                for statement in _POSTGRES_TRIGGERS:
                    connection.execute(text(statement))
        except ProgrammingError as exc:
            # The ORM guard still applies; the trigger is defence in depth, not worth refusing disclosures.
            logger.warning(
                "Could not install the append-only trigger on audit_events (%s); ask the database owner to "
                "run `schoolguide db upgrade` once, or REVOKE UPDATE, DELETE on audit_events",
                exc.orig,
            )


def _create_notes_table(engine: Engine) -> None:
    """disclosure_notes came after the first release: an existing database run by a least-privilege role
    cannot create it. That must not stop disclosures being stored, so it is reported, not raised; contact
    details wait in the spool until the owner creates it (any ``schoolguide disclosures`` command run as the
    owner) and grants ``SELECT, INSERT ON disclosure_notes`` and its id sequence to the application role."""
    for attempt in range(2):
        try:
            Base.metadata.create_all(engine, tables=[DisclosureNote.__table__])
            return
        except (IntegrityError, ProgrammingError) as exc:
            if attempt:
                logger.error(
                    "Cannot create the disclosure_notes table (%s): contact details given after a disclosure "
                    "are spooled until the database owner creates it (run any `schoolguide disclosures` "
                    "command as the owner) and grants SELECT, INSERT on it to this role",
                    exc.orig,
                )


_CHAIN_COLUMNS = {"seq": "INTEGER", "prev_hash": "VARCHAR(64)", "row_hash": "VARCHAR(64)"}
_NOTE_COLUMNS = {"channel": "VARCHAR(64)", "origin": "VARCHAR(30)"}


def _add_columns(engine: Engine, table: str, columns: dict[str, str]) -> set[str]:
    """``ALTER TABLE table ADD COLUMN`` for each of ``columns`` (name: SQL type, nullable) it lacks;
    idempotent, and safe against another process doing the same. Returns the columns it had before."""
    present = {column["name"] for column in inspect(engine).get_columns(table)}
    for name, sql_type in columns.items():
        if name not in present:
            try:
                with engine.begin() as connection:
                    connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))
            except (OperationalError, ProgrammingError):
                # Another process added it first; anything else shows when the column is used.
                if name not in {c["name"] for c in inspect(engine).get_columns(table)}:
                    raise
    return present


def _upgrade_notes(engine: Engine) -> None:
    """Add ``channel`` and ``origin`` to a ``disclosure_notes`` table from before them. A least-privilege role
    cannot: that is logged, and contact details wait in the spool until the owner runs any ``schoolguide
    disclosures`` command (disclosures themselves are not affected)."""
    try:
        if inspect(engine).has_table(DisclosureNote.__tablename__):
            _add_columns(engine, DisclosureNote.__tablename__, _NOTE_COLUMNS)
    except (OperationalError, ProgrammingError) as exc:
        logger.error(
            "Cannot add the channel and origin columns to disclosure_notes (%s): contact details are spooled "
            "until the database owner runs any `schoolguide disclosures` command",
            getattr(exc, "orig", exc),
        )


def _upgrade_audit_chain(engine: Engine) -> None:
    """Bring a database from before the hash chain up to date: add the columns, start the chain head and
    hash the existing rows in id order. A least-privilege role cannot: that is logged, and until the owner
    runs any ``schoolguide disclosures`` command, disclosures wait in the spool (nothing is lost)."""
    try:
        columns = _add_columns(engine, "audit_events", _CHAIN_COLUMNS)
        if "seq" not in columns:
            with engine.begin() as connection:
                connection.execute(
                    text("CREATE UNIQUE INDEX IF NOT EXISTS ix_audit_events_seq ON audit_events (seq)")
                )
        head = AuditChainHead.__table__
        with engine.connect() as connection:
            has_head = connection.execute(select(head.c.id).where(head.c.id == 1)).first() is not None
        if not has_head:
            try:
                with engine.begin() as connection:
                    connection.execute(head.insert().values(id=1, seq=0, last_hash=GENESIS_HASH))
            except IntegrityError:
                pass  # another process created it just now
        with engine.begin() as connection:
            if connection.execute(select(AuditEvent.id).where(AuditEvent.seq.is_(None)).limit(1)).first():
                _hash_unchained_rows(connection)
    except (OperationalError, ProgrammingError) as exc:
        logger.error(
            "Cannot upgrade the audit trail to a hash chain (%s): disclosures are spooled until the database "
            "owner runs any `schoolguide disclosures` command and grants SELECT, UPDATE on audit_chain_head",
            getattr(exc, "orig", exc),
        )


def _hash_unchained_rows(connection: Connection) -> None:
    """Hash the rows written before the chain existed, oldest first, inside the caller's transaction.

    The append-only triggers are lifted for this one transaction (DDL is transactional on both databases), so
    a failure leaves them in place.
    """
    head, audit = AuditChainHead.__table__, AuditEvent.__table__
    connection.execute(update(head).where(head.c.id == 1).values(seq=head.c.seq))  # lock: one upgrader
    seq, prev_hash = connection.execute(select(head.c.seq, head.c.last_hash).where(head.c.id == 1)).one()
    rows = connection.execute(select(audit).where(audit.c.seq.is_(None)).order_by(audit.c.id)).all()
    if not rows:
        return
    if connection.dialect.name == "sqlite":
        for name in ("audit_events_no_update", "audit_events_no_delete"):
            connection.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
    elif connection.dialect.name == "postgresql" and _postgres_trigger_exists(connection):
        connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
    for row in rows:
        seq += 1
        digest = row_hash(
            prev_hash,
            seq=seq,
            disclosure_id=row.disclosure_id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            detail=row.detail,
        )
        connection.execute(
            update(audit).where(audit.c.id == row.id).values(seq=seq, prev_hash=prev_hash, row_hash=digest)
        )
        prev_hash = digest
    connection.execute(update(head).where(head.c.id == 1).values(seq=seq, last_hash=prev_hash))
    if connection.dialect.name == "sqlite":
        for statement in _SQLITE_TRIGGERS:
            connection.execute(text(statement))
    elif connection.dialect.name == "postgresql" and _postgres_trigger_exists(connection):
        connection.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only"))
    logger.warning("Audit trail upgraded: %d existing row(s) hashed into the chain", len(rows))


_engines: dict[str, Engine] = {}
_initialised: set[str] = set()
_engines_lock = threading.Lock()


def get_engine(url: str) -> Engine:
    """A process-wide engine for ``url`` with the schema created; retried on the next call if that fails."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_engine_for(url)
            _engines[url] = engine
        if url not in _initialised:
            init_db(engine)
            _initialised.add(url)
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, and worker shutdown)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _initialised.clear()
