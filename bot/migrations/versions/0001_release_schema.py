"""The schema of the first release, exactly as its ``init_db`` created it.

Disclosures, their notes, the hash-chained append-only audit trail (with the chain head's one row and the
triggers that refuse UPDATE and DELETE) and the alert outbox. A database made by that release is not run
through this revision: ``store.init_db`` brings it to this shape in place and stamps it.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64

SQLITE_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
)
POSTGRES_TRIGGERS = (
    """CREATE OR REPLACE FUNCTION schoolguide_audit_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit_events is append-only'; END; $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events",
    """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
       FOR EACH ROW EXECUTE FUNCTION schoolguide_audit_append_only()""",
)


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "disclosures",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("reference", sa.String(20), nullable=False, unique=True),
        sa.Column("school", sa.String(100), nullable=False),
        sa.Column("audience", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("sender_id", sa.String(255), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("text_encrypted", sa.Text(), nullable=False),
        sa.Column("context_encrypted", sa.Text(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("risk", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime()),
        sa.Column("acknowledged_by", sa.String(200)),
        sa.Column("source", sa.String(20), nullable=False),
        sa.UniqueConstraint("sender_id", "message_id", name="uq_disclosures_message"),
    )
    op.create_index("ix_disclosures_status", "disclosures", ["status"])
    op.create_index("ix_disclosures_created_at", "disclosures", ["created_at"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("disclosure_id", sa.Integer(), sa.ForeignKey("disclosures.id")),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("seq", sa.Integer()),
        sa.Column("prev_hash", sa.String(64)),
        sa.Column("row_hash", sa.String(64)),
    )
    op.create_index("ix_audit_events_seq", "audit_events", ["seq"], unique=True)
    op.create_index("ix_audit_events_disclosure_id", "audit_events", ["disclosure_id"])
    op.create_table(
        "disclosure_notes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("disclosure_id", sa.Integer(), sa.ForeignKey("disclosures.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("sender_id", sa.String(255), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("text_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(64)),
        sa.Column("origin", sa.String(30)),
        sa.UniqueConstraint(
            "disclosure_id", "kind", "sender_id", "message_id", name="uq_disclosure_notes_message"
        ),
    )
    op.create_index("ix_disclosure_notes_disclosure_id", "disclosure_notes", ["disclosure_id"])
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("disclosure_id", sa.Integer(), sa.ForeignKey("disclosures.id"), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_at", sa.DateTime()),
        sa.Column("claim_token", sa.String(64)),
        sa.Column("sent_at", sa.DateTime()),
        sa.UniqueConstraint("disclosure_id", "channel", "recipient", "kind", name="uq_outbox_delivery"),
    )
    op.create_index("ix_outbox_due", "outbox_messages", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_messages_disclosure_id", "outbox_messages", ["disclosure_id"])
    head = sa.table("audit_chain_head", sa.column("id"), sa.column("seq"), sa.column("last_hash"))
    op.bulk_insert(head, [{"id": 1, "seq": 0, "last_hash": GENESIS_HASH}])
    dialect = op.get_bind().dialect.name
    for statement in (
        SQLITE_TRIGGERS if dialect == "sqlite" else POSTGRES_TRIGGERS if dialect == "postgresql" else ()
    ):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the release schema is the baseline: restore a backup instead")
