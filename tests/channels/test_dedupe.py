"""The seen-events table behind Slack's and Teams' "answer each event once" (bot/channels/dedupe.py).

Real SQLite files under tmp_path, real separate processes racing for the same key, and the same on the real
PostgreSQL server when one is reachable (``postgres_url`` in tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from bot.channels.dedupe import EventDeduplicator, RecentKeys, SeenEvents


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tracker_db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'tracker.db'}"


def test_a_key_is_claimed_once_across_instances_and_restarts(tracker_db, tmp_path):
    clock = Clock()
    first = SeenEvents(tracker_db, "slack", clock=clock)
    assert first.first_delivery(["event:Ev1", "message:D1:1.0"])
    assert not first.first_delivery(["event:Ev1"])
    first.dispose()  # the process stops

    restarted = SeenEvents(tracker_db, "slack", clock=clock)
    assert not restarted.first_delivery(["event:Ev1"])
    # The same message as another event: any key already claimed makes it a repeat...
    assert not restarted.first_delivery(["event:Ev2", "message:D1:1.0"])
    assert not restarted.first_delivery(["event:Ev2"])  # ...and its own id is remembered too
    # Channels do not share keys.
    assert SeenEvents(tracker_db, "teams", clock=clock).first_delivery(["event:Ev1"])
    with sqlite3.connect(tmp_path / "var" / "tracker.db") as raw:
        keys = sorted(row[0] for row in raw.execute("SELECT event_key FROM schoolguide_seen_events"))
    assert keys == ["slack:event:Ev1", "slack:event:Ev2", "slack:message:D1:1.0", "teams:event:Ev1"]


def test_keys_are_forgotten_after_an_hour(tracker_db, tmp_path):
    clock = Clock()
    seen = SeenEvents(tracker_db, "slack", clock=clock)
    assert seen.first_delivery(["event:Ev1"])
    clock.now += 59 * 60
    assert not seen.first_delivery(["event:Ev1"])
    clock.now += 2 * 60
    assert seen.first_delivery(["event:Ev1"])  # expired: a new delivery of it is handled again
    assert not seen.first_delivery(["event:Ev1"])
    # Expired rows of other events are purged as the table is used.
    assert seen.first_delivery(["event:Ev2"])
    clock.now += 2 * 3600
    assert seen.first_delivery(["event:Ev3"])
    with sqlite3.connect(tmp_path / "var" / "tracker.db") as raw:
        keys = [row[0] for row in raw.execute("SELECT event_key FROM schoolguide_seen_events")]
    assert keys == ["slack:event:Ev3"]


def test_long_keys_are_hashed_and_stay_distinct(tracker_db):
    seen = SeenEvents(tracker_db, "teams")
    conversation = "19:" + "x" * 400 + "@thread.tacv2"
    assert seen.first_delivery([f"activity:{conversation}:1"])
    assert seen.first_delivery([f"activity:{conversation}:2"])
    assert not seen.first_delivery([f"activity:{conversation}:1"])


def test_no_keys_and_empty_keys_are_first_deliveries(tracker_db):
    seen = SeenEvents(tracker_db, "slack")
    assert seen.first_delivery([]) and seen.first_delivery([None, ""])


def test_an_unusable_database_means_handling_the_event_not_dropping_it(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    seen = SeenEvents(f"sqlite:///{blocker / 'tracker.db'}", "slack")
    assert seen.first_delivery(["event:Ev1"])
    assert seen.first_delivery(["event:Ev1"])  # no memory at all, so answered again rather than never
    assert "cannot check" in caplog.text


async def test_the_in_memory_lru_answers_repeats_without_the_database(tracker_db, monkeypatch):
    dedupe = EventDeduplicator("slack", tracker_db)
    assert not await dedupe.is_repeat(["event:Ev1"])
    calls = []
    monkeypatch.setattr(dedupe.durable, "first_delivery", lambda keys: calls.append(keys) or True)
    assert await dedupe.is_repeat(["event:Ev1"]) and calls == []
    assert not await dedupe.is_repeat(["event:Ev2"]) and calls == [["event:Ev2"]]
    # Without a database URL only this process remembers (the behaviour before the table existed).
    memory_only = EventDeduplicator("slack")
    assert memory_only.durable is None and isinstance(memory_only.recent, RecentKeys)
    assert not await memory_only.is_repeat(["event:Ev1"]) and await memory_only.is_repeat(["event:Ev1"])


def test_threads_with_their_own_connections_claim_a_key_once(tracker_db):
    instances = [SeenEvents(tracker_db, "slack") for _ in range(6)]
    for number, instance in enumerate(instances):  # create the table first, like a running server has
        instance.first_delivery([f"warm-up:{number}"])
    for attempt in range(5):
        barrier = threading.Barrier(len(instances))
        results: list[bool] = []

        def claim(instance, attempt=attempt, barrier=barrier, results=results):
            barrier.wait()
            results.append(instance.first_delivery([f"event:Ev{attempt}", f"message:D1:{attempt}"]))

        threads = [threading.Thread(target=claim, args=(instance,)) for instance in instances]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(results) == [False] * (len(instances) - 1) + [True]


CLAIM_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from bot.channels.dedupe import SeenEvents

    url, start, keys = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
    seen = SeenEvents(url, "slack")
    seen.first_delivery(["warm-up"])  # connect and create the table before the race
    while time.time() < start:
        time.sleep(0.001)
    print(json.dumps([seen.first_delivery(batch) for batch in keys]))
    """
)


def _race(url: str, processes: int = 4) -> list[list[bool]]:
    keys = [[f"event:Ev{n}", f"message:D9:{n}"] for n in range(20)]
    start = time.time() + 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM_SCRIPT, url, str(start), json.dumps(keys)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        for _ in range(processes)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_separate_processes_racing_for_the_same_events_handle_each_once(
    tracker_db, project_root, monkeypatch
):
    monkeypatch.chdir(project_root)
    results = _race(tracker_db)
    for event in range(20):
        assert sum(result[event] for result in results) == 1


@pytest.mark.postgres
def test_on_postgresql_too(postgres_url, project_root, monkeypatch):
    clock = Clock()
    seen = SeenEvents(postgres_url, "slack", clock=clock)
    assert seen.first_delivery(["event:Ev1"]) and not seen.first_delivery(["event:Ev1"])
    clock.now += 3601
    assert seen.first_delivery(["event:Ev1"])
    seen.dispose()
    monkeypatch.chdir(project_root)
    for event, claims in enumerate(zip(*_race(postgres_url), strict=True)):
        assert sum(claims) == 1, event
