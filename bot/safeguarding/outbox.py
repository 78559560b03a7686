"""Delivering DSL alerts exactly once per channel, with retries, and escalating what nobody acknowledged.

Every alert is an ``OutboxMessage`` row written in the same transaction as its disclosure. A worker
*claims* a due row with a conditional UPDATE (``pending`` -> ``sending`` only if it is still ``pending``),
commits, sends, then marks it ``sent``. The claim is atomic on SQLite and PostgreSQL alike (on PostgreSQL the
second UPDATE waits for the first to commit and then matches nothing), so two workers never send the same
row, and a ``sent`` row is never picked again. A worker that dies mid-send leaves its claim behind; after
``SENDING_LEASE`` the row is released and sent again: for a safeguarding alert a rare duplicate is better
than a silent loss.

Kinds of message: ``alert`` (a new disclosure, to the DSLs), ``escalation`` (not acknowledged in time, to the
deputies) and one ``contact:<note id>`` per set of contact details added to a disclosure afterwards (to the
DSLs: "contact details were added to REF", never the details). The note id is in the kind so that the unique
key ``(disclosure, channel, recipient, kind)`` allows exactly one such message per note and channel. The
desk's ``assigned:<assignment id>`` rows (``bot.desk.casework.assign``, e-mail to the assignee) work the
same way: "REF was assigned to you by X", never the words or the case notes.

Every disclosure and every contact note gets outbox rows, whatever is configured. With no DSL address and no
webhook there is nobody to plan a row for, so one placeholder row is written instead (channel and recipient
``unrouted``). No notifier handles that channel, so it is never claimed and never uses up attempts; each
delivery pass routes it (``_route_unrouted``) as soon as a DSL address or the webhook is set: the real rows
are added and the placeholder becomes ``routed``, in one transaction, so the alert goes out exactly once.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.safeguarding.notifiers import WEBHOOK_RECIPIENT, Alert, Notifier, notifiers_for
from bot.safeguarding.store import (
    Disclosure,
    OutboxMessage,
    add_audit_event,
    as_utc,
    get_engine,
    utcnow,
)
from bot.settings import Settings

logger = logging.getLogger(__name__)

WORKER_ACTOR = "schoolguide-worker"
BASE_DELAY_SECONDS = 30
MAX_DELAY_SECONDS = 3600
SENDING_LEASE = timedelta(minutes=10)
BATCH_SIZE = 100
_outbox = OutboxMessage.__table__


# Contact details added to a disclosure: the outbox kind is this prefix and the note's id (see above).
CONTACT_KIND_PREFIX = "contact:"
CONTACT_ALERT = "contact_added"
ASSIGNED_ALERT = "assigned"
# Channel and recipient of the placeholder row for a message nobody is configured to receive (see above).
UNROUTED = "unrouted"


def contact_alert_kind(note_id: int) -> str:
    """The outbox kind for the message saying that note ``note_id`` (contact details) was added."""
    return f"{CONTACT_KIND_PREFIX}{note_id}"


def alert_kind(outbox_kind: str) -> str:
    """What the message is about: "alert", "escalation" or "contact_added" (for any ``contact:<id>``)."""
    return CONTACT_ALERT if outbox_kind.startswith(CONTACT_KIND_PREFIX) else outbox_kind


def planned_recipients(settings: Settings, kind: str) -> list[tuple[str, str]]:
    """(channel, recipient) pairs: deputies for an escalation, else the DSLs; the webhook gets every kind."""
    emails = settings.deputy_dsl_emails if kind == "escalation" else settings.dsl_emails
    seen: set[str] = set()
    planned: list[tuple[str, str]] = []
    for email in emails:
        if email.lower() not in seen:
            seen.add(email.lower())
            planned.append(("email", email))
    if settings.alert_webhook_url:
        planned.append(("webhook", WEBHOOK_RECIPIENT))
    return planned


def add_outbox_rows(
    session: Session, settings: Settings, disclosure_id: int, kind: str, now: datetime
) -> list[tuple[str, str]]:
    """Queue ``kind`` messages for a disclosure inside the caller's transaction; returns the planned
    (channel, recipient) pairs, empty when the message waits in an ``unrouted`` placeholder instead."""
    planned = planned_recipients(settings, kind)
    for channel, recipient in planned or [(UNROUTED, UNROUTED)]:
        session.add(_row(disclosure_id, channel, recipient, kind, now, created_at=now))
    return planned


def _row(
    disclosure_id: int, channel: str, recipient: str, kind: str, now: datetime, *, created_at: datetime
) -> OutboxMessage:
    return OutboxMessage(
        disclosure_id=disclosure_id,
        channel=channel,
        recipient=recipient,
        kind=kind,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=created_at,
    )


def _route_unrouted(settings: Settings, engine: Engine, now: datetime) -> int:
    """Replace each waiting placeholder by real rows once there is someone to alert; returns how many."""
    with Session(engine, future=True) as session:
        waiting = session.execute(
            select(OutboxMessage.id, OutboxMessage.kind)
            .where(OutboxMessage.channel == UNROUTED, OutboxMessage.status == "pending")
            .order_by(OutboxMessage.id)
        ).all()
    routed = 0
    for placeholder_id, kind in waiting:
        planned = planned_recipients(settings, kind)
        if not planned:
            continue
        try:
            with Session(engine, future=True) as session, session.begin():
                # The conditional UPDATE is the claim: of two workers routing at once, one matches nothing.
                claimed = session.execute(
                    update(_outbox)
                    .where(_outbox.c.id == placeholder_id, _outbox.c.status == "pending")
                    .values(status="routed", last_error=None)
                ).rowcount
                if claimed != 1:
                    continue
                placeholder = session.get(OutboxMessage, placeholder_id)
                for channel, recipient in planned:
                    session.add(
                        _row(
                            placeholder.disclosure_id,
                            channel,
                            recipient,
                            kind,
                            now,
                            # Kept: a contact alert says when the details were added, not when it was routed.
                            created_at=placeholder.created_at,
                        )
                    )
                add_audit_event(
                    session,
                    disclosure_id=placeholder.disclosure_id,
                    actor=WORKER_ACTOR,
                    action="alert_queued",
                    detail={
                        "kind": kind,
                        "recipients": [f"{channel}:{recipient}" for channel, recipient in planned],
                        "waited_since": placeholder.created_at.isoformat(),
                    },
                    at=now,
                )
        except IntegrityError:
            continue  # cannot happen while placeholders are only written when nobody was planned
        routed += 1
    if routed:
        logger.warning("%d safeguarding alert(s) stored while nobody was configured are now queued", routed)
    return routed


def backoff_delay(attempts: int) -> timedelta:
    """Wait before the next try after ``attempts`` failures: 30s, 60s, 120s ... capped at an hour."""
    exponent = min(max(attempts - 1, 0), 20)
    return timedelta(seconds=min(BASE_DELAY_SECONDS * 2**exponent, MAX_DELAY_SECONDS))


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    cancelled: int = 0
    waiting_for_settings: int = 0


def _alert_for(settings: Settings, disclosure: Disclosure, row: OutboxMessage, now: datetime) -> Alert:
    # Imported here, not at the top: the desk is built on this package, and importing the outbox (as the
    # action server does) should not load the desk's accounts and their password hashing.
    from bot.desk.casework import ASSIGNED_KIND_PREFIX, assignment_for

    kind = alert_kind(row.kind)
    assigned_to = assigned_by = None
    if row.kind.startswith(ASSIGNED_KIND_PREFIX):
        kind = ASSIGNED_ALERT
        assigned_to, assigned_by = assignment_for(settings, row.kind) or (row.recipient, None)
    waited = None
    if kind == "escalation":
        waited = max(int((now - disclosure.created_at).total_seconds() // 60), settings.ack_timeout_minutes)
    return Alert(
        kind=kind,
        reference=disclosure.reference,
        school=disclosure.school,
        audience=disclosure.audience,
        channel=disclosure.channel,
        categories=tuple(disclosure.categories or ()),
        risk=disclosure.risk,
        created_at=disclosure.created_at,
        link=f"{settings.case_link_base}{disclosure.reference}",
        minutes_unacknowledged=waited,
        added_at=row.created_at if kind == CONTACT_ALERT else None,
        assigned_to=assigned_to,
        assigned_by=assigned_by,
    )


def _release_stale_claims(engine: Engine, now: datetime) -> None:
    with engine.begin() as connection:
        released = connection.execute(
            update(_outbox)
            .where(_outbox.c.status == "sending", _outbox.c.claimed_at < now - SENDING_LEASE)
            .values(status="pending", claim_token=None, claimed_at=None)
        ).rowcount
    if released:
        logger.warning("Released %d alert(s) whose sender died mid-send; they will be sent again", released)


def _claim(engine: Engine, message_id: int, now: datetime) -> str | None:
    token = uuid.uuid4().hex
    with engine.begin() as connection:
        claimed = connection.execute(
            update(_outbox)
            .where(
                _outbox.c.id == message_id,
                _outbox.c.status == "pending",
                _outbox.c.next_attempt_at <= now,
            )
            .values(status="sending", claim_token=token, claimed_at=now)
        ).rowcount
    return token if claimed == 1 else None


def _finish(
    settings: Settings, engine: Engine, message_id: int, token: str, now: datetime, error: str | None
) -> str:
    """Record the outcome of one send; returns "sent", "retrying" or "failed"."""
    with Session(engine, future=True) as session, session.begin():
        row = session.get(OutboxMessage, message_id)
        if row is None or row.claim_token != token:
            logger.warning("Outbox message %s was taken over by another worker during sending", message_id)
            return "sent" if error is None else "retrying"
        attempts = row.attempts + 1
        disclosure_id = row.disclosure_id
        audit = {"channel": row.channel, "recipient": row.recipient, "kind": row.kind, "attempts": attempts}
        if error is None:
            outcome, values = "sent", {"status": "sent", "sent_at": now, "last_error": None}
            add_audit_event(
                session,
                disclosure_id=disclosure_id,
                actor=WORKER_ACTOR,
                action="alert_sent",
                detail=audit,
                at=now,
            )
        elif attempts >= settings.delivery_max_attempts:
            outcome, values = "failed", {"status": "failed", "last_error": error}
            add_audit_event(
                session,
                disclosure_id=disclosure_id,
                actor=WORKER_ACTOR,
                action="alert_failed",
                detail={**audit, "error": error},
                at=now,
            )
        else:
            outcome = "retrying"
            values = {
                "status": "pending",
                "last_error": error,
                "next_attempt_at": now + backoff_delay(attempts),
            }
        session.execute(
            update(_outbox)
            .where(_outbox.c.id == message_id, _outbox.c.claim_token == token)
            .values(attempts=attempts, claim_token=None, claimed_at=None, **values)
        )
    if outcome == "failed":
        logger.error(
            "Gave up sending %s for disclosure id %s to %s/%s after %d attempts: %s",
            audit["kind"],
            disclosure_id,
            audit["channel"],
            audit["recipient"],
            attempts,
            error,
        )
    elif outcome == "retrying":
        logger.warning("Alert delivery failed (attempt %d), will retry: %s", attempts, error)
    return outcome


def _cancel_if_acknowledged(engine: Engine, message_id: int, token: str, now: datetime) -> bool:
    """An escalation for a disclosure someone has acknowledged meanwhile is not sent: it would be false."""
    with engine.begin() as connection:
        cancelled = connection.execute(
            update(_outbox)
            .where(_outbox.c.id == message_id, _outbox.c.claim_token == token)
            .values(
                status="cancelled",
                claim_token=None,
                claimed_at=None,
                last_error=f"not sent: the disclosure was acknowledged before {now.isoformat()}",
            )
        ).rowcount
    return cancelled == 1


_last_waiting_warning: dict[str, Any] = {"count": 0, "at": 0.0}


def _warn_waiting(count: int) -> None:
    """Warn that alerts wait for SMTP/webhook settings: on change, else every 10 minutes."""
    last = _last_waiting_warning
    if count and (count != last["count"] or time.monotonic() - last["at"] > 600):
        logger.warning(
            "%d safeguarding alert(s) are waiting for a channel that is not configured (SMTP or webhook; "
            "SCHOOLGUIDE_DSL_EMAILS or SCHOOLGUIDE_ALERT_WEBHOOK_URL)",
            count,
        )
        last["at"] = time.monotonic()
    last["count"] = count


def _due(engine: Engine, channels: list[str], now: datetime) -> list[int]:
    with Session(engine, future=True) as session:
        return list(
            session.execute(
                select(OutboxMessage.id)
                .where(
                    OutboxMessage.status == "pending",
                    OutboxMessage.next_attempt_at <= now,
                    OutboxMessage.channel.in_(channels),
                )
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(BATCH_SIZE)
            ).scalars()
        )


def _waiting(engine: Engine, channels: list[str], now: datetime) -> int:
    with Session(engine, future=True) as session:
        return session.execute(
            select(func.count(OutboxMessage.id)).where(
                OutboxMessage.status == "pending",
                OutboxMessage.next_attempt_at <= now,
                OutboxMessage.channel.not_in(channels),
            )
        ).scalar_one()


def deliver_pending(
    settings: Settings, now: datetime | None = None, *, notifiers: dict[str, Notifier] | None = None
) -> DeliveryReport:
    """Send every due pending outbox message once; failures are rescheduled with exponential back-off."""
    now = as_utc(now or utcnow())
    engine = get_engine(settings.database_url)
    notifiers = notifiers if notifiers is not None else notifiers_for(settings)
    configured = sorted(channel for channel, notifier in notifiers.items() if notifier.configured)
    _release_stale_claims(engine, now)
    _route_unrouted(settings, engine, now)
    counts = {"sent": 0, "retrying": 0, "failed": 0, "cancelled": 0}
    seen: set[int] = set()
    while True:
        # Batches, so a backlog cannot hold everything in memory; each row is tried at most once per call.
        due = [message_id for message_id in _due(engine, configured, now) if message_id not in seen]
        if not due:
            break
        for message_id in due:
            seen.add(message_id)
            token = _claim(engine, message_id, now)
            if token is None:
                continue  # another worker claimed it first
            error: str | None = None
            try:
                with Session(engine, future=True) as session:
                    row = session.get(OutboxMessage, message_id)
                    disclosure = session.get(Disclosure, row.disclosure_id)
                    if row.kind == "escalation" and disclosure.status != "new":
                        if _cancel_if_acknowledged(engine, message_id, token, now):
                            counts["cancelled"] += 1
                        continue
                    alert = _alert_for(settings, disclosure, row, now)
                    notifier, recipient = notifiers[row.channel], row.recipient
                notifier.send(recipient, alert)
            except Exception as exc:  # any failure is a failed attempt, never a crashed worker
                error = f"{type(exc).__name__}: {exc}"[:1000]
            counts[_finish(settings, engine, message_id, token, now, error)] += 1
    # Not attempts: these wait, untouched, until SMTP or the webhook is configured.
    waiting = _waiting(engine, configured, now)
    _warn_waiting(waiting)
    return DeliveryReport(waiting_for_settings=waiting, **counts)


def escalate_unacknowledged(settings: Settings, now: datetime | None = None) -> int:
    """Queue one escalation per deputy DSL (and the webhook) for disclosures still "new" after the timeout.

    Returns how many disclosures were escalated. Each is escalated once: the check below skips disclosures
    that already have escalation rows, and the outbox's unique key stops two workers doing it twice.
    """
    now = as_utc(now or utcnow())
    engine = get_engine(settings.database_url)
    cutoff = now - timedelta(minutes=settings.ack_timeout_minutes)
    already = exists().where(OutboxMessage.disclosure_id == Disclosure.id, OutboxMessage.kind == "escalation")
    with Session(engine, future=True) as session:
        overdue = session.execute(
            select(Disclosure.id, Disclosure.reference)
            .where(Disclosure.status == "new", Disclosure.created_at <= cutoff, ~already)
            .order_by(Disclosure.created_at)
        ).all()
    if overdue and not planned_recipients(settings, "escalation"):
        logger.warning(
            "%d disclosure(s) unacknowledged after %d minutes but no deputy DSL or webhook is configured "
            "to escalate to (SCHOOLGUIDE_DEPUTY_DSL_EMAILS)",
            len(overdue),
            settings.ack_timeout_minutes,
        )
        return 0
    escalated = 0
    for disclosure_id, reference in overdue:
        try:
            with Session(engine, future=True) as session, session.begin():
                planned = add_outbox_rows(session, settings, disclosure_id, "escalation", now)
                add_audit_event(
                    session,
                    disclosure_id=disclosure_id,
                    actor=WORKER_ACTOR,
                    action="escalated",
                    detail={
                        "after_minutes": settings.ack_timeout_minutes,
                        "recipients": [recipient for _, recipient in planned],
                    },
                    at=now,
                )
        except IntegrityError:
            continue  # another worker escalated it at the same moment
        escalated += 1
        logger.warning(
            "Disclosure %s not acknowledged after %d minutes: escalated",
            reference,
            settings.ack_timeout_minutes,
        )
    return escalated
