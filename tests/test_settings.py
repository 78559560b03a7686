from dataclasses import FrozenInstanceError

import pytest

from bot.settings import Settings


def test_defaults_need_no_configuration(monkeypatch):
    for name in ("DATABASE_URL", "DEFAULT_SCHOOL", "DEFAULT_AUDIENCE", "RASA_PORT", "ACTION_PORT", "VAR_DIR"):
        monkeypatch.delenv(f"SCHOOLGUIDE_{name}", raising=False)
    settings = Settings.from_env()
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith(
        "var/schoolguide.db"
    )
    assert settings.default_school == "lunsford"
    assert settings.default_audience == "parent"
    assert (settings.rasa_port, settings.action_port) == (5005, 5055)
    assert settings.rasa_url == "http://127.0.0.1:5005"


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("SCHOOLGUIDE_DATABASE_URL", "postgresql+psycopg2://u@db/schoolguide")
    monkeypatch.setenv("SCHOOLGUIDE_DEFAULT_SCHOOL", "scotts")
    monkeypatch.setenv("SCHOOLGUIDE_DEFAULT_AUDIENCE", "pupil")
    monkeypatch.setenv("SCHOOLGUIDE_RASA_PORT", "6005")
    monkeypatch.setenv("SCHOOLGUIDE_DSL_EMAILS", "dsl@school.example, deputy@school.example ,")
    monkeypatch.setenv("SCHOOLGUIDE_VAR_DIR", str(tmp_path))
    settings = Settings.from_env()
    assert settings.database_url == "postgresql+psycopg2://u@db/schoolguide"
    assert settings.default_school == "scotts"
    assert settings.default_audience == "pupil"
    assert settings.rasa_url == "http://127.0.0.1:6005"
    assert settings.dsl_emails == ("dsl@school.example", "deputy@school.example")
    assert settings.spool_dir == tmp_path / "spool"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("DEFAULT_AUDIENCE", "governor", "DEFAULT_AUDIENCE"), ("RASA_PORT", "fifty", "RASA_PORT")],
)
def test_invalid_values_are_named(monkeypatch, name, value, message):
    monkeypatch.setenv(f"SCHOOLGUIDE_{name}", value)
    with pytest.raises(ValueError, match=message):
        Settings.from_env()


def test_settings_are_frozen():
    settings = Settings.from_env()
    with pytest.raises(FrozenInstanceError):
        settings.default_school = "x"  # type: ignore[misc]
