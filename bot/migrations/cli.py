"""``schoolguide db ...``: bring the database's schema up to date, or say where it is."""

from __future__ import annotations

import argparse

from bot.settings import Settings


def _cmd_upgrade(args: argparse.Namespace) -> int:
    from bot.safeguarding.store import create_engine_for, current_revision, init_db

    engine = create_engine_for(Settings.from_env().database_url)
    try:
        before = current_revision(engine)
        init_db(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        print(f"The schema is up to date (revision {after}).")
    else:
        print(f"Upgraded the schema from {before or 'the first release (no revision)'} to {after}.")
    return 0


def _cmd_current(args: argparse.Namespace) -> int:
    from sqlalchemy import inspect

    from bot.migrations import head_revision
    from bot.safeguarding.store import create_engine_for, current_revision

    engine = create_engine_for(Settings.from_env().database_url)
    try:
        current = current_revision(engine)
        existing = inspect(engine).has_table("disclosures")
    finally:
        engine.dispose()
    head = head_revision()
    if current is None:
        state = "made by the first release: run `schoolguide db upgrade`" if existing else "empty"
        print(f"Revision: none ({state}); newest: {head}")
        return 1
    print(f"Revision: {current}{' (newest)' if current == head else f'; newest: {head}'}")
    return 0 if current == head else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="the database schema (Alembic migrations)")
    commands = parser.add_subparsers(dest="db_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    upgrade = commands.add_parser("upgrade", help="apply every migration not yet applied (safe to repeat)")
    upgrade.set_defaults(func=_cmd_upgrade)
    current = commands.add_parser("current", help="print the schema revision (exit 1 unless the newest)")
    current.set_defaults(func=_cmd_current)
