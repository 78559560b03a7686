"""Database down: the disclosure goes to the spool, survives, and is replayed exactly once."""

from __future__ import annotations

import dataclasses
import json
import stat

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.safeguarding import service
from bot.safeguarding.cases import read_case
from bot.safeguarding.service import replay_spool
from bot.safeguarding.spool import Spool
from bot.safeguarding.store import AuditEvent, Disclosure, OutboxMessage, get_engine

WORDS = "someone is sharing my nudes"


def _count(settings, model=Disclosure) -> int:
    with Session(get_engine(settings.database_url), future=True) as session:
        return session.execute(select(func.count(model.id))).scalar_one()


def test_unreachable_postgres_spools_then_replays_exactly_once(down_postgres, any_settings, record, caplog):
    with caplog.at_level("ERROR"):
        spooled = record(down_postgres, text=WORDS)
    assert spooled.stored == "spool" and spooled.created
    assert "database unavailable" in caplog.text

    spool_file = down_postgres.spool_dir / "disclosures.jsonl"
    assert stat.S_IMODE(spool_file.stat().st_mode) == 0o600
    raw = spool_file.read_text()
    assert WORDS not in raw  # encrypted in the spool too
    assert json.loads(raw)["reference"] == spooled.reference

    # Replaying while the database is still down keeps the record.
    assert replay_spool(down_postgres).remaining == 1
    assert len(Spool(down_postgres.spool_dir).records()) == 1

    # The database is back (same spool, reachable database).
    back = dataclasses.replace(down_postgres, database_url=any_settings.database_url)
    report = replay_spool(back)
    assert (report.replayed, report.already_recorded, report.remaining) == (1, 0, 0)
    assert _count(back) == 1
    case = read_case(back, spooled.reference, actor="test")
    assert case.text == WORDS and case.source == "spool" and case.reference == spooled.reference
    assert _count(back, OutboxMessage) == 2  # alerts queued on replay
    assert not spool_file.exists()

    again = replay_spool(back)
    assert (again.replayed, again.already_recorded, again.remaining) == (0, 0, 0)
    assert _count(back) == 1


def test_sqlite_under_a_file_spools_then_replays(make_settings, tmp_path, record):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database directory should be")
    broken = make_settings(database_url=f"sqlite:///{blocker / 'db' / 'schoolguide.db'}")
    result = record(broken)
    assert result.stored == "spool"

    blocker.unlink()  # the administrator fixes the path
    report = replay_spool(broken)
    assert report.replayed == 1
    assert read_case(broken, result.reference, actor="test").source == "spool"


def test_same_message_spooled_twice_gets_one_reference(down_postgres, record):
    first = record(down_postgres)
    second = record(down_postgres)
    assert second.reference == first.reference and not second.created
    assert len(Spool(down_postgres.spool_dir).records()) == 1


def test_crash_between_commit_and_marking_replayed_does_not_duplicate(
    down_postgres, settings, record, monkeypatch
):
    spooled = [record(down_postgres, message_id=f"m{i}").reference for i in range(3)]
    back = dataclasses.replace(down_postgres, database_url=settings.database_url)

    calls = []
    real_mark = Spool.mark_replayed

    def crash_on_second(self, reference):
        calls.append(reference)
        if len(calls) == 2:
            raise SystemExit("power cut")  # after the second record's commit, before its marker
        real_mark(self, reference)

    monkeypatch.setattr(Spool, "mark_replayed", crash_on_second)
    with pytest.raises(SystemExit):
        replay_spool(back)
    monkeypatch.setattr(Spool, "mark_replayed", real_mark)
    assert _count(back) == 2
    # The file was not touched by the crashed replay: all three records are still there.
    assert len(Spool(back.spool_dir).records()) == 2  # one marked replayed, two not

    report = replay_spool(back)
    assert (report.replayed, report.already_recorded, report.remaining) == (1, 1, 0)
    with Session(get_engine(back.database_url), future=True) as session:
        references = set(session.execute(select(Disclosure.reference)).scalars())
        created = session.execute(select(func.count()).where(AuditEvent.action == "created")).scalar_one()
    assert references == set(spooled)
    assert created == 3


def test_replay_into_database_that_already_has_the_message(down_postgres, settings, record):
    """The action spooled it, then something else recorded the same message in the database."""
    spooled = record(down_postgres)
    back = dataclasses.replace(down_postgres, database_url=settings.database_url)
    direct = record(back)
    assert direct.stored == "database"
    report = replay_spool(back)
    assert (report.replayed, report.already_recorded) == (0, 1)
    assert _count(back) == 1
    assert spooled.reference != direct.reference


def test_torn_line_is_kept_aside_not_lost(down_postgres, settings, record):
    spool_file = down_postgres.spool_dir / "disclosures.jsonl"
    record(down_postgres, message_id="m1")
    with open(spool_file, "a") as handle:
        handle.write('{"reference": "SG-TORN')  # a write cut short by a power failure
    record(down_postgres, message_id="m2")  # starts on a fresh line
    assert len(Spool(down_postgres.spool_dir).records()) == 2

    back = dataclasses.replace(down_postgres, database_url=settings.database_url)
    assert replay_spool(back).replayed == 2
    corrupt = (down_postgres.spool_dir / "corrupt.jsonl").read_text()
    assert '{"reference": "SG-TORN' in corrupt


def test_unusable_key_spools_unencrypted_rather_than_lose(make_settings, record, caplog):
    settings = make_settings(encryption_key="this is not a fernet key")
    with caplog.at_level("CRITICAL"):
        result = record(settings, text=WORDS)
    assert result.stored == "spool"
    assert "UNENCRYPTED" in caplog.text
    assert replay_spool(settings).remaining == 1  # still no usable key: it waits

    fixed = make_settings()
    fixed = dataclasses.replace(fixed, spool_dir=settings.spool_dir)
    assert replay_spool(fixed).replayed == 1
    assert read_case(fixed, result.reference, actor="test").text == WORDS
    with Session(get_engine(fixed.database_url), future=True) as session:
        stored = session.execute(select(Disclosure.text_encrypted)).scalar_one()
    assert WORDS not in stored


def test_spool_failure_too_is_logged_critically_never_raised(down_postgres, tmp_path, record, caplog):
    blocker = tmp_path / "spool-is-a-file"
    blocker.write_text("")
    hopeless = dataclasses.replace(down_postgres, spool_dir=blocker / "spool")
    with caplog.at_level("CRITICAL"):
        result = record(hopeless, sender_id="conv-9", message_id="msg-9")
    assert result.stored == "log" and not result.created
    assert "DISCLOSURE NOT STORED" in caplog.text and "conv-9" in caplog.text and "msg-9" in caplog.text
    assert WORDS not in caplog.text


def test_unexpected_database_errors_also_fall_back_to_the_spool(settings, record, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the storage code")

    monkeypatch.setattr(service, "store_in_database", broken)
    result = record(settings)
    assert result.stored == "spool"
    monkeypatch.undo()
    assert replay_spool(settings).replayed == 1
    assert _count(settings) == 1
