"""The whole path, through the running servers: REST channel -> Rasa -> action server -> clause base."""

import pytest
import requests

from bot.knowledge import get_knowledge

pytestmark = pytest.mark.e2e


def _texts(messages):
    return [m["text"] for m in messages if "text" in m]


def _custom(messages):
    return [m["custom"] for m in messages if "custom" in m]


def test_greet_question_goodbye(stack):
    metadata = {"school": "lunsford", "audience": "parent"}
    hello = stack.say("e2e-parent", "hi", metadata)
    assert any("social media policy" in t for t in _texts(hello))

    question = "Are teachers allowed to add current pupils on their personal Instagram?"
    answer = stack.say("e2e-parent", question, metadata)
    [payload] = _custom(answer)
    assert payload["type"] == "policy_answer" and payload["school"] == "lunsford"
    assert payload["topic"] in ("staff-befriend-pupils", "pupils-befriend-staff")
    expected = get_knowledge().answer("lunsford", payload["topic"], "parent")
    # Rasa's REST channel sends each paragraph as its own message: the answer, then its citation.
    texts = _texts(answer)
    assert texts[0] == expected.text
    assert (
        texts[1].startswith("Source: Lunsford Primary School") and expected.clauses[0].quote[:30] in texts[1]
    )
    assert [c["id"] for c in payload["clauses"]] == [c.id for c in expected.clauses]

    bye = stack.say("e2e-parent", "thanks, bye", metadata)
    assert _texts(bye)


def test_pupil_gets_the_pupil_wording(stack):
    metadata = {"school": "scotts", "audience": "pupil"}
    answer = stack.say("e2e-pupil", "can my teacher add me on snap", metadata)
    texts = _texts(answer)
    payloads = _custom(answer)
    assert payloads and payloads[0]["school"] == "scotts" and payloads[0]["audience"] == "pupil"
    topic = payloads[0]["topic"]
    assert texts[0] == get_knowledge().answer("scotts", topic, "pupil").text
    assert not any(t.startswith("Source:") for t in texts)  # pupils get the plain line, not the quote


@pytest.mark.parametrize(
    "message",
    ["", " ", "x" * 9_000, "\u202e\u200b\U0001f600" * 50, "<script>alert(1)</script>", "💬" * 500],
)
def test_odd_input_gets_a_reply_not_a_crash(stack, message):
    replies = stack.say("e2e-odd", message, {"school": "lunsford", "audience": "parent"})
    assert isinstance(replies, list)
    for reply in replies:
        assert "<script>" not in reply.get("text", "")


@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        "not an object",
        {"sender": "x"},
        {"sender": "x", "message": 5},
        {"sender": ["x"], "message": "hi"},
        {"sender": "x", "message": "hi", "metadata": "lunsford"},
        {"sender": "x", "message": "x" * 20_000},
    ],
)
def test_malformed_requests_get_a_clear_400(stack, body):
    response = requests.post(f"{stack.rasa_url}/webhooks/rest/webhook", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_invalid_json_gets_a_clear_400(stack):
    response = requests.post(
        f"{stack.rasa_url}/webhooks/rest/webhook", data=b"{not json", timeout=30,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 400, response.text


def test_unsure_offers_topics_as_buttons_and_answers_the_one_picked(stack):
    metadata = {"school": "lseat", "audience": "parent"}
    offer = stack.say("e2e-fallback-1", "/nlu_fallback", metadata)
    buttons = [b for m in offer for b in m.get("buttons", [])]
    assert buttons and buttons[-1]["payload"] == "/out_of_scope"
    picked = next(b for b in buttons if b["payload"].startswith("/policy_"))
    answer = stack.say("e2e-fallback-1", picked["payload"], metadata)
    [payload] = _custom(answer)
    assert payload["school"] == "lseat"
    assert "/policy_" + payload["topic"].replace("-", "_") == picked["payload"]


def test_none_of_these_twice_hands_off_to_the_schools_contact(stack):
    metadata = {"school": "lunsford", "audience": "parent"}
    assert any(m.get("buttons") for m in stack.say("e2e-fallback-2", "/nlu_fallback", metadata))
    rephrase = stack.say("e2e-fallback-2", "/out_of_scope", metadata)  # "None of these"
    assert any("another way" in t for t in _texts(rephrase)), rephrase
    assert any(m.get("buttons") for m in stack.say("e2e-fallback-2", "/nlu_fallback", metadata))
    handoff = stack.say("e2e-fallback-2", "/out_of_scope", metadata)
    assert any("Elizabeth Lomax" in t for t in _texts(handoff)), handoff


def test_a_question_outside_the_policy_is_handed_off(stack):
    replies = stack.say("e2e-oos", "/out_of_scope", {"school": "scotts", "audience": "parent"})
    assert any("can't answer that" in t for t in _texts(replies)), replies
    assert not _custom(replies)
