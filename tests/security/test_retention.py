"""Finding 3: the tracker store kept every conversation "with no retention limit".

The worker deletes conversations older than SCHOOLGUIDE_RETENTION_DAYS from Rasa's tracker store (a store
written by Rasa's own SQLTrackerStore); disclosure records are kept, and a disclosure is never deleted before
it is recorded.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from bot.safeguarding import worker
from bot.safeguarding.cases import list_cases, read_case
from bot.safeguarding.retention import purge_old_conversations
from bot.safeguarding.store import utcnow
from bot.settings import Settings

DAY = 86400
WORDS = "my uncle touches me and says not to tell"


@pytest.fixture(scope="module")
def rasa():
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, SessionStarted, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    domain = Domain.from_dict(
        {
            "intents": ["greet", "disclose"],
            "slots": {"school": {"type": "any", "mappings": [{"type": "custom"}]}},
        }
    )
    return dataclasses.make_dataclass(
        "Rasa", ["store", "tracker", "domain", "action", "start", "slot", "user"]
    )(SQLTrackerStore, DialogueStateTracker, domain, ActionExecuted, SessionStarted, SlotSet, UserUttered)


@pytest.fixture
def settings(tmp_path) -> Settings:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    return dataclasses.replace(
        Settings.from_env(),
        home=tmp_path,
        var_dir=var_dir,
        database_url=f"sqlite:///{var_dir / 'schoolguide.db'}",
        tracker_database_url=f"sqlite:///{var_dir / 'tracker.db'}",
        encryption_key=Fernet.generate_key().decode(),
        spool_dir=var_dir / "spool",
        dsl_emails=(),
        smtp_host=None,
        alert_webhook_url=None,
        retention_days=30,
    )


def _session(rasa, start: float, words: str = "hello there", intent: str = "greet", message_id: str = "m"):
    return [
        rasa.action("action_session_start", timestamp=start),
        rasa.start(timestamp=start),
        rasa.slot("school", "lunsford", timestamp=start + 1),
        rasa.action("action_listen", timestamp=start + 2),
        rasa.user(
            words, intent={"name": intent, "confidence": 0.9}, timestamp=start + 3, message_id=message_id
        ),
    ]


async def _save(rasa, settings, sender: str, events) -> None:
    store = rasa.store(rasa.domain, dialect="sqlite", db=str(settings.var_dir / "tracker.db"))
    await store.save(rasa.tracker.from_events(sender, events, slots=rasa.domain.slots))
    store.engine.dispose()


def _rows(settings) -> list[tuple[str, float]]:
    engine = create_engine(settings.tracker_database_url, future=True)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT sender_id, timestamp FROM events ORDER BY id")).all()
    engine.dispose()
    return [(row.sender_id, row.timestamp) for row in rows]


async def test_old_conversations_go_recent_ones_and_current_sessions_stay(rasa, settings):
    now = time.time()
    await _save(rasa, settings, "old", _session(rasa, now - 40 * DAY))
    await _save(rasa, settings, "recent", _session(rasa, now - 2 * DAY))
    # A conversation that has gone on for weeks: its old session goes, its current session stays whole.
    await _save(
        rasa, settings, "long", _session(rasa, now - 45 * DAY, message_id="a") + _session(rasa, now - DAY)
    )

    report = purge_old_conversations(settings)
    assert report.deleted == 10
    rows = _rows(settings)
    assert {sender for sender, _ in rows} == {"recent", "long"}
    assert all(stamp >= now - 2 * DAY for _, stamp in rows)
    assert sum(1 for sender, _ in rows if sender == "long") == 5


async def test_an_old_disclosure_is_recorded_before_its_conversation_is_deleted(rasa, settings):
    await _save(rasa, settings, "pupil-1", _session(rasa, time.time() - 40 * DAY, WORDS, "disclose", "m-old"))
    report = purge_old_conversations(settings)
    assert report.deleted == 5 and report.kept_unrecorded == 0
    assert _rows(settings) == []
    [case] = list_cases(settings, actor="test")  # the record stays: schools set their own retention
    assert read_case(settings, case.reference, actor="test").text == WORDS


async def test_a_disclosure_that_cannot_be_recorded_is_kept(rasa, settings, tmp_path):
    await _save(rasa, settings, "pupil-1", _session(rasa, time.time() - 40 * DAY, WORDS, "disclose", "m-old"))
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    broken = dataclasses.replace(
        settings,
        database_url="postgresql+psycopg2://postgres@127.0.0.1:9/nowhere",
        spool_dir=blocker / "spool",
    )
    with pytest.raises(Exception):  # noqa: B017 - whatever the database error, nothing may be deleted
        purge_old_conversations(broken)
    assert len(_rows(settings)) == 5


async def test_retention_zero_keeps_everything(rasa, settings):
    await _save(rasa, settings, "old", _session(rasa, time.time() - 400 * DAY))
    assert purge_old_conversations(dataclasses.replace(settings, retention_days=0)).deleted == 0
    assert len(_rows(settings)) == 5


async def test_the_worker_runs_retention_about_hourly(rasa, settings, monkeypatch):
    monkeypatch.setattr(worker, "_last_retention", {})
    await _save(rasa, settings, "old", _session(rasa, time.time() - 40 * DAY))
    report = worker.run_once(settings)
    assert report.ok, report.errors
    assert report.results["retention"].deleted == 5
    await _save(rasa, settings, "old-2", _session(rasa, time.time() - 40 * DAY))
    assert worker.run_once(settings).results["retention"] is None  # not due yet
    later = worker.run_once(settings, now=utcnow() + timedelta(hours=1, minutes=1))
    assert later.results["retention"].deleted == 5


def test_retention_days_setting(monkeypatch):
    monkeypatch.setenv("SCHOOLGUIDE_RETENTION_DAYS", "7")
    assert Settings.from_env().retention_days == 7
    monkeypatch.delenv("SCHOOLGUIDE_RETENTION_DAYS")
    assert Settings.from_env().retention_days == 30
    monkeypatch.setenv("SCHOOLGUIDE_RETENTION_DAYS", "-1")
    with pytest.raises(ValueError, match="RETENTION_DAYS"):
        Settings.from_env()
