"""What a DSL does with a disclosure: list, read, acknowledge, move on, export. Every reading is audited.

Used by ``schoolguide disclosures`` and usable by any case view behind ``settings.case_link_base``.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot.safeguarding.crypto import DecryptionError, DisclosureCipher, EncryptionKeyError, load_cipher
from bot.safeguarding.store import (
    STATUSES,
    AuditEvent,
    Disclosure,
    DisclosureNote,
    OutboxMessage,
    add_audit_event,
    get_engine,
    utcnow,
)
from bot.settings import Settings

logger = logging.getLogger(__name__)

EXPORT_COLUMNS = (
    "reference",
    "created_at",
    "school",
    "audience",
    "channel",
    "sender_id",
    "categories",
    "risk",
    "status",
    "acknowledged_at",
    "acknowledged_by",
    "source",
    "text",
    "contact",
)


class CaseNotFound(LookupError):
    """No disclosure has that reference."""


class InvalidStatusChange(ValueError):
    """The requested status change is not allowed (e.g. back to "new")."""


@dataclass(frozen=True)
class CaseView:
    """A disclosure as a DSL sees it; ``text``, ``context`` and ``contact`` are None unless it was read (and
    audited). ``contact``: the contact details the person added afterwards, oldest first, each
    ``{"text", "added_at", "channel", "origin", "source"}`` (``text`` None and ``error`` set if it cannot be
    decrypted; ``channel`` and ``origin`` None for notes stored before they were kept)."""

    reference: str
    sender_id: str
    school: str
    audience: str
    channel: str
    categories: tuple[str, ...]
    risk: str
    status: str
    created_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    source: str
    text: str | None = None
    context: tuple[dict[str, Any], ...] | None = None
    text_error: str | None = None
    contact: tuple[dict[str, Any], ...] | None = None
    audit: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    alerts: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "sender_id": self.sender_id,
            "school": self.school,
            "audience": self.audience,
            "channel": self.channel,
            "categories": list(self.categories),
            "risk": self.risk,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "acknowledged_at": self.acknowledged_at.isoformat() if self.acknowledged_at else None,
            "acknowledged_by": self.acknowledged_by,
            "source": self.source,
            "text": self.text,
            "context": list(self.context) if self.context is not None else None,
            "text_error": self.text_error,
            "contact": (
                [
                    {
                        **item,
                        "added_at": item["added_at"].isoformat() if item.get("added_at") else None,
                    }
                    for item in self.contact
                ]
                if self.contact is not None
                else None
            ),
        }


def _decrypt(cipher: DisclosureCipher | None, row: Disclosure) -> tuple[str | None, tuple | None, str | None]:
    if cipher is None:
        return None, None, "no encryption key available"
    try:
        text = cipher.decrypt(row.text_encrypted, what=f"disclosure {row.reference}")
        context = json.loads(cipher.decrypt(row.context_encrypted, what=f"context of {row.reference}"))
        return text, tuple(context), None
    except DecryptionError as exc:
        return None, None, str(exc)


def _decrypt_notes(
    cipher: DisclosureCipher | None, reference: str, notes: list[DisclosureNote]
) -> tuple[dict[str, Any], ...]:
    decrypted = []
    for note in notes:
        item: dict[str, Any] = {
            "text": None,
            "added_at": note.created_at,
            "channel": note.channel,
            "origin": note.origin,
            "source": note.source,
        }
        if cipher is None:
            item["error"] = "no encryption key available"
        else:
            try:
                item["text"] = cipher.decrypt(note.text_encrypted, what=f"contact details of {reference}")
            except DecryptionError as exc:
                item["error"] = str(exc)
        decrypted.append(item)
    return tuple(decrypted)


class _Notes:
    """Contact notes per disclosure id, oldest first, or why they could not be read."""

    def __init__(self, engine: Engine, disclosure_ids: list[int]) -> None:
        self.by_disclosure: dict[int, list[DisclosureNote]] = {}
        self.error: str | None = None
        # Its own session: a missing table or grant (an upgraded least-privilege PostgreSQL role: store.py)
        # must not abort the transaction that reads, and audits, the disclosure itself.
        try:
            with Session(engine, future=True) as session:
                for start in range(0, len(disclosure_ids), 500):
                    chunk = disclosure_ids[start : start + 500]
                    rows = session.execute(
                        select(DisclosureNote)
                        .where(DisclosureNote.disclosure_id.in_(chunk), DisclosureNote.kind == "contact")
                        .order_by(DisclosureNote.created_at, DisclosureNote.id)
                    ).scalars()
                    for note in rows:
                        self.by_disclosure.setdefault(note.disclosure_id, []).append(note)
        except DBAPIError as exc:
            logger.error("Cannot read contact details (disclosure_notes): %s", exc.orig)
            self.error = f"contact details could not be read: {exc.orig}"

    def view(self, row: Disclosure, cipher: DisclosureCipher | None) -> tuple[dict[str, Any], ...]:
        if self.error:
            return ({"text": None, "added_at": None, "error": self.error},)
        return _decrypt_notes(cipher, row.reference, self.by_disclosure.get(row.id, []))


def _view(
    row: Disclosure,
    cipher: DisclosureCipher | None = None,
    *,
    read: bool = False,
    notes: _Notes | None = None,
) -> CaseView:
    text = context = error = contact = None
    if read:
        text, context, error = _decrypt(cipher, row)
        contact = notes.view(row, cipher) if notes is not None else ()
    return CaseView(
        reference=row.reference,
        sender_id=row.sender_id,
        school=row.school,
        audience=row.audience,
        channel=row.channel,
        categories=tuple(row.categories or ()),
        risk=row.risk,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        source=row.source,
        text=text,
        context=context,
        text_error=error,
        contact=contact,
    )


def _cipher_or_error(settings: Settings) -> tuple[DisclosureCipher | None, str | None]:
    try:
        return load_cipher(settings), None
    except EncryptionKeyError as exc:
        return None, str(exc)


def _query(status: str | None, school: str | None) -> Any:
    query = select(Disclosure).order_by(Disclosure.created_at, Disclosure.id)
    if status:
        query = query.where(Disclosure.status == status)
    if school:
        query = query.where(Disclosure.school == school)
    return query


def list_cases(
    settings: Settings,
    *,
    actor: str,
    status: str | None = None,
    school: str | None = None,
    with_text: bool = False,
    via: str = "list",
) -> list[CaseView]:
    """Disclosures, oldest first; ``with_text`` decrypts each one's words and audits a "read"."""
    engine = get_engine(settings.database_url)
    cipher, key_error = _cipher_or_error(settings) if with_text else (None, None)
    with Session(engine, future=True) as session, session.begin():
        rows = session.execute(_query(status, school)).scalars().all()
        notes = _Notes(engine, [row.id for row in rows]) if with_text else None
        views = [_view(row, cipher, read=with_text, notes=notes) for row in rows]
        if with_text:
            for row, view in zip(rows, views, strict=True):
                add_audit_event(
                    session,
                    disclosure_id=row.id,
                    actor=actor,
                    action="read",
                    detail={"via": via, "decrypted": view.text is not None},
                )
    if key_error:
        views = [_replace_error(view, key_error) for view in views]
    return views


def _replace_error(view: CaseView, error: str) -> CaseView:
    return replace(view, text_error=error)


def _find(session: Session, reference: str) -> Disclosure:
    row = session.execute(
        select(Disclosure).where(Disclosure.reference == reference.strip().upper())
    ).scalar_one_or_none()
    if row is None:
        raise CaseNotFound(f"no disclosure with reference {reference!r}")
    return row


def read_case(settings: Settings, reference: str, *, actor: str, via: str = "show") -> CaseView:
    """One disclosure with its words, context, alerts and audit trail; the reading itself is audited first."""
    engine = get_engine(settings.database_url)
    cipher, key_error = _cipher_or_error(settings)
    with Session(engine, future=True) as session, session.begin():
        row = _find(session, reference)
        view = _view(row, cipher, read=True, notes=_Notes(engine, [row.id]))
        add_audit_event(
            session,
            disclosure_id=row.id,
            actor=actor,
            action="read",
            detail={"via": via, "decrypted": view.text is not None},
        )
        session.flush()
        audit = session.execute(
            select(AuditEvent).where(AuditEvent.disclosure_id == row.id).order_by(AuditEvent.id)
        ).scalars()
        audit_rows = tuple(
            {"at": event.at, "actor": event.actor, "action": event.action, "detail": event.detail}
            for event in audit
        )
        outbox = session.execute(
            select(OutboxMessage).where(OutboxMessage.disclosure_id == row.id).order_by(OutboxMessage.id)
        ).scalars()
        alerts = tuple(
            {
                "channel": message.channel,
                "recipient": message.recipient,
                "kind": message.kind,
                "status": message.status,
                "attempts": message.attempts,
                "sent_at": message.sent_at,
                "next_attempt_at": message.next_attempt_at,
                "last_error": message.last_error,
            }
            for message in outbox
        )
    view = replace(view, audit=audit_rows, alerts=alerts)
    return _replace_error(view, key_error) if key_error else view


def change_status(settings: Settings, reference: str, new_status: str, *, actor: str) -> tuple[str, str]:
    """Move a disclosure on (never back to "new"); returns (old, new). Audited as "status_changed"."""
    if new_status not in STATUSES or new_status == "new":
        raise InvalidStatusChange(f"status must be one of {STATUSES[1:]}, got {new_status!r}")
    actor = (actor or "").strip()
    if not actor:
        raise InvalidStatusChange("say who is making the change (--by NAME)")
    engine = get_engine(settings.database_url)
    now = utcnow()
    with Session(engine, future=True) as session, session.begin():
        row = _find(session, reference)
        old = row.status
        if old == new_status:
            return old, new_status
        if old == "new":
            row.acknowledged_at = now
            row.acknowledged_by = actor[:200]
        row.status = new_status
        row.updated_at = now
        add_audit_event(
            session,
            disclosure_id=row.id,
            actor=actor,
            action="status_changed",
            detail={"from": old, "to": new_status},
            at=now,
        )
    return old, new_status


def acknowledge(settings: Settings, reference: str, *, actor: str) -> tuple[str, str]:
    """The DSL has seen it: "new" -> "acknowledged" (stops escalation). Later statuses are left alone."""
    engine = get_engine(settings.database_url)
    with Session(engine, future=True) as session:
        status = _find(session, reference).status
    if status != "new":
        return status, status
    return change_status(settings, reference, "acknowledged", actor=actor)


def export_csv(
    settings: Settings,
    stream: TextIO,
    *,
    actor: str,
    destination: str,
    status: str | None = None,
    school: str | None = None,
) -> int:
    """Write disclosures (with their words) as CSV; each one exported gets an "exported" audit event."""
    engine = get_engine(settings.database_url)
    cipher, key_error = _cipher_or_error(settings)
    writer = csv.DictWriter(stream, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    with Session(engine, future=True) as session, session.begin():
        rows = session.execute(_query(status, school)).scalars().all()
        notes = _Notes(engine, [row.id for row in rows])
        for row in rows:
            view = _view(row, cipher, read=True, notes=notes)
            writer.writerow(
                {
                    "reference": view.reference,
                    "created_at": view.created_at.isoformat(),
                    "school": view.school,
                    "audience": view.audience,
                    "channel": view.channel,
                    "sender_id": view.sender_id,
                    "categories": ";".join(view.categories),
                    "risk": view.risk,
                    "status": view.status,
                    "acknowledged_at": view.acknowledged_at.isoformat() if view.acknowledged_at else "",
                    "acknowledged_by": view.acknowledged_by or "",
                    "source": view.source,
                    "text": view.text if view.text is not None else f"[{key_error or view.text_error}]",
                    "contact": "\n".join(
                        item["text"] if item["text"] is not None else f"[{key_error or item.get('error')}]"
                        for item in view.contact or ()
                    ),
                }
            )
            add_audit_event(
                session,
                disclosure_id=row.id,
                actor=actor,
                action="exported",
                detail={"format": "csv", "destination": destination, "decrypted": view.text is not None},
            )
        # The audit events commit only after every row is written: a failed export leaves no false trail.
        stream.flush()
    return len(rows)
