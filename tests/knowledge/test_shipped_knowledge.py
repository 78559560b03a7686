"""The real check of the shipped clause base in knowledge/ (not a fixture).

This test fails whenever the data in knowledge/ breaks a rule; its failure message is the full problem list.
Run it alone with ``pytest -m shipped_data``.
"""

from __future__ import annotations

import pytest

from bot.knowledge import check_knowledge
from bot.settings import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "knowledge"
SCHOOLS = {"linden-lodge", "model-policy", "lunsford", "scotts", "lseat"}


@pytest.mark.shipped_data
def test_shipped_knowledge_has_every_school():
    kb, _ = check_knowledge(SHIPPED)
    assert set(kb.slugs) == SCHOOLS


@pytest.mark.shipped_data
def test_shipped_knowledge_passes_the_check():
    _, problems = check_knowledge(SHIPPED)
    assert not problems, f"{len(problems)} problems in knowledge/:\n" + "\n".join(map(str, problems))
