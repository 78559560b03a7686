"""The hand-off worker: replay the spool, reconcile with Rasa, deliver alerts, escalate; again and again.

Each pass also keeps the runtime files owner-only, and about once an hour deletes tracker-store conversations
older than ``SCHOOLGUIDE_RETENTION_DAYS`` (bot/safeguarding/retention.py; disclosure records are kept).

It runs as a daemon thread inside the action server (``start_background_worker``), or on its own with
``schoolguide disclosures worker``. Each step is isolated: a failing step is logged and the others still run,
and the loop itself never dies. ``wake()`` lets the action ask for a prompt delivery without waiting for the
next tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.safeguarding.file_modes import secure_runtime_files
from bot.safeguarding.outbox import deliver_pending, escalate_unacknowledged
from bot.safeguarding.reconcile import reconcile_from_tracker_store
from bot.safeguarding.retention import purge_old_conversations
from bot.safeguarding.service import replay_spool
from bot.safeguarding.store import as_utc, utcnow
from bot.settings import Settings

logger = logging.getLogger(__name__)

# The background worker only looks this far back in the tracker store; `schoolguide disclosures reconcile`
# looks at everything.
RECONCILE_LOOKBACK = timedelta(days=7)
# Retention deletes by timestamp across the whole tracker store: hourly is plenty for a limit counted in days.
RETENTION_EVERY = timedelta(hours=1)
_last_retention: dict[str, datetime] = {}


@dataclass(frozen=True)
class WorkerReport:
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def run_once(settings: Settings, now: datetime | None = None) -> WorkerReport:
    """One pass: spool -> database, tracker store -> database, outbox -> DSLs, overdue -> deputies.

    ``now`` (tests) fixes the clock for every step; by default each step reads the clock itself, so rows
    written by an earlier step of this pass are already due for the later ones.
    """
    lookback_from = as_utc(now) if now else utcnow()
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    steps: tuple[tuple[str, Callable[[], Any]], ...] = (
        ("replay", lambda: replay_spool(settings)),
        (
            "reconcile",
            lambda: reconcile_from_tracker_store(settings, since=lookback_from - RECONCILE_LOOKBACK),
        ),
        ("deliver", lambda: deliver_pending(settings, now=now)),
        ("escalate", lambda: escalate_unacknowledged(settings, now=now)),
        # Escalations queued just now go out in this pass, not the next one.
        ("deliver_escalations", lambda: deliver_pending(settings, now=now)),
        ("file_modes", lambda: secure_runtime_files(settings)),
        # Deleting needs a working reconcile (an old disclosure is recorded before it goes): wait for one.
        ("retention", lambda: None if "reconcile" in errors else _retention_if_due(settings, now)),
    )
    for name, step in steps:
        try:
            results[name] = step()
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            logger.exception("Safeguarding worker step %r failed; carrying on with the others", name)
    return WorkerReport(results=results, errors=errors)


def _retention_if_due(settings: Settings, now: datetime | None) -> Any:
    """Purge old conversations if the last purge of this tracker store was over RETENTION_EVERY ago."""
    clock = as_utc(now) if now else utcnow()
    last = _last_retention.get(settings.tracker_database_url)
    if last is not None and last <= clock < last + RETENTION_EVERY:
        return None
    report = purge_old_conversations(settings, now=now)
    _last_retention[settings.tracker_database_url] = clock
    return report


def run_forever(
    settings: Settings, stop_event: threading.Event, wake_event: threading.Event | None = None
) -> None:
    """Run passes every ``worker_interval_seconds`` (sooner when woken) until ``stop_event`` is set."""
    wake_event = wake_event or threading.Event()
    interval = max(settings.worker_interval_seconds, 1)
    logger.info("Safeguarding worker started (every %ss)", interval)
    while not stop_event.is_set():
        try:
            run_once(settings)
        except Exception:  # the loop must outlive anything a pass throws
            logger.exception("Safeguarding worker pass failed; trying again in %ss", interval)
        wake_event.wait(interval)
        wake_event.clear()
    logger.info("Safeguarding worker stopped")


@dataclass(frozen=True)
class BackgroundWorker:
    thread: threading.Thread
    stop_event: threading.Event
    wake_event: threading.Event

    def stop(self, timeout: float | None = 10) -> None:
        self.stop_event.set()
        self.wake_event.set()
        self.thread.join(timeout)


_current: BackgroundWorker | None = None
_current_lock = threading.Lock()


def start_background_worker(settings: Settings) -> BackgroundWorker:
    """Start (once per process) the worker as a daemon thread and return it."""
    global _current
    with _current_lock:
        if _current is not None and _current.thread.is_alive():
            return _current
        stop_event, wake_event = threading.Event(), threading.Event()
        thread = threading.Thread(
            target=run_forever,
            args=(settings, stop_event, wake_event),
            name="schoolguide-safeguarding-worker",
            daemon=True,
        )
        thread.start()
        _current = BackgroundWorker(thread=thread, stop_event=stop_event, wake_event=wake_event)
        return _current


def wake() -> bool:
    """Ask the background worker for a pass now; returns False when no worker runs in this process."""
    worker = _current
    if worker is None or not worker.thread.is_alive():
        return False
    worker.wake_event.set()
    return True
