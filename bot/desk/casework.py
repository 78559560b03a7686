"""What a signed-in DSL does on the desk: the queue, a case with its chronology, and the actions on it.

Every function takes the signed-in ``DeskUser``. A case of a school the viewer cannot see, and any case for
an admin, is ``CaseNotFound`` (the page says 404, never 403: it does not confirm that the case exists).
Nothing is edited or deleted: every action is a new audit event on the hash chain, plus (for notes, outcomes
and assignments) a new encrypted, append-only row; the disclosure row only keeps the current status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.desk.accounts import DeskUser, can_see_school, colleagues
from bot.desk.models import Assignment, CaseEntry
from bot.safeguarding import cases
from bot.safeguarding.cases import CaseNotFound, CaseView, InvalidStatusChange
from bot.safeguarding.categories import RISKS
from bot.safeguarding.crypto import DecryptionError, DisclosureCipher, load_cipher
from bot.safeguarding.store import (
    STATUSES,
    AuditEvent,
    Disclosure,
    OutboxMessage,
    add_audit_event,
    get_engine,
    utcnow,
)
from bot.settings import Settings

__all__ = [
    "OPEN_STATUSES",
    "STATUSES",
    "CaseDetail",
    "CaseNotFound",
    "ChronologyEntry",
    "InvalidStatusChange",
    "QueueItem",
    "acknowledge",
    "add_action_note",
    "assign",
    "change_status",
    "close_case",
    "open_case",
    "queue",
]

OPEN_STATUSES = tuple(status for status in STATUSES if status != "closed")
MAX_NOTE_LENGTH = 5000
# The outbox kind of the alert telling a colleague a case was assigned to them: the assignment's id is in it
# so that each assignment is one message (the outbox's unique key), as with contact details.
ASSIGNED_KIND_PREFIX = "assigned:"


@dataclass(frozen=True)
class QueueItem:
    """One line of the queue (no words of the disclosure)."""

    reference: str
    school: str
    categories: tuple[str, ...]
    risk: str
    status: str
    created_at: datetime
    age_minutes: int
    escalated: bool
    assigned_to: str | None


@dataclass(frozen=True)
class ChronologyEntry:
    """One readable line of a case's history: when, who, what (never the disclosure's words)."""

    at: datetime
    actor: str
    what: str


@dataclass(frozen=True)
class CaseDetail:
    """A case as the desk shows it: the audited read, its chronology, action notes and current state."""

    case: CaseView
    chronology: tuple[ChronologyEntry, ...]
    action_notes: tuple[dict, ...]  # {"at", "by", "text"}, oldest first; "text" None if undecryptable
    assigned_to: str | None
    escalated: bool


def _actor(viewer: DeskUser) -> str:
    return f"desk:{viewer.email}"


def _visible_schools(viewer: DeskUser) -> tuple[str, ...] | None:
    """None: every school (a trust lead). Raises CaseNotFound for someone who may read no case."""
    if viewer.disabled or viewer.role not in ("dsl", "deputy", "trust-lead"):
        raise CaseNotFound("no case is visible to this account")
    if viewer.role == "trust-lead":
        return None
    return (viewer.school or "",)


def _escalated(settings: Settings, row: Disclosure, now: datetime) -> bool:
    # The same test as outbox.escalate_unacknowledged: still "new" after the acknowledgement timeout.
    return row.status == "new" and row.created_at <= now - timedelta(minutes=settings.ack_timeout_minutes)


def _assignees(session: Session, disclosure_ids: list[int]) -> dict[int, str]:
    current: dict[int, str] = {}
    for start in range(0, len(disclosure_ids), 500):
        chunk = disclosure_ids[start : start + 500]
        rows = session.execute(
            select(Assignment.disclosure_id, Assignment.assignee)
            .where(Assignment.disclosure_id.in_(chunk))
            .order_by(Assignment.id)
        )
        for disclosure_id, assignee in rows:
            current[disclosure_id] = assignee  # the newest wins
    return current


def queue(
    settings: Settings,
    viewer: DeskUser,
    *,
    status: str | None = None,
    school: str | None = None,
    category: str | None = None,
    risk: str | None = None,
) -> list[QueueItem]:
    """The viewer's cases: open ones unless ``status`` is given ("all": every status); the most urgent risk
    first, then the oldest. An admin's queue is empty."""
    try:
        schools = _visible_schools(viewer)
    except CaseNotFound:
        return []
    now = utcnow()
    query = select(Disclosure)
    if schools is not None:
        query = query.where(Disclosure.school.in_(schools))
    if school:
        query = query.where(Disclosure.school == school)
    if not status:
        query = query.where(Disclosure.status.in_(OPEN_STATUSES))
    elif status != "all":
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)} or 'all', got {status!r}")
        query = query.where(Disclosure.status == status)
    if risk:
        query = query.where(Disclosure.risk == risk)
    with Session(get_engine(settings.database_url), future=True) as session:
        rows = session.execute(query).scalars().all()
        if category:
            rows = [row for row in rows if category in (row.categories or ())]
        assignees = _assignees(session, [row.id for row in rows])
        items = [
            QueueItem(
                reference=row.reference,
                school=row.school,
                categories=tuple(row.categories or ()),
                risk=row.risk,
                status=row.status,
                created_at=row.created_at,
                age_minutes=max(0, int((now - row.created_at).total_seconds() // 60)),
                escalated=_escalated(settings, row, now),
                assigned_to=assignees.get(row.id),
            )
            for row in rows
        ]
    urgency = {name: position for position, name in enumerate(RISKS)}
    items.sort(key=lambda item: (urgency.get(item.risk, -1), item.created_at, item.reference))
    return items


def _find_visible(session: Session, viewer: DeskUser, reference: str) -> Disclosure:
    schools = _visible_schools(viewer)
    row = session.execute(
        select(Disclosure).where(Disclosure.reference == (reference or "").strip().upper())
    ).scalar_one_or_none()
    if row is None or (schools is not None and row.school not in schools):
        raise CaseNotFound(f"no disclosure with reference {reference!r}")
    return row


def _check_visible(settings: Settings, viewer: DeskUser, reference: str) -> Disclosure:
    with Session(get_engine(settings.database_url), future=True) as session:
        row = _find_visible(session, viewer, reference)
        session.expunge(row)
        return row


def _entries(session: Session, disclosure_id: int) -> list[CaseEntry]:
    return list(
        session.execute(
            select(CaseEntry).where(CaseEntry.disclosure_id == disclosure_id).order_by(CaseEntry.id)
        ).scalars()
    )


def _decrypt_entry(settings: Settings, entry: CaseEntry, reference: str) -> str | None:
    try:
        return load_cipher(settings).decrypt(entry.text_encrypted, what=f"a {entry.kind} on {reference}")
    except DecryptionError:
        return None


def _what(event: AuditEvent, outcomes: dict[int, str | None]) -> str | None:
    """A readable line for one audit event; None for one not worth a line of its own."""
    detail = event.detail or {}
    action = event.action
    if action == "created":
        return "Disclosure recorded"
    if action == "read":
        return "Read the case"
    if action == "exported":
        return "Exported the case"
    if action == "status_changed":
        to = detail.get("to")
        if to == "acknowledged":
            return "Acknowledged"
        if to == "closed":
            return None  # the "closed" event says it, with the outcome
        return f"Status: {str(to).replace('_', ' ')}"
    if action == "closed":
        outcome = outcomes.get(detail.get("entry_id"))
        return f"Closed: {outcome}" if outcome is not None else "Closed (outcome cannot be decrypted)"
    if action == "assigned":
        return f"Assigned to {detail.get('assignee')}"
    if action == "action_note_added":
        return "Action note added"
    if action in ("alert_sent", "alert_failed"):
        channel, recipient = detail.get("channel"), detail.get("recipient")
        kind = str(detail.get("kind") or "alert")
        noun = "Escalation" if kind == "escalation" else "Alert"
        if kind.startswith("contact:"):
            noun = "Contact-details alert"
        elif kind.startswith(ASSIGNED_KIND_PREFIX):
            noun = "Assignment alert"
        how = "e-mailed to" if channel == "email" else "posted to"
        target = recipient if channel == "email" else "the alert webhook"
        if action == "alert_failed":
            return f"{noun} could not be delivered to {target}"
        return f"{noun} {how} {target}"
    if action == "alert_queued":
        return "Alert queued"
    if action == "escalated":
        return "Escalated: not acknowledged in time"
    if action == "contact_added":
        return "Contact details added by the person"
    if action == "contact_refused":
        return "Contact details from another conversation refused"
    return action.replace("_", " ").capitalize()


def open_case(settings: Settings, viewer: DeskUser, reference: str) -> CaseDetail:
    """The case with its words, decrypted for this view only; the reading is audited as the viewer."""
    row = _check_visible(settings, viewer, reference)
    view = cases.read_case(settings, row.reference, actor=_actor(viewer), via="desk")
    now = utcnow()
    with Session(get_engine(settings.database_url), future=True) as session:
        events = session.execute(
            select(AuditEvent).where(AuditEvent.disclosure_id == row.id).order_by(AuditEvent.id)
        ).scalars()
        entries = _entries(session, row.id)
        outcomes = {entry.id: _decrypt_entry(settings, entry, row.reference) for entry in entries}
        chronology = tuple(
            ChronologyEntry(at=event.at, actor=event.actor, what=what)
            for event in events
            if (what := _what(event, outcomes)) is not None
        )
        assigned_to = _assignees(session, [row.id]).get(row.id)
        current = session.get(Disclosure, row.id)
        escalated = _escalated(settings, current, now)
    notes = tuple(
        {"at": entry.created_at, "by": entry.author, "text": outcomes[entry.id]}
        for entry in entries
        if entry.kind == "action_note"
    )
    return CaseDetail(
        case=view, chronology=chronology, action_notes=notes, assigned_to=assigned_to, escalated=escalated
    )


def acknowledge(settings: Settings, viewer: DeskUser, reference: str) -> None:
    """The viewer has seen the case: "new" becomes "acknowledged" (escalation stops)."""
    row = _check_visible(settings, viewer, reference)
    cases.acknowledge(settings, row.reference, actor=_actor(viewer))


def change_status(settings: Settings, viewer: DeskUser, reference: str, status: str) -> None:
    """Move the case on ("acknowledged", "in_progress"; a closed case may be reopened); closing needs an
    outcome (``close_case``)."""
    if status == "closed":
        raise InvalidStatusChange("closing a case needs an outcome")
    row = _check_visible(settings, viewer, reference)
    cases.change_status(settings, row.reference, status, actor=_actor(viewer))


def _checked_text(text: str, what: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValueError(f"the {what} is empty")
    if len(text) > MAX_NOTE_LENGTH:
        raise ValueError(f"the {what} is longer than {MAX_NOTE_LENGTH} characters")
    return text


def _audit(
    session: Session, row: Disclosure, viewer: DeskUser, action: str, detail: dict, at: datetime
) -> None:
    add_audit_event(session, disclosure_id=row.id, actor=_actor(viewer), action=action, detail=detail, at=at)


def _add_entry(
    session: Session,
    cipher: DisclosureCipher,
    row: Disclosure,
    viewer: DeskUser,
    kind: str,
    text: str,
    at: datetime,
) -> CaseEntry:
    """A new encrypted case entry by the viewer, flushed so that its id can go on the audit trail."""
    entry = CaseEntry(
        disclosure_id=row.id,
        kind=kind,
        text_encrypted=cipher.encrypt(text),
        author=viewer.email,
        created_at=at,
    )
    session.add(entry)
    session.flush()
    return entry


def add_action_note(settings: Settings, viewer: DeskUser, reference: str, text: str) -> None:
    """Add a follow-up note (1 to 5000 characters), stored encrypted; notes are never changed."""
    text = _checked_text(text, "action note")
    now = utcnow()
    cipher = load_cipher(settings)
    with Session(get_engine(settings.database_url), future=True) as session, session.begin():
        row = _find_visible(session, viewer, reference)
        entry = _add_entry(session, cipher, row, viewer, "action_note", text, now)
        _audit(session, row, viewer, "action_note_added", {"entry_id": entry.id, "length": len(text)}, now)


def close_case(settings: Settings, viewer: DeskUser, reference: str, outcome: str) -> None:
    """Close the case with an outcome (required, stored encrypted); the case stays on the chronology."""
    outcome = _checked_text(outcome, "outcome")
    now = utcnow()
    cipher = load_cipher(settings)
    with Session(get_engine(settings.database_url), future=True) as session, session.begin():
        row = _find_visible(session, viewer, reference)
        if row.status == "closed":
            raise InvalidStatusChange("the case is already closed")
        entry = _add_entry(session, cipher, row, viewer, "outcome", outcome, now)
        old = row.status
        if old == "new":
            row.acknowledged_at = now
            row.acknowledged_by = _actor(viewer)[:200]
        row.status = "closed"
        row.updated_at = now
        _audit(session, row, viewer, "status_changed", {"from": old, "to": "closed"}, now)
        _audit(session, row, viewer, "closed", {"entry_id": entry.id}, now)


def assign(settings: Settings, viewer: DeskUser, reference: str, assignee_email: str) -> None:
    """Hand the case to a colleague who can see its school; they are e-mailed (who, category, link only)."""
    now = utcnow()
    email = (assignee_email or "").strip().lower()
    with Session(get_engine(settings.database_url), future=True) as session, session.begin():
        row = _find_visible(session, viewer, reference)
        assignee = next((user for user in colleagues(settings, viewer) if user.email == email), None)
        if assignee is None or not can_see_school(assignee, row.school):
            raise ValueError(f"{assignee_email} is not a colleague who can work {row.school}'s cases")
        assignment = Assignment(
            disclosure_id=row.id, assignee=assignee.email, assigned_by=viewer.email, created_at=now
        )
        session.add(assignment)
        session.flush()
        kind = f"{ASSIGNED_KIND_PREFIX}{assignment.id}"
        session.add(
            OutboxMessage(
                disclosure_id=row.id,
                channel="email",
                recipient=assignee.email,
                kind=kind,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        alert = f"email:{assignee.email}:{kind}"
        _audit(session, row, viewer, "assigned", {"assignee": assignee.email, "alert": alert}, now)


def assignment_for(settings: Settings, outbox_kind: str) -> tuple[str, str] | None:
    """(assignee, assigned by) for an ``assigned:<id>`` outbox kind, for the alert's wording; else None."""
    if not outbox_kind.startswith(ASSIGNED_KIND_PREFIX):
        return None
    try:
        assignment_id = int(outbox_kind[len(ASSIGNED_KIND_PREFIX) :])
    except ValueError:
        return None
    with Session(get_engine(settings.database_url), future=True) as session:
        found = session.get(Assignment, assignment_id)
        return (found.assignee, found.assigned_by) if found else None
