"""Schema by migrations: a database made by the first release upgrades in place, on SQLite and PostgreSQL,
with every row kept and the audit chain still verifying; a fresh database gets the same schema; several
processes starting at once are safe; a second run changes nothing.

The first release is ``fixtures/release_0_1_store.py``: a frozen copy of its ``store.py`` (models and
``init_db``), so the database is built exactly as that release built it, and filled through its own code
with the real cipher.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bot.desk.models import DeskBase
from bot.migrations import head_revision
from bot.safeguarding.audit_chain import verify_chain
from bot.safeguarding.crypto import load_cipher
from bot.safeguarding.store import current_revision, dispose_engines, get_engine, init_db

FIXTURE = Path(__file__).parent / "fixtures" / "release_0_1_store.py"
RELEASE_TABLES = ("disclosures", "disclosure_notes", "audit_events", "audit_chain_head", "outbox_messages")
DESK_TABLES = tuple(DeskBase.metadata.tables)  # the desk's models: what migration 0002 must create
WORDS = ["my teacher says our chats are a secret", "they hit me when i get home", "🙂 surrogate \udcff kept"]


def _load_release():
    spec = importlib.util.spec_from_file_location("schoolguide_release_0_1_store", FIXTURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


release = _load_release()


def _engine(url: str):
    return create_engine(url, future=True)


@pytest.fixture
def second_postgres_url(postgres_url):
    """Another fresh schema on the same server (the first is ``postgres_url``)."""
    base = make_url(postgres_url)
    schema = f"sg_test_{uuid.uuid4().hex[:12]}"
    admin = _engine(base.difference_update_query(["options"]).render_as_string(hide_password=False))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        dispose_engines()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, make_settings, tmp_path):
    """(settings, a second URL for a fresh database) on SQLite or the real PostgreSQL server."""
    if request.param == "sqlite":
        return make_settings(), f"sqlite:///{tmp_path / 'fresh.db'}"
    settings = make_settings(database_url=request.getfixturevalue("postgres_url"))
    return settings, request.getfixturevalue("second_postgres_url")


def _fill_like_the_release(settings) -> dict[str, str]:
    """Build the database with the release's own init_db and fill it through its own code."""
    engine = release.create_engine_for(settings.database_url)
    release.init_db(engine)
    cipher = load_cipher(settings)
    start = datetime(2026, 11, 2, 8, 15, 30, 123456, tzinfo=timezone.utc)
    references = {}
    with Session(engine, future=True) as session, session.begin():
        for number, words in enumerate(WORDS):
            at = start + timedelta(hours=number)
            disclosure = release.Disclosure(
                reference=release.new_reference(),
                school=("lunsford", "scotts", "lunsford")[number],
                audience=("pupil", "parent", "pupil")[number],
                channel="socketio",
                sender_id=f"conv-{number}",
                message_id=f"msg-{number}",
                text_encrypted=cipher.encrypt(words),
                context_encrypted=cipher.encrypt(json.dumps([{"who": "user", "text": f"hello {number}"}])),
                categories=[["sexual_abuse_grooming"], ["physical_abuse_neglect", "other"], []][number],
                risk=("immediate", "high", "medium")[number],
                status=("new", "acknowledged", "closed")[number],
                created_at=at,
                updated_at=at,
                acknowledged_at=None if number == 0 else at + timedelta(minutes=7),
                acknowledged_by=None if number == 0 else "Ms Patel",
                source=("action", "spool", "reconcile")[number],
            )
            session.add(disclosure)
            session.flush()
            references[words] = disclosure.reference
            release.add_audit_event(
                session,
                disclosure_id=disclosure.id,
                actor="schoolguide",
                action="created",
                detail={"source": disclosure.source, "categories": disclosure.categories},
                at=at,
            )
            session.add(
                release.OutboxMessage(
                    disclosure_id=disclosure.id,
                    channel="email",
                    recipient="dsl@lunsford.example",
                    kind="alert",
                    status=("pending", "sent", "failed")[number],
                    attempts=number,
                    next_attempt_at=at,
                    last_error=None if number < 2 else "SMTP 127.0.0.1:25: refused",
                    created_at=at,
                    sent_at=at + timedelta(seconds=3) if number == 1 else None,
                )
            )
            note = release.DisclosureNote(
                disclosure_id=disclosure.id,
                kind="contact",
                sender_id=f"conv-{number}",
                message_id=f"msg-note-{number}",
                text_encrypted=cipher.encrypt(f"Amy Lowe 5B, 07700 900{number:03d}"),
                created_at=at + timedelta(minutes=1),
                source="action",
                channel="socketio" if number else None,
                origin="contact_form" if number else None,
            )
            session.add(note)
            session.flush()
            session.add(
                release.OutboxMessage(
                    disclosure_id=disclosure.id,
                    channel="unrouted",
                    recipient="unrouted",
                    kind=f"contact:{note.id}",
                    status="pending",
                    attempts=0,
                    next_attempt_at=at,
                    created_at=at,
                )
            )
            release.add_audit_event(
                session,
                disclosure_id=disclosure.id,
                actor="schoolguide",
                action="contact_added",
                detail={"note_id": note.id, "text_chars": 27},
                at=at + timedelta(minutes=1),
            )
            if number:
                release.add_audit_event(
                    session,
                    disclosure_id=disclosure.id,
                    actor="Ms Patel",
                    action="status_changed",
                    detail={"from": "new", "to": disclosure.status},
                    at=at + timedelta(minutes=7),
                )
        release.add_audit_event(
            session, disclosure_id=None, actor="root", action="exported", detail={"matched": 0}, at=start
        )
    engine.dispose()
    return references


def _data(engine, tables=RELEASE_TABLES) -> dict[str, list[tuple]]:
    with engine.connect() as connection:
        return {
            table: [tuple(row) for row in connection.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in tables
        }


def _triggers(engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            query = "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
        else:
            query = (
                "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND NOT t.tgisinternal"
            )
        return sorted(tuple(row) for row in connection.execute(text(query)))


def _schema(engine) -> dict:
    """Tables, columns, keys, indexes and triggers, as the database reports them."""
    inspector = inspect(engine)
    shape = {}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue
        shape[table] = (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            tuple(inspector.get_pk_constraint(table)["constrained_columns"]),
            sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
            ),
            sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(table)
            ),
        )
    return {"tables": shape, "triggers": _triggers(engine)}


def test_revision_0001_is_the_release_schema_exactly(database):
    settings, fresh_url = database
    release_engine = release.create_engine_for(settings.database_url)
    release.init_db(release_engine)
    fresh = _engine(fresh_url)
    with fresh.connect() as connection:
        from alembic import command

        from bot.migrations import alembic_config

        command.upgrade(alembic_config(connection), "0001")
        connection.commit()
    assert _schema(fresh) == _schema(release_engine)
    assert _data(fresh, ["audit_chain_head"]) == _data(release_engine, ["audit_chain_head"])
    release_engine.dispose()
    fresh.dispose()


def test_a_release_database_upgrades_in_place_with_nothing_lost(database):
    settings, fresh_url = database
    references = _fill_like_the_release(settings)
    engine = _engine(settings.database_url)
    before = _data(engine)
    assert current_revision(engine) is None and verify_chain(engine).ok

    init_db(engine)

    assert current_revision(engine) == head_revision() == "0002"
    assert _data(engine) == before  # every row, every value
    verdict = verify_chain(engine)
    assert verdict.ok and verdict.rows == len(before["audit_events"]), verdict
    assert set(DESK_TABLES) <= set(inspect(engine).get_table_names())

    # The same schema as a database created fresh by the migrations.
    fresh = _engine(fresh_url)
    init_db(fresh)
    assert _schema(engine) == _schema(fresh)
    fresh.dispose()

    # A second run changes nothing at all.
    everything = _data(engine, [*RELEASE_TABLES, *DESK_TABLES, "alembic_version"][:-1])
    schema = _schema(engine)
    init_db(engine)
    assert _data(engine, [*RELEASE_TABLES, *DESK_TABLES]) == everything
    assert _schema(engine) == schema and current_revision(engine) == "0002"
    engine.dispose()

    # The words still decrypt and the trail still refuses changes; new rows chain onto the old ones.
    from bot.safeguarding.cases import read_case

    for words, reference in references.items():
        case = read_case(settings, reference, actor="Ms Patel")
        assert case.text == words and case.contact[0]["text"].startswith("Amy Lowe 5B")
    assert verify_chain(get_engine(settings.database_url)).ok
    with pytest.raises(Exception, match="append-only"):
        with get_engine(settings.database_url).begin() as connection:
            connection.execute(text("DELETE FROM audit_events"))


def test_an_older_release_database_without_the_chain_and_note_columns_upgrades_too(make_settings):
    """The first release also upgraded databases from before the hash chain and the notes' channel/origin:
    that path is now the way to the 0001 shape, then the migrations run."""
    settings = make_settings()
    references = _fill_like_the_release(settings)
    engine = _engine(settings.database_url)
    with engine.begin() as connection:
        for statement in (
            "DROP TRIGGER audit_events_no_update",
            "DROP TRIGGER audit_events_no_delete",
            "DROP INDEX ix_audit_events_seq",
            "ALTER TABLE audit_events DROP COLUMN seq",
            "ALTER TABLE audit_events DROP COLUMN prev_hash",
            "ALTER TABLE audit_events DROP COLUMN row_hash",
            "DROP TABLE audit_chain_head",
            "ALTER TABLE disclosure_notes DROP COLUMN channel",
            "ALTER TABLE disclosure_notes DROP COLUMN origin",
        ):
            connection.execute(text(statement))
    old = _data(engine, ["disclosures", "outbox_messages"])
    init_db(engine)
    assert current_revision(engine) == "0002"
    assert _data(engine, ["disclosures", "outbox_messages"]) == old
    verdict = verify_chain(engine)
    assert verdict.ok and verdict.rows == 9
    engine.dispose()
    from bot.safeguarding.cases import read_case

    assert read_case(settings, references[WORDS[1]], actor="t").text == WORDS[1]


def _start_together(url: str, count: int) -> list[subprocess.CompletedProcess]:
    code = (
        "import sys\n"
        "from bot.safeguarding.store import create_engine_for, init_db, current_revision\n"
        "engine = create_engine_for(sys.argv[1])\n"
        "init_db(engine)\n"
        "print(current_revision(engine))\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(count)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


@pytest.mark.parametrize("made_by", ["fresh", "release"])
def test_processes_starting_at_once_migrate_once(database, made_by):
    """Rasa, the action server, the worker and the desk all call init_db at start-up."""
    settings, _ = database
    if made_by == "release":
        _fill_like_the_release(settings)
    results = _start_together(settings.database_url, 4)
    for result in results:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "0002"
    engine = _engine(settings.database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        assert connection.execute(text("SELECT count(*) FROM audit_chain_head")).scalar() == 1
    assert verify_chain(engine).ok
    engine.dispose()


def test_the_db_commands_say_where_the_schema_is_and_upgrade_it(make_settings, monkeypatch, capsys):
    from bot.cli import main

    settings = make_settings()
    _fill_like_the_release(settings)
    monkeypatch.setenv("SCHOOLGUIDE_DATABASE_URL", settings.database_url)
    assert main(["db", "current"]) == 1
    assert "first release" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "to 0002" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert "0002 (newest)" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "up to date" in capsys.readouterr().out
