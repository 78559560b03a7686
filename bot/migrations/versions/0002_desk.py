"""The DSL's desk: accounts, enrolment links, recovery codes, sessions, action notes and assignments.

Action notes, outcomes and assignments are append-only (triggers abort UPDATE and DELETE, as on
audit_events). See ``bot.desk.models``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = ("desk_case_entries", "desk_assignments")


def _create_table(name: str, *columns: sa.Column, index: str | None = None) -> None:
    """A table with an integer primary key ``id`` before ``columns``; ``index``: a column to index."""
    op.create_table(name, sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True), *columns)
    if index:
        op.create_index(f"ix_{name}_{index}", name, [index])


def upgrade() -> None:
    _create_table(
        "desk_users",
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("school", sa.String(100)),
        sa.Column("password_hash", sa.Text()),
        sa.Column("totp_secret_encrypted", sa.Text()),
        sa.Column("totp_last_step", sa.Integer()),
        sa.Column("enrolled_at", sa.DateTime()),
        sa.Column("disabled_at", sa.DateTime()),
        sa.Column("failed_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lockouts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    _create_table(
        "desk_enrolment_tokens",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("desk_users.id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime()),
        index="user_id",
    )
    _create_table(
        "desk_recovery_codes",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("desk_users.id"), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", sa.DateTime()),
        index="user_id",
    )
    _create_table(
        "desk_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("desk_users.id"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime()),
        index="user_id",
    )
    _create_table(
        "desk_case_entries",
        sa.Column("disclosure_id", sa.Integer(), sa.ForeignKey("disclosures.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("text_encrypted", sa.Text(), nullable=False),
        sa.Column("author", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        index="disclosure_id",
    )
    _create_table(
        "desk_assignments",
        sa.Column("disclosure_id", sa.Integer(), sa.ForeignKey("disclosures.id"), nullable=False),
        sa.Column("assignee", sa.String(320), nullable=False),
        sa.Column("assigned_by", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        index="disclosure_id",
    )
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "sqlite":
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        elif dialect == "postgresql":
            op.execute(
                """CREATE OR REPLACE FUNCTION schoolguide_desk_append_only() RETURNS trigger AS $$
                   BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql"""
            )
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION schoolguide_desk_append_only()"
            )


def downgrade() -> None:
    for table in reversed(
        (
            "desk_users",
            "desk_enrolment_tokens",
            "desk_recovery_codes",
            "desk_sessions",
            "desk_case_entries",
            "desk_assignments",
        )
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS schoolguide_desk_append_only()")
