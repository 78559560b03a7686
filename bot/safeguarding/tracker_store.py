"""Rasa's SQL tracker store, redacting committed disclosures and contact details before they are written.

Loaded by the Rasa server from ``var/endpoints.yml`` (``type: bot.safeguarding.tracker_store.
RedactingTrackerStore``, the other fields as for ``type: SQL``); see :mod:`bot.safeguarding.redaction` for
what is redacted and when. Kept apart from that module because importing Rasa is slow and the action server
and the reconciler never need it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.nlu.constants import INTENT_NAME_KEY
from sqlalchemy import event

from bot.safeguarding.file_modes import private_sqlite_database
from bot.safeguarding.redaction import committed_in, redact_events, redact_rows


class RedactingTrackerStore(SQLTrackerStore):
    """SQLTrackerStore that never writes the words of a message our own store has committed."""

    def __init__(self, *args: Any, dialect: str = "sqlite", db: str = "rasa.db", **kwargs: Any) -> None:
        if dialect == "sqlite" and db and db != ":memory:":
            private_sqlite_database(db)  # created 0600 before SQLite makes it (its journals copy the mode)
        super().__init__(*args, dialect=dialect, db=db, **kwargs)
        if self.engine.dialect.name == "sqlite":
            # A rewritten row must not leave the words behind in the file's free pages.
            event.listen(self.engine, "connect", _secure_delete)
            self.engine.dispose()

    async def save(self, tracker: Any) -> None:
        """As SQLTrackerStore.save (only the events not stored yet), with committed words redacted first."""
        await self.stream_events(tracker)
        with self.session_scope() as session:
            stored = self._event_query(
                session, tracker.sender_id, fetch_events_from_all_sessions=False
            ).count()
            fresh = list(itertools.islice(tracker.events, stored, None))
            datas = [item.as_dict() for item in fresh]
            committed = committed_in(datas)
            if committed:
                found = redact_events(datas, committed)
                earlier = {key: value for key, value in committed.items() if key not in found}
                if earlier:
                    self._redact_stored(session, tracker.sender_id, earlier)
            for item, data in zip(fresh, datas, strict=True):
                parse_data = data.get("parse_data") if isinstance(data.get("parse_data"), dict) else {}
                intent = parse_data.get("intent") if isinstance(parse_data.get("intent"), dict) else {}
                session.add(
                    self.SQLEvent(
                        sender_id=tracker.sender_id,
                        type_name=item.type_name,
                        timestamp=data.get("timestamp"),
                        intent_name=intent.get(INTENT_NAME_KEY),
                        action_name=data.get("name"),
                        data=json.dumps(data),
                    )
                )
            session.commit()

    def _redact_stored(self, session: Any, sender_id: str, committed: Mapping[str, str]) -> None:
        """A marker for a message saved in an earlier turn: rewrite that row and the rest of its turn."""
        rows = self._event_query(session, sender_id, fetch_events_from_all_sessions=True).all()
        _, changed = redact_rows(rows, committed)
        for row, data in changed:
            row.data = data


def _secure_delete(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
