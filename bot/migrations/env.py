"""Alembic's environment: migrations run on the connection ``store.init_db`` hands over, never from a URL."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `schoolguide db upgrade` (bot.safeguarding.store.init_db)")

context.configure(connection=connection, target_metadata=None, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
