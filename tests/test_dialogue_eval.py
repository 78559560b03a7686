"""``make eval``'s dialogue measures (bot/dialogue_eval.py): off-topic questions answered with a clause, the
turn after a disclosure, worries versus complaints and allegations about adults."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.dialogue_eval import (
    after_disclosure_outcome,
    answers_with_a_clause,
    gate_failures,
    render_markdown,
    run_dialogue_eval,
    score_after_disclosure,
    score_escalation_pairs,
    score_off_topic,
)
from bot.evaluation import GATES

HELDOUT = Path(__file__).resolve().parent / "heldout"


def _write(path: Path, items) -> Path:
    path.write_text(yaml.safe_dump(items), encoding="utf-8")
    return path


def test_what_counts_as_answered_with_a_clause():
    assert answers_with_a_clause("policy_minimum_age")
    assert answers_with_a_clause("ask_who_to_tell")  # the who-to-contact clauses
    for intent in ("out_of_scope", "nlu_fallback", "chitchat/ask_human", "greet", "disclose"):
        assert not answers_with_a_clause(intent)


def test_the_outcome_after_a_disclosure_follows_the_route_then_the_words():
    assert after_disclosure_outcome("disclose", "he hit me again") == "disclosure"
    assert after_disclosure_outcome("ask_after_disclosure", "what happens now") == "what_happens_next"
    assert after_disclosure_outcome("ask_after_disclosure", "hmm") == "unclear"
    assert after_disclosure_outcome("nlu_fallback", "blah") == "unclear"  # no topic buttons
    # a policy route checks the words first, then answers as usual
    assert after_disclosure_outcome("policy_breach_consequences", "will i get in trouble") == "in_trouble"
    assert after_disclosure_outcome("policy_minimum_age", "how old for tiktok") == "new_question"
    assert after_disclosure_outcome("thank", "cheers") == "acknowledge"
    # static replies are not checked: the measure counts them as what they are
    assert after_disclosure_outcome("goodbye", "what happens now") == "goodbye"


def test_scores_count_right_and_wrong(tmp_path):
    off = _write(
        tmp_path / "off.yml", [{"text": "a", "audience": "parent"}, {"text": "b", "audience": "pupil"}]
    )
    intents = {"a": "policy_minimum_age", "b": "out_of_scope"}
    score = score_off_topic(off, intents.get)
    assert score["rate"] == 0.5 and score["misses"] == [("a", "policy_minimum_age")]
    after = _write(
        tmp_path / "after.yml",
        [
            {
                "audience": "pupil",
                "disclosure": "x",
                "follow_up": "will i get in trouble",
                "expect": "in_trouble",
            },
            {
                "audience": "staff",
                "disclosure": "x",
                "follow_up": "what happens now",
                "expect": "what_happens_next",
            },
        ],
    )
    intents = {"will i get in trouble": "ask_after_disclosure", "what happens now": "goodbye"}
    score = score_after_disclosure(after, intents.get)
    assert score["correct"] == 1 and score["by_kind"] == {"in_trouble": "1/1", "what_happens_next": "0/1"}
    pairs = _write(
        tmp_path / "pairs.yml",
        [
            {"text": "sir keeps texting my daughter at night", "audience": "parent", "expect": "allegation"},
            {"text": "can teachers text pupils", "audience": "parent", "expect": "question"},
        ],
    )
    intents = {"sir keeps texting my daughter at night": "disclose", "can teachers text pupils": "disclose"}
    score = score_escalation_pairs(
        pairs, intents.get, frozenset({"allegation"}), lambda t: ["allegation_about_adult"]
    )
    assert score["correct"] == 1 and score["allegations_routed"] == "1/1"


def test_the_off_topic_gate():
    assert GATES["off_topic_rate"] == 0.05
    assert gate_failures({"off_topic": {"rate": 0.05}}) == []
    assert "off-topic" in gate_failures({"off_topic": {"rate": 0.06}})[0]
    assert gate_failures({}) != []  # a missing set is a failure, not a pass


def test_the_heldout_dialogue_sets_are_big_and_varied_enough():
    results = run_dialogue_eval(HELDOUT, lambda text: "out_of_scope")
    off = yaml.safe_load((HELDOUT / "off_topic.yml").read_text())
    assert len(off) >= 60 and {i["audience"] for i in off} == {"pupil", "parent", "staff"}
    after = yaml.safe_load((HELDOUT / "after_disclosure.yml").read_text())
    kinds = {i["expect"] for i in after}
    assert len(after) >= 40 and {"acknowledge", "what_happens_next", "delete", "new_question"} <= kinds
    assert results["off_topic"]["rate"] == 0.0
    assert "round4" in results["sealed"]  # the sealed round is reported
    assert any("sealed round4" in line for line in render_markdown(results))


def test_heldout_dialogue_sets_are_never_in_training_data(project_root):
    training = set()
    for path in (project_root / "data" / "nlu").glob("*.yml"):
        for block in yaml.safe_load(path.read_text()).get("nlu", []):
            for line in (block.get("examples") or "").splitlines():
                if line.strip().startswith("- "):
                    training.add(" ".join(line.strip()[2:].lower().split()))
    texts = [i["text"] for i in yaml.safe_load((HELDOUT / "off_topic.yml").read_text())]
    texts += [i["follow_up"] for i in yaml.safe_load((HELDOUT / "after_disclosure.yml").read_text())]
    leaked = [t for t in texts if " ".join(t.lower().split()) in training and len(t.split()) > 2]
    assert leaked == []
