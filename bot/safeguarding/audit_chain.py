"""The audit trail as a hash chain: any edited, deleted, inserted or reordered row shows.

Each ``audit_events`` row carries its position (``seq``, 1, 2, 3 ... with no gaps), the hash of the row before
it (``prev_hash``) and its own hash: sha256 over ``prev_hash`` and a canonical JSON of its fields. The newest
position and hash are also kept in the one-row ``audit_chain_head`` table, so deleting the newest rows shows
too. Appending is in ``store.add_audit_event``; this module only hashes and checks.

A chain without a secret proves order and integrity, not authorship: someone who can write to the database
can rebuild the whole chain. Noting the head hash that ``verify-audit`` prints somewhere else (the DSL's log
book) makes even that visible.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

GENESIS_HASH = "0" * 64


def normalise_detail(detail: dict[str, Any] | None) -> Any:
    """The detail as the JSON column gives it back (string keys, lists for tuples), so it hashes the same."""
    return json.loads(json.dumps(detail or {}))


def _at(at: datetime) -> str:
    # Stored as naive UTC with microseconds on SQLite and PostgreSQL alike.
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds")


def row_hash(
    prev_hash: str,
    *,
    seq: int,
    disclosure_id: int | None,
    at: datetime,
    actor: str,
    action: str,
    detail: Any,
) -> str:
    """The hash of one audit row, chained to the row before it."""
    fields = {
        "seq": seq,
        "disclosure_id": disclosure_id,
        "at": _at(at),
        "actor": actor,
        "action": action,
        "detail": detail,
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{prev_hash}{canonical}".encode("ascii")).hexdigest()


@dataclass(frozen=True)
class ChainVerdict:
    """``ok``, how many rows were checked, the head hash, and (when not ok) the first bad row and why."""

    ok: bool
    rows: int
    head_hash: str
    bad_row_id: int | None = None
    problem: str | None = None


def verify_chain(engine: Engine) -> ChainVerdict:
    """Walk the audit trail in chain order and report the first row that does not fit."""
    from bot.safeguarding.store import AuditChainHead, AuditEvent

    with engine.connect() as connection:
        head = connection.execute(
            select(AuditChainHead.seq, AuditChainHead.last_hash).where(AuditChainHead.id == 1)
        ).first()
        unchained = connection.execute(
            select(AuditEvent.id).where(AuditEvent.seq.is_(None)).order_by(AuditEvent.id).limit(1)
        ).scalar()
        rows = connection.execute(
            select(
                AuditEvent.id,
                AuditEvent.seq,
                AuditEvent.disclosure_id,
                AuditEvent.at,
                AuditEvent.actor,
                AuditEvent.action,
                AuditEvent.detail,
                AuditEvent.prev_hash,
                AuditEvent.row_hash,
            )
            .where(AuditEvent.seq.is_not(None))
            .order_by(AuditEvent.seq, AuditEvent.id)
        )
        if head is None:
            return ChainVerdict(False, 0, GENESIS_HASH, None, "the chain head (audit_chain_head) is missing")
        if unchained is not None:
            return ChainVerdict(False, 0, head.last_hash, unchained, "row has no place in the chain (no seq)")
        prev_hash, expected_seq, last_id, count = GENESIS_HASH, 1, 0, 0
        for row in rows:
            count += 1
            if row.seq != expected_seq:
                what = "missing before it (deleted?)" if row.seq > expected_seq else "repeated"
                return _bad(head, count, row.id, f"position {row.seq}, expected {expected_seq}: rows {what}")
            if row.id <= last_id:
                return _bad(head, count, row.id, "out of order: its id is lower than the row before it")
            if row.prev_hash != prev_hash:
                return _bad(head, count, row.id, "does not link to the row before it (deleted or reordered?)")
            expected = row_hash(
                prev_hash,
                seq=row.seq,
                disclosure_id=row.disclosure_id,
                at=row.at,
                actor=row.actor,
                action=row.action,
                detail=row.detail,
            )
            if row.row_hash != expected:
                return _bad(head, count, row.id, "its contents changed after it was written (edited)")
            prev_hash, expected_seq, last_id = row.row_hash, expected_seq + 1, row.id
    if head.seq != expected_seq - 1 or head.last_hash != prev_hash:
        return ChainVerdict(
            False,
            count,
            head.last_hash,
            None,
            f"the chain head says {head.seq} row(s) but the trail ends at {expected_seq - 1} "
            "(newest rows deleted?)",
        )
    return ChainVerdict(True, count, prev_hash)


def _bad(head: Any, count: int, row_id: int, problem: str) -> ChainVerdict:
    return ChainVerdict(False, count, head.last_hash, row_id, problem)
