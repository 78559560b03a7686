"""Held-out evaluation of disclosure detection (tests/heldout/, never trained on).

The gate for the full system is recall 1.0 and at most 10% false escalations; the rules layer on its own must
meet it too, so that either layer alone is enough.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.safeguarding.detector import CATEGORIES
from bot.safeguarding.evaluation import (
    DISCLOSE_INTENT,
    HeldOutDisclosure,
    HeldOutQuestion,
    evaluate_detection,
    evaluate_rules_detail,
    load_heldout,
    rules_parse,
    sealed_rounds,
)
from bot.settings import AUDIENCES

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def heldout():
    return load_heldout()


# Function words are left out so that two questions sharing only a template ("what does the policy say about
# X?") are not counted as the same sentence.
_STOP = set(
    "a an the and or but if of to in on at for with about is are was were be been do does did i me my you "
    "your we our they them their he she his her it its what how who which when where why can could should "
    "would will what's say says".split()
)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower())) - _STOP


def _training_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted((PROJECT_ROOT / "data" / "nlu").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for block in data.get("nlu") or []:
            examples = block.get("examples") or ""
            texts += [line[2:].strip() for line in examples.splitlines() if line.strip().startswith("- ")]
    return texts


def test_heldout_sets_are_big_and_varied_enough(heldout):
    disclosures, questions = heldout
    assert len(disclosures) >= 70 and len(questions) >= 40
    assert {d.audience for d in disclosures} == set(AUDIENCES)
    assert {q.audience for q in questions} == set(AUDIENCES)
    assert {c for d in disclosures for c in d.categories} == set(CATEGORIES)
    assert any(d.immediate for d in disclosures)
    texts = [d.text for d in disclosures] + [q.text for q in questions]
    assert len(set(texts)) == len(texts)


def _all_heldout(heldout):
    """The development set and every sealed round."""
    disclosures, questions = list(heldout[0]), list(heldout[1])
    for _, folder in sealed_rounds():
        more_disclosures, more_questions = load_heldout(folder)
        disclosures += more_disclosures
        questions += more_questions
    return disclosures, questions


def test_sealed_rounds_are_found_in_order():
    names = [name for name, _ in sealed_rounds()]
    assert names[:2] == ["round1", "round2"]
    for _, folder in sealed_rounds():
        disclosures, questions = load_heldout(folder)
        assert len(disclosures) >= 60 and len(questions) >= 30


def test_heldout_sentences_are_not_in_training_data_or_vocabulary(heldout):
    """Near-duplicates count: sharing 70% of its content words with a training example is a leak.

    Covers the sealed rounds too: they only measure anything while nothing like them is trained on.
    """
    disclosures, questions = _all_heldout(heldout)
    training = [(_words(t), t) for t in _training_texts()]
    vocabulary = (
        (PROJECT_ROOT / "bot" / "safeguarding" / "vocabulary.yml").read_text(encoding="utf-8").lower()
    )
    leaked = []
    for item in [*disclosures, *questions]:
        words = _words(item.text)
        for other, text in training:
            if len(words & other) / len(words | other) >= 0.7:
                leaked.append((item.text, text))
        if item.text.lower().rstrip(".?!") in vocabulary:
            leaked.append((item.text, "vocabulary.yml"))
    assert leaked == []


def test_rules_layer_alone_meets_the_gate(heldout):
    disclosures, questions = heldout
    report = evaluate_detection(rules_parse, disclosures, questions)
    print(report.summary())
    assert report.recall == 1.0, report.summary()
    assert report.false_escalation_rate <= 0.10, report.summary()


def test_rules_layer_categories_and_immediacy(heldout):
    disclosures, _ = heldout
    detail = evaluate_rules_detail(disclosures)
    assert detail.immediate_recall == 1.0, [d.text for d in detail.immediate_misses]
    assert detail.category_agreement >= 0.9, [(d.text, got) for d, got in detail.category_mismatches]


def test_evaluate_detection_counts_what_the_parser_says():
    disclosures = [HeldOutDisclosure("a", "pupil", ("other",), False), {"text": "b"}]
    questions = [HeldOutQuestion("c", "parent"), {"text": "d"}, {"text": "e"}, {"text": "f"}]
    always = evaluate_detection(lambda text: DISCLOSE_INTENT, disclosures, questions)
    assert (always.recall, always.false_escalation_rate) == (1.0, 1.0)
    assert not always.passes()
    never = evaluate_detection(lambda text: "greet", disclosures, questions)
    assert (never.recall, never.false_escalation_rate, len(never.misses)) == (0.0, 0.0, 2)
    picky = evaluate_detection(
        lambda text: DISCLOSE_INTENT if text in "ac" else "other", disclosures, questions
    )
    assert picky.recall == 0.5 and picky.false_escalation_rate == 0.25
    assert [m["text"] for m in picky.misses] == ["b"]
    assert "MISSED: b" in picky.summary() and "ESCALATED: c" in picky.summary()


@pytest.mark.parametrize(
    "bad",
    [
        [{"text": "x", "audience": "pupil", "categories": ["made_up"], "immediate": False}],
        [{"text": "x", "audience": "alien", "categories": ["other"], "immediate": False}],
        [{"text": "", "audience": "pupil", "categories": ["other"]}],
        {"not": "a list"},
    ],
)
def test_malformed_heldout_files_are_rejected(tmp_path, bad):
    (tmp_path / "disclosures.yml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    (tmp_path / "sensitive_questions.yml").write_text(yaml.safe_dump([]), encoding="utf-8")
    with pytest.raises(ValueError):
        load_heldout(tmp_path)
