"""Retention: conversations are deleted from Rasa's tracker store after ``SCHOOLGUIDE_RETENTION_DAYS``.

Disclosure records, notes, alerts and the audit trail are not touched: a school keeps those under its own
safeguarding retention policy. What goes is every tracker-store event older than the limit that is no longer
part of a conversation's current session (events before the conversation's latest ``session_started``, or the
whole conversation when its newest event is older), so Rasa never loads a conversation with a hole in it.

A disclosure is never deleted before it is recorded: the old part of the store is reconciled first, and a
disclosure that still cannot be recorded (database and spool down) is kept until a later pass records it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, not_, or_, select
from sqlalchemy.orm import aliased

from bot.safeguarding.reconcile import reconcile_from_tracker_store, tracker_engine, tracker_events
from bot.safeguarding.store import as_utc, utcnow
from bot.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionReport:
    deleted: int = 0
    kept_unrecorded: int = 0
    cutoff: datetime | None = None  # None: retention is off (SCHOOLGUIDE_RETENTION_DAYS=0)


def purge_old_conversations(settings: Settings, now: datetime | None = None) -> RetentionReport:
    """Delete tracker-store events older than the retention limit; returns how many went."""
    if settings.retention_days <= 0:
        return RetentionReport()
    cutoff = (as_utc(now) if now else utcnow()) - timedelta(days=settings.retention_days)
    engine = tracker_engine(settings.tracker_database_url)
    if engine is None:
        return RetentionReport(cutoff=cutoff)
    try:
        # Raises if it cannot run: then nothing is deleted this time.
        reconciled = reconcile_from_tracker_store(settings, until=cutoff.timestamp())
        latest_start = aliased(tracker_events)
        latest_event = aliased(tracker_events)
        session_start = (
            select(func.max(latest_start.c.timestamp))
            .where(
                latest_start.c.sender_id == tracker_events.c.sender_id,
                latest_start.c.type_name == "session_started",
            )
            .scalar_subquery()
        )
        newest = (
            select(func.max(latest_event.c.timestamp))
            .where(latest_event.c.sender_id == tracker_events.c.sender_id)
            .scalar_subquery()
        )
        condition = and_(
            tracker_events.c.timestamp < cutoff.timestamp(),
            or_(tracker_events.c.timestamp < session_start, newest < cutoff.timestamp()),
        )
        if reconciled.unrecorded:
            condition = and_(condition, not_(tracker_events.c.id.in_(reconciled.unrecorded)))
        with engine.begin() as connection:
            deleted = connection.execute(delete(tracker_events).where(condition)).rowcount or 0
    finally:
        engine.dispose()
    if deleted:
        logger.info("Retention: deleted %d tracker-store events older than %s", deleted, cutoff.date())
    if reconciled.unrecorded:
        logger.error(
            "Retention: kept %d old disclosures that could not be recorded yet", len(reconciled.unrecorded)
        )
    return RetentionReport(deleted=deleted, kept_unrecorded=len(reconciled.unrecorded), cutoff=cutoff)
