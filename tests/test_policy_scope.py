"""Issue #15, point 4: a question the policy does not touch is out of scope (bot/nlp/scope.py).

The PolicyScope component turns a policy topic into ``out_of_scope`` when the message has none of the words
the policy's topics share (bot/nlp/scope.yml) and names no platform. It must never take a real policy
question away: every held-out policy question is in scope.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.nlp.scope import in_scope, scope_pattern

HELDOUT = Path(__file__).resolve().parent / "heldout"


@pytest.mark.parametrize(
    "text",
    [
        "can my teacher add me on snap",
        "how old do you have to be for whatsapp",
        "Can staff accept friend requests from parents?",
        "is it ok to post pics of sports day",
        "who do I tell about a nasty comment online",
        "our coding club wants its own yt, who says yes to that",
        "Is the policy reviewed every year?",
        "can teachers message pupils",
        "does the school check what websites i look at",
    ],
)
def test_policy_questions_are_in_scope(text):
    assert in_scope(text)


@pytest.mark.parametrize(
    "text",
    [
        "what's for school dinner on friday",
        "Can you recommend a good plumber near the school?",
        "when is sports day",
        "who is the site manager this week",
        "what time does the science block open",
        "whats 7 times 8",
        "my daughter has a temperature, should she stay home",
        "how do I pay for the school trip",
    ],
)
def test_questions_the_policy_does_not_touch_are_not(text):
    assert not in_scope(text)


def test_a_named_platform_is_enough():
    assert in_scope("is it ok for year 6", [{"entity": "platform", "value": "tiktok"}])
    assert in_scope("is mumsnet ok")  # any platform form in knowledge/entities.yml


def test_every_heldout_policy_question_is_in_scope():
    questions = yaml.safe_load((HELDOUT / "policy_questions.yml").read_text())["questions"]
    assert [q["text"] for q in questions if not in_scope(q["text"])] == []


def test_the_scope_words_load_and_a_bad_one_is_named(tmp_path):
    assert scope_pattern().search("a photo")
    bad = tmp_path / "scope.yml"
    bad.write_text("terms: ['(']\n")
    with pytest.raises(ValueError, match="bad term"):
        scope_pattern.__wrapped__(bad)
    empty = tmp_path / "empty.yml"
    empty.write_text("terms: []\n")
    with pytest.raises(ValueError, match="no terms"):
        scope_pattern.__wrapped__(empty)
