"""Fixtures for the clause-base tests: a small valid knowledge tree copied into tmp_path for each test.

The tree (tests/knowledge/fixtures/knowledge) has two fictional schools: ``oakfield`` names its DSL and
headteacher, ``birchwood`` (a trust) names nobody. Tests break one thing at a time and assert the exact file
and field reported.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.knowledge import get_knowledge
from bot.settings import get_settings

FIXTURE_TREE = Path(__file__).parent / "fixtures" / "knowledge"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "shipped_data: checks the real clause base in knowledge/ (fails while the data is incomplete)",
    )


@pytest.fixture
def knowledge_dir(tmp_path: Path) -> Path:
    """A fresh copy of the minimal valid clause base, named ``knowledge`` like the real one."""
    target = tmp_path / "knowledge"
    shutil.copytree(FIXTURE_TREE, target)
    return target


@pytest.fixture
def edit_yaml(knowledge_dir: Path) -> Callable[[str, Callable[[Any], Any]], None]:
    """``edit_yaml("oakfield/answers.yml", change)``: load, let ``change`` mutate the data, write back."""

    def edit(relative: str, change: Callable[[Any], Any]) -> None:
        path = knowledge_dir / relative
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")

    return edit


@pytest.fixture
def knowledge_env(monkeypatch: pytest.MonkeyPatch, knowledge_dir: Path) -> Iterator[Path]:
    """Point SCHOOLGUIDE_KNOWLEDGE_DIR at the copied tree (settings and the knowledge cache are reset)."""
    monkeypatch.setenv("SCHOOLGUIDE_KNOWLEDGE_DIR", str(knowledge_dir))
    get_settings.cache_clear()
    get_knowledge.cache_clear()
    yield knowledge_dir
    get_settings.cache_clear()
    get_knowledge.cache_clear()
