"""Finding 7: the audit trail is tamper-evident. Once the append-only triggers are dropped (as an attacker
with the database would), an edited, deleted or reordered row, or a renamed actor, is found by
``schoolguide disclosures verify-audit``, on SQLite and on the real PostgreSQL server. Appends from several
writers at once never fork the chain, and a database from before the chain is upgraded in place."""

from __future__ import annotations

import argparse
import dataclasses
import socket
import threading

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from bot.safeguarding import cli
from bot.safeguarding.cases import acknowledge, read_case
from bot.safeguarding.service import record_disclosure
from bot.safeguarding.store import dispose_engines, get_engine
from bot.settings import Settings

WORDS = "my teacher says our chats are a secret"


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    dispose_engines()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path) -> Settings:
    var_dir = tmp_path / "var"
    database_url = f"sqlite:///{var_dir / 'schoolguide.db'}"
    if request.param == "postgresql":
        database_url = request.getfixturevalue("postgres_url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    return dataclasses.replace(
        Settings.from_env(),
        home=tmp_path,
        var_dir=var_dir,
        database_url=database_url,
        tracker_database_url=f"sqlite:///{var_dir / 'tracker.db'}",
        encryption_key=Fernet.generate_key().decode(),
        spool_dir=var_dir / "spool",
        dsl_emails=("dsl@lunsford.example",),
        smtp_host="127.0.0.1",
        smtp_port=closed_port,
        alert_webhook_url=None,
    )


@pytest.fixture
def verify(settings, monkeypatch, capsys):
    """``schoolguide disclosures verify-audit`` through the real parser; returns (exit code, output)."""
    monkeypatch.setenv("SCHOOLGUIDE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SCHOOLGUIDE_VAR_DIR", str(settings.var_dir))

    def invoke() -> tuple[int, str]:
        parser = argparse.ArgumentParser(prog="schoolguide")
        cli.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["disclosures", "verify-audit"])
        capsys.readouterr()
        code = args.func(args)
        return code, capsys.readouterr().out

    return invoke


def _disclose(settings: Settings, message_id: str = "msg-1") -> str:
    return record_disclosure(
        settings,
        school="lunsford",
        audience="pupil",
        channel="pupil",
        sender_id="pupil-conv-1",
        message_id=message_id,
        text=WORDS,
        context=[],
        categories=["bullying"],
        risk="medium",
    ).reference


def _trail(settings: Settings) -> list[int]:
    """Five audit rows: two disclosures created, read, acknowledged; returns their ids in order."""
    first, second = _disclose(settings), _disclose(settings, "msg-2")
    read_case(settings, first, actor="dsl")
    acknowledge(settings, first, actor="dsl")
    read_case(settings, second, actor="deputy")
    with get_engine(settings.database_url).connect() as connection:
        return list(connection.execute(text("SELECT id FROM audit_events ORDER BY id")).scalars())


def _tamper(settings: Settings, *statements: str, **params) -> None:
    """Drop the append-only triggers, as an attacker would, then run ``statements``."""
    engine = get_engine(settings.database_url)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text("DROP TRIGGER audit_events_no_update"))
            connection.execute(text("DROP TRIGGER audit_events_no_delete"))
        else:
            connection.execute(text("DROP TRIGGER audit_events_append_only ON audit_events"))
        for statement in statements:
            connection.execute(text(statement), params)


def test_an_untouched_trail_verifies(settings, verify):
    ids = _trail(settings)
    code, out = verify()
    assert code == 0, out
    assert out.startswith(f"OK: {len(ids)} audit event(s), chain intact; head ")


def test_an_edited_row_is_found(settings, verify):
    ids = _trail(settings)
    _tamper(settings, "UPDATE audit_events SET detail = :detail WHERE id = :id", detail="{}", id=ids[2])
    code, out = verify()
    assert code == 1 and f"row id {ids[2]}:" in out and "edited" in out


def test_a_renamed_actor_is_found(settings, verify):
    ids = _trail(settings)
    _tamper(settings, "UPDATE audit_events SET actor = 'someone else' WHERE actor = 'deputy'")
    code, out = verify()
    assert code == 1 and f"row id {ids[4]}:" in out


def test_a_deleted_row_is_found(settings, verify):
    ids = _trail(settings)
    _tamper(settings, "DELETE FROM audit_events WHERE id = :id", id=ids[1])
    code, out = verify()
    assert code == 1 and f"row id {ids[2]}:" in out and "deleted" in out


def test_deleting_the_newest_rows_is_found(settings, verify):
    ids = _trail(settings)
    _tamper(settings, "DELETE FROM audit_events WHERE id >= :id", id=ids[3])
    code, out = verify()
    assert code == 1 and "newest rows deleted" in out


def test_reordered_rows_are_found(settings, verify):
    """Two whole rows (hashes included) change places in the table's order."""
    ids = _trail(settings)
    a, b = ids[2], ids[3]
    _tamper(
        settings,
        "UPDATE audit_events SET id = -1 WHERE id = :a",
        "UPDATE audit_events SET id = :a WHERE id = :b",
        "UPDATE audit_events SET id = :b WHERE id = -1",
        a=a,
        b=b,
    )
    code, out = verify()
    assert code == 1 and "out of order" in out


def test_swapped_contents_are_found(settings, verify):
    """Two rows keep their places but trade what they say happened."""
    ids = _trail(settings)
    a, b = ids[1], ids[2]
    engine = get_engine(settings.database_url)
    with engine.connect() as connection:
        rows = {
            row.id: row
            for row in connection.execute(
                text("SELECT id, action, actor FROM audit_events WHERE id IN (:a, :b)"), {"a": a, "b": b}
            )
        }
    _tamper(
        settings,
        "UPDATE audit_events SET action = :action_b, actor = :actor_b WHERE id = :a",
        "UPDATE audit_events SET action = :action_a, actor = :actor_a WHERE id = :b",
        a=a,
        b=b,
        action_a=rows[a].action,
        actor_a=rows[a].actor,
        action_b=rows[b].action,
        actor_b=rows[b].actor,
    )
    code, out = verify()
    assert code == 1 and f"row id {a}:" in out


def test_concurrent_writers_never_fork_the_chain(settings, verify):
    references = [_disclose(settings, f"m{i}") for i in range(3)]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def reader(n: int) -> None:
        try:
            barrier.wait()
            for reference in references * 2:
                read_case(settings, reference, actor=f"reader-{n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    code, out = verify()
    assert code == 0, out
    assert out.startswith("OK: 27 audit event(s)")  # 3 created + 4 readers x 6 reads


def _make_pre_chain_database(settings: Settings) -> list[int]:
    """A database as the release before the chain left it: audit rows, triggers, no chain columns."""
    ids = _trail(settings)
    engine = get_engine(settings.database_url)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_audit_events_seq"))
        for column in ("seq", "prev_hash", "row_hash"):
            connection.execute(text(f"ALTER TABLE audit_events DROP COLUMN {column}"))
        connection.execute(text("DROP TABLE audit_chain_head"))
    dispose_engines()
    return ids


def test_a_database_from_before_the_chain_is_upgraded_in_place(settings, verify):
    ids = _make_pre_chain_database(settings)
    code, out = verify()  # opening it upgrades it
    assert code == 0, out
    assert out.startswith(f"OK: {len(ids)} audit event(s)")
    engine = get_engine(settings.database_url)
    with engine.connect() as connection:
        seqs = list(connection.execute(text("SELECT seq FROM audit_events ORDER BY id")).scalars())
    assert seqs == list(range(1, len(ids) + 1))
    # The triggers are back, and new events continue the chain.
    with pytest.raises(Exception, match="append-only"):
        with engine.begin() as connection:
            connection.execute(text("UPDATE audit_events SET actor = 'x'"))
    _disclose(settings, "after-upgrade")
    code, out = verify()
    assert code == 0 and out.startswith(f"OK: {len(ids) + 1} audit event(s)")
    # The old rows are protected too: editing one of them shows.
    _tamper(settings, "UPDATE audit_events SET actor = 'x' WHERE id = :id", id=ids[0])
    code, out = verify()
    assert code == 1 and f"row id {ids[0]}:" in out
