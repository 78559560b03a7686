"""Answering each Slack event and Teams activity once, across processes and restarts.

Slack re-sends an event (``X-Slack-Retry-Num``) when it did not see our 200 within three seconds, and the Bot
Framework re-sends an activity it saw no answer to. Each delivery can reach a different Rasa process (several
workers behind a load balancer) or a process restarted since the first delivery, so an in-memory set is not
enough: :class:`SeenEvents` remembers every event key in a small table, ``schoolguide_seen_events``, for an
hour (Slack gives up retrying well within that), and claims a key with an INSERT that does nothing when the
key is already there. Exactly one process's INSERT adds the row; every other delivery is a repeat.

The table lives in **Rasa's tracker store database** (``SCHOOLGUIDE_TRACKER_DATABASE_URL``), not the
disclosure store:

* it is the database every Rasa process already needs to handle a message at all: if it is down, the
  message cannot be answered anyway, while the disclosure store is built to be optional (the spool covers it);
* it keeps a busy, unencrypted, channel-level table out of the safeguarding database, whose application role
  may have only the grants the disclosure tables need (``bot/safeguarding/store.py``);
* the reconciler already reads this database (``bot/safeguarding/reconcile.py``), so no new connection
  setting is needed.

An in-memory LRU (:class:`RecentKeys`) stays the first check: a repeat this process has seen is answered
without touching the database, and it is what makes two deliveries racing inside one process safe (it is
synchronous, so atomic on the event loop). If the database cannot be reached the event is handled (and
logged): answering twice is better than never answering a member of staff.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Float, MetaData, String, Table, create_engine, delete, event, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

logger = logging.getLogger(__name__)

RECENT_EVENTS = 10_000
SEEN_FOR_SECONDS = 60 * 60
MAX_KEY_CHARS = 200
PURGE_EVERY_SECONDS = 10 * 60

_metadata = MetaData()
seen_events = Table(
    "schoolguide_seen_events",
    _metadata,
    # "<channel>:<key>", e.g. "slack:event:Ev0123"; long keys are hashed (see _db_key).
    Column("event_key", String(255), primary_key=True),
    Column("seen_at", Float, nullable=False),  # Unix time
    Column("expires_at", Float, nullable=False, index=True),
)


class RecentKeys:
    """A bounded, in-memory LRU of recently seen keys (event ids...), for answering each event once."""

    def __init__(self, capacity: int = RECENT_EVENTS) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def seen(self, keys: Iterable[str | None]) -> bool:
        """Record ``keys``; True if any of them was already recorded (i.e. this is a repeat).

        Synchronous, so it is atomic on the event loop: two concurrent deliveries cannot both pass.
        """
        keys = [key for key in keys if key]
        repeat = False
        for key in keys:
            if key in self._keys:
                repeat = True
                self._keys.move_to_end(key)
            else:
                self._keys[key] = None
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return repeat


def _db_key(channel: str, key: str) -> str:
    full = f"{channel}:{key}"
    if len(full) <= MAX_KEY_CHARS:
        return full
    return f"{channel}:sha256:{hashlib.sha256(full.encode('utf-8')).hexdigest()}"


def _engine_for(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, future=True, pool_pre_ping=True)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # Rasa's own file: its journal mode is left as Rasa set it; writers wait for each other.
    engine = create_engine(url, future=True, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _busy_timeout(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


class SeenEvents:
    """Durable "first delivery?" memory shared by every process using ``database_url`` (module docstring).

    ``clock`` (tests) gives the Unix time.
    """

    def __init__(
        self,
        database_url: str,
        channel: str,
        *,
        seen_for_seconds: float = SEEN_FOR_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.channel = channel
        self.seen_for_seconds = seen_for_seconds
        self._clock = clock
        self._url = database_url
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._next_purge = 0.0

    def _ready_engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                engine = _engine_for(self._url)
                try:
                    _metadata.create_all(engine)
                except SQLAlchemyError:
                    # Another process created the table at the same moment: it is there now.
                    _metadata.create_all(engine)
                self._engine = engine
            return self._engine

    def _insert_if_absent(self, connection: Connection, key: str, now: float) -> bool:
        values = {"event_key": key, "seen_at": now, "expires_at": now + self.seen_for_seconds}
        dialect = connection.dialect.name
        if dialect in ("sqlite", "postgresql"):
            module = sqlite if dialect == "sqlite" else postgresql
            statement = module.insert(seen_events).values(**values).on_conflict_do_nothing()
            return connection.execute(statement).rowcount == 1
        savepoint = connection.begin_nested()
        try:
            connection.execute(insert(seen_events).values(**values))
        except IntegrityError:
            savepoint.rollback()
            return False
        savepoint.commit()
        return True

    def first_delivery(self, keys: Iterable[str | None]) -> bool:
        """Claim ``keys`` for this process: True if none of them had been claimed (unexpired) before.

        All keys are claimed in one transaction, in a fixed order (no deadlock between two processes);
        whichever process inserts a key first wins it. Never raises: a database failure is logged and
        counts as a first delivery.
        """
        wanted = sorted({_db_key(self.channel, key) for key in keys if key})
        if not wanted:
            return True
        now = self._clock()
        try:
            engine = self._ready_engine()
            with engine.begin() as connection:
                # An expired key is forgotten, so its event counts as new again.
                connection.execute(
                    delete(seen_events).where(
                        seen_events.c.event_key.in_(wanted), seen_events.c.expires_at <= now
                    )
                )
                claimed = [self._insert_if_absent(connection, key, now) for key in wanted]
            if now >= self._next_purge:
                self._next_purge = now + PURGE_EVERY_SECONDS
                with engine.begin() as connection:
                    connection.execute(delete(seen_events).where(seen_events.c.expires_at <= now))
        except Exception:
            logger.warning(
                "%s: cannot check %s against the seen-events table; handling it (it may be answered twice)",
                self.channel,
                wanted,
                exc_info=True,
            )
            return True
        return all(claimed)

    def dispose(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


class EventDeduplicator:
    """The in-memory LRU first, then (if a database URL is given) the durable table."""

    def __init__(
        self,
        channel: str,
        database_url: str | None = None,
        *,
        capacity: int = RECENT_EVENTS,
        seen_for_seconds: float = SEEN_FOR_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.recent = RecentKeys(capacity)
        self.durable = (
            SeenEvents(database_url, channel, seen_for_seconds=seen_for_seconds, clock=clock)
            if database_url
            else None
        )

    async def is_repeat(self, keys: Iterable[str | None]) -> bool:
        """True when any of ``keys`` was handled before, by this process or (within the hour) another."""
        keys = [key for key in keys if key]
        if self.recent.seen(keys):
            return True
        if self.durable is None or not keys:
            return False
        # The database call blocks: keep the event loop free for other requests meanwhile.
        return not await asyncio.to_thread(self.durable.first_delivery, keys)
