"""Shared test set-up: keep background workers off and give every test its own var/ directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The action package starts the safeguarding worker thread when imported by the action server; tests that
# want it start it themselves.
os.environ.setdefault("SCHOOLGUIDE_WORKER", "off")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture
def fresh_settings(monkeypatch, tmp_path):
    """Settings built from the environment with var/ under tmp_path; the cached settings are reset after."""
    from bot.settings import get_settings

    monkeypatch.setenv("SCHOOLGUIDE_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
