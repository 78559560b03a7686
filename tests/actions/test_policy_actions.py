"""action_answer_policy and friends, run for real against the shipped clause base."""

from __future__ import annotations

import pytest
from rasa_sdk.events import SlotSet, UserUtteranceReverted

from actions.policy import (
    ActionAnswerPolicy,
    ActionDefaultAskAffirmation,
    ActionDefaultFallback,
    ActionFollowUp,
)
from bot.knowledge import get_knowledge

DOMAIN: dict = {}


def _texts(dispatcher):
    return [m["text"] for m in dispatcher.messages if m.get("text")]


def _payloads(dispatcher):
    return [m["custom"] for m in dispatcher.messages if m.get("custom")]


def _slot(events, name):
    values = [e["value"] for e in events if e.get("event") == "slot" and e.get("name") == name]
    return values[-1] if values else None


async def test_answer_cites_the_schools_own_clause(tracker_factory, dispatcher):
    tracker = tracker_factory()
    events = await ActionAnswerPolicy().run(dispatcher, tracker, DOMAIN)

    kb = get_knowledge()
    expected = kb.answer("lunsford", "staff-befriend-pupils", "parent")
    text = _texts(dispatcher)[0]
    assert text.startswith(expected.text)
    assert "Source: " in text and "Lunsford" in text
    [payload] = _payloads(dispatcher)
    assert payload["type"] == "policy_answer"
    assert payload["school"] == "lunsford" and payload["topic"] == "staff-befriend-pupils"
    assert payload["clauses"] and all(c["id"].startswith("lunsford.") for c in payload["clauses"])
    policy = kb.policy_texts["lunsford"]
    assert all(c["quote"][:40] in " ".join(policy.replace("**", "").split()) for c in payload["clauses"])
    assert SlotSet("topic", "staff-befriend-pupils") in events


@pytest.mark.parametrize("school", ["linden-lodge", "model-policy", "lunsford", "scotts", "lseat"])
@pytest.mark.parametrize("audience", ["staff", "parent", "pupil"])
async def test_every_school_and_audience_gets_its_own_answer(tracker_factory, dispatcher, school, audience):
    tracker = tracker_factory(intent="policy_report_post", metadata={"school": school, "audience": audience})
    await ActionAnswerPolicy().run(dispatcher, tracker, DOMAIN)
    [payload] = _payloads(dispatcher)
    assert payload["school"] == school and payload["audience"] == audience
    assert all(c["id"].startswith(school + ".") for c in payload["clauses"])  # never another school's rule
    expected = get_knowledge().answer(school, "report-post", audience)
    assert _texts(dispatcher)[0].startswith(expected.text)


async def test_pupils_get_the_simple_wording_and_no_policy_quote(tracker_factory, dispatcher):
    tracker = tracker_factory(metadata={"school": "lunsford", "audience": "pupil"})
    await ActionAnswerPolicy().run(dispatcher, tracker, DOMAIN)
    text = _texts(dispatcher)[0]
    assert text.startswith(get_knowledge().answer("lunsford", "staff-befriend-pupils", "pupil").text)
    assert "Source:" not in text and "http" not in text


async def test_silent_policy_says_so_and_names_the_contact(tracker_factory, dispatcher):
    kb = get_knowledge()
    silent = next(t for t, entry in kb.answers["lunsford"].items() if not entry.covered)
    tracker = tracker_factory(intent="policy_" + silent.replace("-", "_"))
    await ActionAnswerPolicy().run(dispatcher, tracker, DOMAIN)
    [payload] = _payloads(dispatcher)
    assert payload["covered"] is False and payload["clauses"] == []
    text = _texts(dispatcher)[0]
    assert "does not cover" in text and "Elizabeth Lomax" in text


async def test_platform_variant_is_used_when_the_policy_names_that_platform(tracker_factory, dispatcher):
    kb = get_knowledge()
    entry = kb.answers["linden-lodge"]["minimum-age"]
    assert "whatsapp" in entry.variants, "Linden Lodge's policy states an age for WhatsApp"
    tracker = tracker_factory(
        text="how old do you have to be for whats app",
        intent="policy_minimum_age",
        metadata={"school": "linden-lodge", "audience": "parent"},
        entities=[{"entity": "platform", "value": "whats app"}],
    )
    await ActionAnswerPolicy().run(dispatcher, tracker, DOMAIN)
    expected = kb.answer("linden-lodge", "minimum-age", "parent", variant="whatsapp")
    assert _texts(dispatcher)[0].startswith(expected.text)
    assert "16" in expected.text


async def test_follow_up_where_does_it_say_that_quotes_the_last_topics_clauses(tracker_factory, dispatcher):
    tracker = tracker_factory(text="where does it say that?", intent="ask_source", entities=[],
                              slots={"topic": "staff-befriend-pupils"})  # fmt: skip
    await ActionFollowUp().run(dispatcher, tracker, DOMAIN)
    answer = get_knowledge().answer("lunsford", "staff-befriend-pupils", "parent")
    text = _texts(dispatcher)[0]
    assert answer.clauses[0].section in text
    assert _payloads(dispatcher)[0]["topic"] == "staff-befriend-pupils"


async def test_follow_up_what_about_another_platform_keeps_the_topic(tracker_factory, dispatcher):
    tracker = tracker_factory(
        text="what about whatsapp?",
        intent="ask_other_platform",
        metadata={"school": "linden-lodge", "audience": "parent"},
        entities=[{"entity": "platform", "value": "whatsapp"}],
        slots={"topic": "minimum-age"},
    )
    await ActionFollowUp().run(dispatcher, tracker, DOMAIN)
    expected = get_knowledge().answer("linden-lodge", "minimum-age", "parent", variant="whatsapp")
    assert _texts(dispatcher)[0].startswith(expected.text)


async def test_follow_up_who_do_i_tell_answers_for_the_school(tracker_factory, dispatcher):
    tracker = tracker_factory(text="who do i tell?", intent="ask_who_to_tell", entities=[])
    await ActionFollowUp().run(dispatcher, tracker, DOMAIN)
    assert _payloads(dispatcher)[0]["topic"] == "who-to-contact"


async def test_follow_up_without_a_topic_asks_what_they_want_to_know(tracker_factory, dispatcher):
    tracker = tracker_factory(text="why?", intent="ask_why", entities=[], slots={"topic": None})
    await ActionFollowUp().run(dispatcher, tracker, DOMAIN)
    assert not _payloads(dispatcher)
    assert "?" in _texts(dispatcher)[0]


async def test_fallback_offers_the_nearest_topics_as_buttons(tracker_factory, dispatcher):
    ranking = [
        {"name": "nlu_fallback", "confidence": 1.0},
        {"name": "policy_report_post", "confidence": 0.3},
        {"name": "greet", "confidence": 0.2},
        {"name": "policy_bullying_online", "confidence": 0.2},
    ]
    tracker = tracker_factory(text="the thing with the post", intent="nlu_fallback", ranking=ranking)
    await ActionDefaultAskAffirmation().run(dispatcher, tracker, DOMAIN)
    [message] = dispatcher.messages
    payloads = [b["payload"] for b in message["buttons"]]
    assert payloads == ["/policy_report_post", "/policy_bullying_online", "/out_of_scope"]


async def test_handoff_names_the_schools_contact_and_reverts(tracker_factory, dispatcher):
    tracker = tracker_factory(text="blah", intent="nlu_fallback")
    events = await ActionDefaultFallback().run(dispatcher, tracker, DOMAIN)
    assert "Elizabeth Lomax" in _texts(dispatcher)[0]
    assert events[-1] == UserUtteranceReverted()


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        {"school": 5},
        {"school": "<img src=x onerror=alert(1)>", "audience": "admin"},
        {"audience": None},
    ],
)
async def test_bad_metadata_still_gets_a_real_answer(tracker_factory, dispatcher, metadata):
    tracker = tracker_factory(metadata=metadata, slots={"school": None, "audience": None})
    events = await ActionAnswerPolicy().run(dispatcher, tracker, DOMAIN)
    assert _slot(events, "school") == "lunsford" and _slot(events, "audience") == "parent"
    assert _payloads(dispatcher)[0]["school"] == "lunsford"
