"""``schoolguide doctor`` and the start-up log name what a real deployment is missing (findings 3, 5, 6):
no DSL alert channel, REST open without a token, the key in its default file, SQLite."""

from __future__ import annotations

import dataclasses
import logging
import sys

import pytest

from bot import cli, doctor, runner
from bot.settings import Settings, get_settings

CLEARED = (
    "DSL_EMAILS",
    "DEPUTY_DSL_EMAILS",
    "SMTP_HOST",
    "ALERT_WEBHOOK_URL",
    "REST_TOKEN",
    "BIND_HOST",
    "ENCRYPTION_KEY",
    "DATABASE_URL",
    "TRACKER_DATABASE_URL",
)
POSTGRES = "postgresql+psycopg2://schoolguide@db.internal/schoolguide"


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A fresh clone's environment (nothing configured); returns a setter for SCHOOLGUIDE_* variables."""
    for name in CLEARED:
        monkeypatch.delenv(f"SCHOOLGUIDE_{name}", raising=False)
    monkeypatch.setenv("SCHOOLGUIDE_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"SCHOOLGUIDE_{name}", value)
        get_settings.cache_clear()

    yield set_env
    get_settings.cache_clear()


def _doctor(capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["doctor"])
    return code, capsys.readouterr().out


def test_a_fresh_clone_is_told_everything_it_lacks_with_exit_code_0(env, capsys, tmp_path):
    code, out = _doctor(capsys)
    assert code == 0
    assert "4 thing(s) missing" in out
    for area, words in (
        ("alerts", "no DSL alert channel"),
        ("rest", "SCHOOLGUIDE_REST_TOKEN"),
        ("encryption key", f"{tmp_path / 'var'}/secret.key"),
        ("database", "SQLite"),
    ):
        line = next(line for line in out.splitlines() if f"[{area}]" in line)
        assert words in line


def test_a_configured_deployment_has_nothing_missing(env, capsys):
    env(
        DSL_EMAILS="dsl@school.example",
        DEPUTY_DSL_EMAILS="deputy@school.example",
        SMTP_HOST="smtp.school.example",
        REST_TOKEN="a-long-random-token",
        ENCRYPTION_KEY="x" * 44,
        DATABASE_URL=POSTGRES,
        TRACKER_DATABASE_URL=POSTGRES,
    )
    code, out = _doctor(capsys)
    assert (code, out.strip()) == (0, "schoolguide doctor: nothing missing for a real deployment.")
    # Secrets are checked for presence, never printed.
    assert "a-long-random-token" not in out and "x" * 44 not in out


def test_dsl_addresses_without_smtp_are_no_alert_channel(env, capsys):
    env(DSL_EMAILS="dsl@school.example")
    _, out = _doctor(capsys)
    assert "[alerts] no DSL alert channel: SCHOOLGUIDE_DSL_EMAILS is set but SCHOOLGUIDE_SMTP_HOST" in out


def test_a_webhook_is_an_alert_channel(env, capsys):
    env(ALERT_WEBHOOK_URL="https://hooks.slack.example/secret-path")
    _, out = _doctor(capsys)
    assert "[alerts]" not in out and "secret-path" not in out


def test_rest_bound_beyond_loopback_without_a_token_is_named(env, capsys):
    env(BIND_HOST="0.0.0.0")
    _, out = _doctor(capsys)
    assert "[rest] the servers bind to 0.0.0.0 and SCHOOLGUIDE_REST_TOKEN is not set" in out


def test_run_logs_the_findings_when_the_servers_start(env, monkeypatch, caplog, tmp_path):
    """`schoolguide run` (run_servers) warns before it starts anything; here its 'servers' exit at once."""
    settings = dataclasses.replace(Settings.from_env(), home=tmp_path)
    monkeypatch.setattr(
        runner, "server_commands", lambda *_: {"stand-in": [sys.executable, "-c", "raise SystemExit(3)"]}
    )
    monkeypatch.setattr(runner, "rasa_env", lambda *_: {})
    monkeypatch.setattr(runner.signal, "signal", lambda *_: None)  # keep pytest's own Ctrl-C handler
    with caplog.at_level(logging.WARNING, logger=doctor.__name__):
        assert runner.run_servers(settings, tmp_path / "model.tar.gz") == 3
    warned = [r.getMessage() for r in caplog.records if r.name == doctor.__name__]
    assert len(warned) == 4
    assert any("no DSL alert channel" in message for message in warned)
    assert any("SQLite" in message for message in warned)
