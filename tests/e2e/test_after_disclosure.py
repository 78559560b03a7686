"""Issue #15, points 2, 4 and 5, through the running servers (REST channel, trained model, action server).

The turns straight after a disclosure get the replies written for that moment (bot/safeguarding/aftercare.py,
texts in replies.yml), per audience and never with topic buttons; a question the policy does not touch is
told so, with who to ask, and never gets a clause; a member of staff reporting a colleague gets the KCSIE
Part 4 reply and the record names the category.
"""

from __future__ import annotations

import itertools

import pytest

from bot.knowledge import get_knowledge
from bot.safeguarding.aftercare import reply_text
from bot.safeguarding.replies import load_staff_replies

pytestmark = pytest.mark.e2e

_ids = itertools.count()

DISCLOSURES = {
    "pupil": "people keep sending me mean messages on snapchat and saying everyone hates me",
    "parent": "My daughter told me an older boy is asking her for photos on Snapchat.",
    "staff": "A Year 8 pupil has just told me her stepdad hits her when he has been drinking.",
}


def _texts(messages):
    return [m["text"] for m in messages if "text" in m]


def _buttons(messages):
    return [b for m in messages for b in m.get("buttons") or []]


def _custom(messages):
    return [m["custom"] for m in messages if "custom" in m]


def _school_facts(school):
    return {"dsl": [{"name": p.name} for p in get_knowledge().schools[school].dsl]}


def _conversation(stack, audience, school="lunsford"):
    sender = f"e2e-after-{audience}-{next(_ids)}"
    metadata = {"school": school, "audience": audience}
    stack.say(sender, DISCLOSURES[audience], metadata)
    return sender, metadata


def _expected(kind, audience, school="lunsford"):
    """The reply text as the REST channel sends it (one message per paragraph)."""
    return reply_text(kind, audience, _school_facts(school)).split("\n\n")


# pupils and parents are first offered to leave contact details: the follow-up question is not details, so
# the offer lapses and the question is answered.
FOLLOW_UPS = [
    ("pupil", "what happens now?", "what_happens_next"),
    ("pupil", "will i get in trouble", "in_trouble"),
    ("pupil", "will my mum find out", "family_told"),
    ("pupil", "can you delete what i said", "delete"),
    ("pupil", "who will you tell", "who_will_know"),
    ("staff", "what happens now?", "what_happens_next"),
    ("staff", "thanks, what happens next?", "what_happens_next"),
    ("staff", "who else will know?", "who_will_know"),
    ("staff", "ok", "acknowledge"),
    ("parent", "what happens next?", "what_happens_next"),
    ("parent", "will my daughter get in trouble?", "in_trouble"),
]


@pytest.mark.parametrize(("audience", "follow_up", "kind"), FOLLOW_UPS)
def test_the_turn_after_a_disclosure_gets_the_reply_written_for_it(stack, audience, follow_up, kind):
    sender, metadata = _conversation(stack, audience)
    reply = stack.say(sender, follow_up, metadata)
    assert _texts(reply) == _expected(kind, audience), reply
    assert not _buttons(reply) and not _custom(reply)  # no topic buttons, no clause


def test_ok_after_a_pupils_disclosure_and_the_offer_is_not_a_policy_fallback(stack):
    sender, metadata = _conversation(stack, "pupil")
    stack.say(sender, "no thanks", metadata)  # declines the offer of contact details
    reply = stack.say(sender, "ok", metadata)
    assert _texts(reply) == _expected("acknowledge", "pupil")
    assert not _buttons(reply)


def test_a_new_question_after_a_disclosure_is_answered(stack):
    sender, metadata = _conversation(stack, "staff")
    reply = stack.say(sender, "How old do pupils have to be to use WhatsApp?", metadata)
    [payload] = _custom(reply)
    assert payload["type"] == "policy_answer" and payload["topic"] == "minimum-age"


def test_the_same_words_later_are_an_ordinary_question(stack):
    metadata = {"school": "lunsford", "audience": "staff"}
    sender = f"e2e-after-none-{next(_ids)}"
    reply = stack.say(sender, "what happens now if I tell you something worrying?", metadata)
    texts = _texts(reply)
    assert texts and not _custom(reply)
    assert any("Designated Safeguarding Lead" in t for t in texts)


@pytest.mark.parametrize(
    ("audience", "question"),
    [
        ("parent", "Can you recommend a good plumber near the school?"),
        ("parent", "Are the children allowed to wear smartwatches in class?"),
        ("pupil", "wats the point of u"),
        ("staff", "Where do I claim back my mileage for the school trip?"),
        ("pupil", "can you do my maths homework"),
    ],
)
def test_a_question_outside_the_policy_never_gets_a_clause(stack, audience, question):
    reply = stack.say(f"e2e-oos-{next(_ids)}", question, {"school": "lunsford", "audience": audience})
    texts = _texts(reply)
    assert texts and not _custom(reply), reply
    assert not any(t.startswith("Source:") for t in texts)


def test_off_topic_reply_says_so_and_who_to_ask(stack):
    parent = _texts(stack.say(f"e2e-oos-{next(_ids)}", "what's for school dinner on friday?",
                              {"school": "lunsford", "audience": "parent"}))  # fmt: skip
    assert any("isn't covered by" in t and "school office" in t for t in parent)
    pupil = _texts(stack.say(f"e2e-oos-{next(_ids)}", "whats the weather tomorrow",
                             {"school": "lunsford", "audience": "pupil"}))  # fmt: skip
    assert any("ask your teacher" in t for t in pupil)


def test_staff_report_about_a_colleague_gets_the_kcsie_part_4_reply(stack):
    metadata = {"school": "lunsford", "audience": "staff"}
    sender = f"e2e-allegation-{next(_ids)}"
    message = "One of my students showed me messages from a colleague that seem really inappropriate"
    reply = stack.say(sender, message, metadata)
    texts = _texts(reply)
    staff_reply = load_staff_replies()["allegation"]
    assert texts[: len(staff_reply.split("\n\n"))] == staff_reply.split("\n\n")
    joined = " ".join(texts)
    assert "headteacher" in joined and "chair of governors" in joined and "LADO" in joined
    assert "reference" in texts[-1].lower()
