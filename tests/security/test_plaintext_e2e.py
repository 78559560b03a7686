"""Finding 3 through the real servers (`schoolguide run`, both servers at DEBUG): after disclosures and
contact details are sent, the bytes of the tracker store and of every log contain none of the words, while the
DSL can read every one of them from the encrypted store."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from sqlalchemy import create_engine, text

from bot.safeguarding.cases import list_cases, read_case
from bot.settings import Settings

pytestmark = pytest.mark.e2e

PUPIL = ("my step dad hits me when mum is at work", {"school": "lunsford", "audience": "pupil"})
PARENT = ("someone is sharing nudes of my daughter on snapchat", {"school": "scotts", "audience": "parent"})
STAFF = (
    "A year 5 girl just told me an adult she met on Roblox asked her for photos",
    {"school": "lseat", "audience": "staff"},
)
CONTACT = "Amy Lowe in class 5B"


def _stack_helpers():
    """tests/conftest.py's start_stack / stop_stack (a conftest cannot be imported by name)."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    module = next((m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(path)), None)
    if module is None:
        spec = importlib.util.spec_from_file_location("schoolguide_plaintext_stack_helpers", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def debug_stack(project_root, tmp_path_factory):
    """A stack of its own at DEBUG, where Rasa logs the words of every message it handles."""
    helpers = _stack_helpers()
    env = {
        "LOG_LEVEL": "DEBUG",
        "SCHOOLGUIDE_RATE_LIMIT_PER_SENDER": "0",
        "SCHOOLGUIDE_RATE_LIMIT_PER_IP": "0",
    }
    stack, proc = helpers.start_stack(project_root, tmp_path_factory.mktemp("plaintext") / "var", env)
    try:
        yield stack
    finally:
        helpers.stop_stack(proc)


def _settings_for(stack) -> Settings:
    with mock.patch.dict(os.environ, stack.env, clear=True):
        return Settings.from_env()


def _texts(replies) -> str:
    return " ".join(reply.get("text", "") for reply in replies)


def _everything_on_disk(var_dir: Path) -> dict[Path, bytes]:
    """The tracker store with its journals, and every log file, under the stack's folder."""
    files = [*var_dir.glob("tracker.db*"), *var_dir.rglob("*.log")]
    return {path: path.read_bytes() for path in files if path.is_file()}


def test_no_disclosure_or_contact_detail_is_left_in_the_tracker_store_or_any_log(debug_stack):
    replies = debug_stack.say("plain-pupil", *PUPIL)
    assert "0800 1111" in _texts(replies), replies
    thanks = debug_stack.say("plain-pupil", CONTACT, PUPIL[1])
    assert "amy" not in _texts(thanks).lower()
    for sender, (words, metadata) in (("plain-parent", PARENT), ("plain-staff", STAFF)):
        assert debug_stack.say(sender, words, metadata), words
    time.sleep(4)  # a few worker passes (every second here): reconcile and redaction have run

    settings = _settings_for(debug_stack)
    cases = {
        case.reference: read_case(settings, case.reference, actor="e2e")
        for case in list_cases(settings, actor="e2e")
    }
    stored = {case.text for case in cases.values()}
    assert {PUPIL[0], PARENT[0], STAFF[0]} <= stored, "every disclosure is with the DSL, readable"
    assert any(CONTACT in [note["text"] for note in case.contact or ()] for case in cases.values())

    on_disk = _everything_on_disk(settings.var_dir)
    assert any(path.name == "tracker.db" for path in on_disk) and any(
        path.suffix == ".log" for path in on_disk
    )
    assert b"Received user message" in b"".join(on_disk.values()) or b"DEBUG" in b"".join(on_disk.values())
    for words in (PUPIL[0], PARENT[0], STAFF[0], CONTACT):
        leaks = [str(path) for path, data in on_disk.items() if words.encode() in data]
        assert leaks == [], f"{words!r} found in {leaks}"

    # Every disclosure the store holds stands there as its reference, never as its words.
    engine = create_engine(settings.tracker_database_url, future=True)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT data FROM events WHERE type_name = 'user' AND intent_name = 'disclose'")
        ).all()
    engine.dispose()
    assert len(rows) >= 3
    assert all('"text": "[disclosure SG-' in row.data for row in rows), [row.data[:80] for row in rows]
