"""Issue #15, point 2: the turns straight after a disclosure (bot/safeguarding/aftercare.py).

The words of a follow-up pick the reply ("what happens now?", "will I get in trouble?", ...), only in the few
messages after a disclosure; the replies are written per audience: kind and plain for pupils, with no promise
of what the school will do and no promise of secrecy; the next steps for staff; what the school will do and
when to call 999 or the police for parents. The e2e conversations (tests/e2e/test_after_disclosure.py) check
the same through the running servers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import textstat
import yaml

from bot.safeguarding import aftercare
from bot.settings import AUDIENCES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HELPLINES = yaml.safe_load((PROJECT_ROOT / "knowledge" / "helplines.yml").read_text(encoding="utf-8"))[
    "helplines"
]
PHONE = re.compile(r"\b\d[\d ]{1,12}\d\b|\b\d{3}\b")
DOMAIN = re.compile(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)+(?:/[\w/-]*)?", re.IGNORECASE)
SECRECY_PROMISES = [
    r"\bwon'?t tell\b",
    r"\bwill not tell\b",
    r"\bnot tell anyone\b",
    r"\bbetween (you and me|us)\b",
    r"\bi (will|can) keep (it|this) (a )?secret\b",
    r"\b(i|we) (will|can) (delete|remove|forget)\b",
    r"\bpromise\b",
    r"\bstays? (here|with me)\b",
]

# How people ask (written for this test, not taken from tests/heldout/).
FOLLOW_UPS = {
    "what_happens_next": [
        "what happens now?",
        "ok so what happens next",
        "what will you do",
        "what now",
        "what do i do now",
        "how long will it take",
        "will someone call me back?",
        "wot happens now",
    ],
    "who_will_know": [
        "who will you tell?",
        "who else is going to know",
        "will my teacher find out",
        "are you going to tell the police",
        "will she know it was me",
        "will sir find out",
    ],
    "in_trouble": [
        "will i get in trouble",
        "am i going to be told off",
        "will my dad be angry with me",
        "is he going to be in big trouble because of me",
        "will I lose my job over this?",
    ],
    "family_told": [
        "will my mum find out",
        "are you going to tell my parents?",
        "will you ring my dad",
        "will the school phone home",
    ],
    "delete": [
        "can you delete what I said",
        "forget it",
        "i take it back",
        "please don't tell anyone",
        "i was only joking",
    ],
    "acknowledge": ["ok", "thanks", "thank you so much", "alright", "k", "cheers"],
}
NOT_FOLLOW_UPS = [
    "how old do you have to be for whatsapp",
    "can my teacher follow me on tiktok",
    "is it ok to post photos of sports day on facebook",
    "who can see my instagram posts",
    "how do i block someone on snapchat",
    "what should i do if someone sends me a nasty message on instagram",
]


@pytest.mark.parametrize(("kind", "text"), [(k, t) for k, texts in FOLLOW_UPS.items() for t in texts])
def test_follow_up_kind(kind, text):
    assert aftercare.follow_up_kind(text) == kind


@pytest.mark.parametrize("text", NOT_FOLLOW_UPS)
def test_a_new_question_is_not_a_follow_up(text):
    assert aftercare.follow_up_kind(text, "policy_minimum_age") is None


def test_a_plain_yes_no_or_thanks_is_an_acknowledgement():
    for intent in ("thank", "affirm", "deny"):
        assert aftercare.follow_up_kind("cool cool", intent) == "acknowledge"
    assert aftercare.follow_up_kind("cool cool", "policy_minimum_age") is None
    assert aftercare.follow_up_kind("", "thank") is None


def _user(text="x"):
    return {"event": "user", "text": text}


def _action(name):
    return {"event": "action", "name": name}


def test_only_the_messages_straight_after_a_disclosure():
    before = [_action("action_session_start"), _user("hello"), _action("utter_greet")]
    assert not aftercare.just_after_a_disclosure(before)
    disclosure = [*before, _user("my dad hits me"), _action("action_log_disclosure"), _action("utter_x")]
    assert not aftercare.just_after_a_disclosure(disclosure)  # the disclosure itself
    after = [*disclosure, _user("what happens now")]
    assert aftercare.messages_since_disclosure(after) == 1 and aftercare.just_after_a_disclosure(after)
    later = after + [_user()] * (aftercare.WINDOW_MESSAGES - 1)
    assert aftercare.just_after_a_disclosure(later)
    assert not aftercare.just_after_a_disclosure([*later, _user()])
    # A new session starts afresh.
    assert not aftercare.just_after_a_disclosure([*after, _action("action_session_start"), _user()])


@pytest.mark.parametrize("kind", [*aftercare.KINDS, aftercare.UNCLEAR])
@pytest.mark.parametrize("audience", AUDIENCES)
def test_every_reply_is_written_and_promises_no_secrecy(kind, audience):
    text = aftercare.reply_text(kind, audience)
    assert text.strip()
    lowered = text.lower().replace("\u2019", "'")
    assert [p for p in SECRECY_PROMISES if re.search(p, lowered)] == []
    numbers, urls = _approved(audience)
    assert "http" not in lowered and "www." not in lowered
    assert all(found.strip() in numbers for found in PHONE.findall(text)), text
    assert all(found.lower() in urls for found in DOMAIN.findall(text)), text


def _approved(audience):
    numbers: set[str] = set()
    urls: set[str] = set()
    for helpline in HELPLINES:
        if audience in helpline.get("audiences", AUDIENCES):
            numbers.update(helpline.get("numbers", []))
            urls.update(helpline.get("urls", []))
    return numbers, urls


@pytest.mark.parametrize("kind", [*aftercare.KINDS, aftercare.UNCLEAR])
def test_pupil_replies_are_short_plain_and_kind(kind):
    text = aftercare.reply_text(kind, "pupil")
    assert textstat.flesch_kincaid_grade(text) <= 5, text
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]
    assert all(len(s.split()) <= 16 for s in sentences), text
    lowered = text.lower()
    # No promise of what the school will do, and no jargon beyond the role named once elsewhere.
    assert "will contact you" not in lowered and "social care" not in lowered and "lado" not in lowered


def test_what_each_audience_is_told():
    pupil = aftercare.reply_text("in_trouble", "pupil").lower()
    assert "not in trouble" in pupil
    assert "can't take it back" in aftercare.reply_text("delete", "pupil").lower()
    staff_next = aftercare.reply_text("what_happens_next", "staff").lower()
    assert "in person" in staff_next and "do not investigate" in staff_next and "write down" in staff_next
    parent_next = aftercare.reply_text("what_happens_next", "parent")
    assert "999" in parent_next and "101" in parent_next
    assert "cannot be removed" in aftercare.reply_text("delete", "parent")


def test_adult_replies_name_the_schools_dsl():
    facts = {"dsl": [{"name": "Ms A Example"}]}
    for kind in (*aftercare.KINDS, aftercare.UNCLEAR):
        for audience in ("staff", "parent"):
            assert ") (" not in aftercare.reply_text(
                kind, audience, facts
            )  # "Lead (name) (or ...)" reads badly
    assert "Designated Safeguarding Lead (Ms A Example)" in aftercare.reply_text(
        "what_happens_next", "staff", facts
    )
    assert "Ms A Example" not in aftercare.reply_text("what_happens_next", "pupil", facts)
    assert "(Ms A Example)" in aftercare.telling_text("parent", facts)


def test_texts_and_patterns_are_checked_when_loaded(tmp_path):
    bad = tmp_path / "replies.yml"
    bad.write_text("after_disclosure: {acknowledge: {pupil: hi}}\n")
    with pytest.raises(ValueError, match="after_disclosure needs texts"):
        aftercare.load_texts.__wrapped__(bad)
    patterns = tmp_path / "aftercare.yml"
    patterns.write_text("kinds: {delete: ['(']}\n")
    with pytest.raises(ValueError, match="kinds missing"):
        aftercare.load_patterns.__wrapped__(patterns)
