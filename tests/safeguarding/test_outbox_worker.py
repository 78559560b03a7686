"""The hand-off worker: one pass does it all, the loop outlives failing steps, and wake() is prompt."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest

from bot.safeguarding import worker
from bot.safeguarding.cases import read_case
from bot.safeguarding.store import utcnow


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def background():
    started = []

    def start(settings):
        handle = worker.start_background_worker(settings)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()
    worker._current = None


def test_one_pass_replays_delivers_and_escalates(down_postgres, settings, record, smtp_server):
    reference = record(down_postgres).reference  # database down: spooled
    back = dataclasses.replace(down_postgres, database_url=settings.database_url)
    handler = smtp_server(back.smtp_port)

    report = worker.run_once(back)
    assert report.ok, report.errors
    assert report.results["replay"].replayed == 1
    assert report.results["deliver"].sent == 2
    assert report.results["escalate"] == 0
    assert len(handler.messages) == 2

    later = worker.run_once(back, now=utcnow() + timedelta(minutes=31))
    assert later.results["escalate"] == 1 and later.results["deliver_escalations"].sent == 1
    assert handler.messages[-1]["to"] == ["deputy@lunsford.example"]
    assert read_case(back, reference, actor="test").status == "new"


def test_a_failing_step_does_not_stop_the_others(settings, record, smtp_server, free_port):
    broken_tracker = dataclasses.replace(
        settings, tracker_database_url=f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/tracker"
    )
    record(broken_tracker)
    handler = smtp_server(settings.smtp_port)
    report = worker.run_once(broken_tracker)
    # Only the steps that read the tracker store fail (retention too, once it is due: see worker.py).
    assert {"reconcile"} <= set(report.errors) <= {"reconcile", "retention"}
    assert report.results["deliver"].sent == 2 and len(handler.messages) == 2


def test_background_worker_survives_errors_and_wake_sends_promptly(
    settings, record, smtp_server, free_port, background
):
    slow_and_broken = dataclasses.replace(
        settings,
        worker_interval_seconds=3600,  # only wake() can make it run again within the test
        tracker_database_url=f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/tracker",
    )
    handler = smtp_server(settings.smtp_port)
    handle = background(slow_and_broken)
    assert worker.start_background_worker(slow_and_broken) is handle  # one per process
    assert handle.thread.daemon

    time.sleep(0.3)  # let the first (failing reconcile) pass finish
    record(slow_and_broken)
    assert worker.wake() is True
    assert _wait_for(lambda: len(handler.messages) == 2)
    assert handle.thread.is_alive()

    handle.stop()
    assert not handle.thread.is_alive()
    assert worker.wake() is False
