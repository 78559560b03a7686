"""The action server runs without TensorFlow (bot.action_server) and still detects and answers exactly as
before. The memory it saves is measured by `make bench` (reports/bench.md), not here."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from bot.runner import server_commands
from bot.safeguarding.detector import assess

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "my teacher says our chats are a secret",
    "someone is sharing my nudes",
    "i want to die",
    "can I follow a former pupil?",
    "how old do you have to be for whatsapp",
    "<script>alert(1)</script>",
    "",
]

CHILD = """
import dataclasses, json, sys
from bot.action_server import block_unused_frameworks, warm_up
blocked = block_unused_frameworks()
import actions  # everything the action server loads
from bot.knowledge.loader import get_knowledge as cached_knowledge
from bot.safeguarding.detector import get_detector
cold = (get_detector.cache_info().currsize, cached_knowledge.cache_info().currsize)
warmed = warm_up()
warm = (get_detector.cache_info().currsize, cached_knowledge.cache_info().currsize)
from bot.safeguarding.detector import assess
from bot.knowledge import get_knowledge
answer = get_knowledge().answer("lunsford", "report-post", "parent")
print(json.dumps({
    "blocked": blocked,
    "cold": cold,
    "warmed": warmed,
    "warm": warm,
    "loaded": [m for m in ("tensorflow", "jax", "torch") if sys.modules.get(m) is not None],
    "assessments": [dataclasses.asdict(assess(t)) for t in TEXTS],
    "clauses": [c.id for c in answer.clauses],
}))
"""


def _plain(assessment) -> dict:
    """An Assessment as it comes back through JSON."""
    return json.loads(json.dumps(dataclasses.asdict(assessment)))


def test_action_server_imports_no_ml_framework_and_detects_the_same(tmp_path):
    from bot.knowledge import get_knowledge

    script = f"TEXTS = {TEXTS!r}\n" + CHILD
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "SCHOOLGUIDE_VAR_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert "tensorflow" in out["blocked"]
    assert out["loaded"] == []
    # loaded before serving, not by the first disclosure
    assert out["cold"] == [0, 0] and out["warmed"] is True and out["warm"] == [1, 1]
    assert out["assessments"] == [_plain(assess(t)) for t in TEXTS]
    assert out["assessments"][0]["is_disclosure"] and not out["assessments"][3]["is_disclosure"]
    expected = get_knowledge().answer("lunsford", "report-post", "parent").clauses
    assert out["clauses"] == [c.id for c in expected] and out["clauses"]


def test_schoolguide_run_starts_the_action_server_without_tensorflow(tmp_path, fresh_settings):
    # fresh_settings: server_commands writes endpoints.yml and the secret into its var/, not the project's
    command = server_commands(fresh_settings, tmp_path / "m.tar.gz")["action server"]
    assert command[1:4] == ["-m", "bot.action_server", "--actions"]


def test_the_interface_is_ours_and_the_rest_is_rasa_sdks():
    from rasa_sdk.endpoint import create_argument_parser

    from bot.action_server import parse_interface

    interface, rest = parse_interface(["--actions", "actions", "--interface", "10.0.0.2", "--port", "5055"])
    assert interface == "10.0.0.2"
    assert rest == ["--actions", "actions", "--port", "5055"]
    assert create_argument_parser().parse_args(rest).port == 5055  # what is left is valid for Rasa SDK
    assert parse_interface(["--port", "5055"]) == (None, ["--port", "5055"])
