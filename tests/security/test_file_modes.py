"""Finding 3: "Database files are 0644 and the key sits in the same folder."

The runtime folder is 0700; both SQLite databases (and their journals), the spool and the key are 0600, from
the moment they are created, whatever the process umask; files left by an older release are narrowed by the
worker.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.safeguarding.crypto import load_cipher
from bot.safeguarding.file_modes import SECRET_FILE_NAMES, secure_runtime_files, write_private
from bot.safeguarding.service import record_disclosure
from bot.safeguarding.store import get_engine
from bot.safeguarding.worker import run_once
from bot.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask():
    """The usual default (files 0644, folders 0755): the modes must not depend on it."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def settings(tmp_path) -> Settings:
    var_dir = tmp_path / "var"
    return dataclasses.replace(
        Settings.from_env(),
        home=tmp_path,
        var_dir=var_dir,
        database_url=f"sqlite:///{var_dir / 'schoolguide.db'}",
        tracker_database_url=f"sqlite:///{var_dir / 'tracker.db'}",
        encryption_key=None,  # the generated key file
        spool_dir=var_dir / "spool",
        dsl_emails=(),
        smtp_host=None,
        alert_webhook_url=None,
    )


def _disclose(settings, message_id="m-1"):
    return record_disclosure(
        settings,
        school="lunsford",
        audience="pupil",
        channel="pupil",
        sender_id="pupil-1",
        message_id=message_id,
        text="someone is sharing my photos",
    )


def test_key_database_and_journals_are_owner_only_from_creation(settings, permissive_umask):
    assert _disclose(settings).stored == "database"
    var_dir = settings.var_dir
    assert mode(var_dir) == 0o700
    assert mode(var_dir / "secret.key") == 0o600
    assert mode(var_dir / "schoolguide.db") == 0o600
    # SQLite gives its WAL and shared-memory files the database file's mode.
    with get_engine(settings.database_url).connect() as connection:
        connection.execute(text("SELECT 1"))
        companions = [path for path in var_dir.glob("schoolguide.db-*")]
        assert companions, "expected the WAL files of an open database"
        assert {mode(path) for path in companions} == {0o600}


def test_spool_files_are_owner_only(settings, permissive_umask, tmp_path):
    down = dataclasses.replace(settings, database_url="postgresql+psycopg2://postgres@127.0.0.1:9/nowhere")
    assert _disclose(down).stored == "spool"
    assert mode(settings.var_dir) == 0o700
    assert mode(settings.spool_dir) == 0o700
    assert {mode(path) for path in settings.spool_dir.iterdir()} == {0o600}


def test_the_tracker_store_is_created_owner_only(settings, permissive_umask):
    from rasa.shared.core.domain import Domain

    from bot.safeguarding.tracker_store import RedactingTrackerStore

    store = RedactingTrackerStore(Domain.empty(), dialect="sqlite", db=str(settings.var_dir / "tracker.db"))
    store.engine.dispose()
    assert mode(settings.var_dir / "tracker.db") == 0o600


def test_the_worker_narrows_files_left_by_an_older_release(settings, permissive_umask):
    settings.var_dir.mkdir(mode=0o755)
    os.chmod(settings.var_dir, 0o755)
    for name in ("secret.key", "widget.key", "action-server.secret", "endpoints.yml", "credentials.yml"):
        (settings.var_dir / name).write_text("not read here")
    for name in ("schoolguide.db", "schoolguide.db-wal", "tracker.db", "tracker.db-journal"):
        (settings.var_dir / name).write_bytes(b"")
    settings.spool_dir.mkdir(mode=0o755)
    (settings.spool_dir / "disclosures.jsonl").write_text("{}\n")
    for path in [*settings.var_dir.iterdir(), *settings.spool_dir.iterdir()]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)

    assert run_once(settings).results.keys() >= {"file_modes"}  # the worker's pass, as it runs every time

    assert mode(settings.var_dir) == 0o700 and mode(settings.spool_dir) == 0o700
    for path in [*settings.var_dir.iterdir(), *settings.spool_dir.iterdir()]:
        if path.is_file():
            assert mode(path) == 0o600, path


def test_an_existing_key_file_is_narrowed_when_read(settings, permissive_umask):
    load_cipher(settings)
    key = settings.var_dir / "secret.key"
    os.chmod(key, 0o644)
    load_cipher(settings)
    assert mode(key) == 0o600


def test_schoolguide_run_writes_a_private_runtime_folder(settings, permissive_umask):
    from bot.runner import write_endpoints

    write_endpoints(settings)
    assert mode(settings.var_dir) == 0o700


def _write_every_generated_secret(settings) -> None:
    """Everything SchoolGuide generates into var/ when no secret is configured."""
    from bot.action_auth import load_action_secret
    from bot.channels.identity import conversation_ids
    from bot.runner import write_credentials, write_endpoints

    load_cipher(settings)
    conversation_ids(settings)
    load_action_secret(settings)
    write_endpoints(settings)
    write_credentials(settings)


def test_every_secret_file_the_project_writes_is_in_the_one_list(settings, permissive_umask):
    unconfigured = dataclasses.replace(settings, action_server_secret=None, widget_secret=None)
    _write_every_generated_secret(unconfigured)
    written = {path.name for path in settings.var_dir.iterdir() if path.is_file()}
    assert written == set(SECRET_FILE_NAMES)  # nothing else is written there before a database is opened
    assert {name: mode(settings.var_dir / name) for name in written} == {name: 0o600 for name in written}

    # ...so the worker's pass covers every one of them.
    for name in written:
        os.chmod(settings.var_dir / name, 0o644)
    secure_runtime_files(unconfigured)
    assert {name: mode(settings.var_dir / name) for name in written} == {name: 0o600 for name in written}


@pytest.mark.parametrize("writer", ["write_endpoints", "write_credentials"])
@pytest.mark.parametrize("older_file", [False, True], ids=["new", "older-0644"])
def test_generated_configuration_is_private_before_any_chmod(
    settings, permissive_umask, monkeypatch, writer, older_file
):
    """No umask window: with every chmod skipped (as if the process stopped right after writing), the file
    holding the secrets is still 0600, new or replacing an older world-readable one."""
    import bot.runner

    settings = dataclasses.replace(settings, rest_token="rest-token-0123456789abcdef")
    name = {"write_endpoints": "endpoints.yml", "write_credentials": "credentials.yml"}[writer]
    path = settings.var_dir / name
    if older_file:
        settings.var_dir.mkdir(mode=0o700)
        path.write_text("old: file\n")
        os.chmod(path, 0o644)
    monkeypatch.setattr(Path, "chmod", lambda self, mode, **kwargs: None)
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)

    assert getattr(bot.runner, writer)(settings) == path
    assert mode(path) == 0o600
    assert "old: file" not in path.read_text()
    assert not [p for p in settings.var_dir.iterdir() if p.name.startswith(".")]  # no staging file left


def test_a_secret_file_is_never_written_through_a_symlink(settings, permissive_umask):
    from bot.runner import write_credentials

    settings = dataclasses.replace(settings, rest_token="rest-token-0123456789abcdef")
    elsewhere = settings.home / "elsewhere.txt"
    elsewhere.write_text("someone else's file\n")
    os.chmod(elsewhere, 0o644)
    settings.var_dir.mkdir(mode=0o700)
    (settings.var_dir / "credentials.yml").symlink_to(elsewhere)

    path = write_credentials(settings)

    assert elsewhere.read_text() == "someone else's file\n"  # the token did not land in a 0644 file
    assert not path.is_symlink() and mode(path) == 0o600
    assert "rest-token-0123456789abcdef" in path.read_text()


def test_write_private_under_a_strict_umask_is_exactly_0600(tmp_path):
    previous = os.umask(0o277)  # would leave a new file 0400
    try:
        path = write_private(tmp_path / "x.yml", "a: 1\n")
    finally:
        os.umask(previous)
    assert mode(path) == 0o600
    assert path.read_text() == "a: 1\n"
