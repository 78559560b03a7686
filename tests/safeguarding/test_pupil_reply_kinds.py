"""Issue #15, point 3: the pupil's safe reply fits what was said.

The real ``action_log_disclosure`` (real detector, real store) sets ``disclosure_kind``; Rasa's own response
selection (``TemplatedNaturalLanguageGenerator`` on domain.yml) then picks ``utter_disclosure_safe``'s
variant, as the Rasa server does. The failsafe (``failsafe.recover``) picks the same text from its verdict.
``rasa test core`` (tests/conversations/pupil_replies.yml) checks the dialogue around it, not the words.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("rasa")

from rasa_sdk import Tracker  # noqa: E402
from rasa_sdk.executor import CollectingDispatcher  # noqa: E402

from actions.safeguarding import ActionDisclosureReference, ActionLogDisclosure  # noqa: E402
from bot.safeguarding import failsafe  # noqa: E402
from bot.safeguarding.categories import REPLY_KINDS, reply_kind  # noqa: E402
from bot.safeguarding.replies import load_pupil_replies, safe_reply  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# One message per kind, as a child might type it (the detector's categories in brackets).
MESSAGES = {
    "bullying": "people keep sending me mean messages on snapchat and saying everyone hates me",  # bullying
    "images": "someone shared a nude photo of me in the group chat",  # image_sharing_sextortion, bullying
    "grooming": "my teacher keeps messaging me on snapchat and says its our secret",  # grooming, boundary
    "self_harm": "i want to kill myself",
    "danger_at_home": "my dad hits me when he is drunk",  # physical_abuse_neglect
    "danger_now": "my dad is hitting my mum right now",  # physical_abuse_neglect, immediate
    "radicalisation": "my brother shows me videos saying we should attack people who are different",
    "listen": "/disclose",  # the "Talk to a grown-up" button
    "generic": "something happened and i need to talk to someone",  # the classifier alone: other
}


@pytest.fixture(scope="module")
def domain():
    from rasa.shared.core.domain import Domain

    return Domain.load(str(PROJECT_ROOT / "domain.yml"))


def _rasa_tracker(domain, audience, kind=None):
    from rasa.shared.core.events import SlotSet
    from rasa.shared.core.trackers import DialogueStateTracker

    tracker = DialogueStateTracker("conv-kinds", domain.slots)
    if audience is not None:
        tracker.update(SlotSet("audience", audience))
    if kind is not None:
        tracker.update(SlotSet("disclosure_kind", kind))
    return tracker


def _sdk_tracker(rasa_tracker, text, message_id):
    """The action server's view of ``rasa_tracker`` with ``text`` as the latest (disclose) message."""
    latest = {
        "text": text,
        "intent": {"name": "disclose", "confidence": 0.97},
        "entities": [],
        "message_id": message_id,
        "metadata": {},
    }
    events = [
        *[e.as_dict() for e in rasa_tracker.events],
        {"event": "user", "text": text, "message_id": message_id, "input_channel": "rest", "timestamp": 9.0},
    ]
    slots = {**rasa_tracker.current_slot_values(), "school": "lunsford"}
    return Tracker(rasa_tracker.sender_id, slots, latest, events, False, None, {}, "action_listen")


def _apply(rasa_tracker, events, domain):
    from rasa.shared.core.events import Event

    for event in events:
        rasa_tracker.update(Event.from_parameters(event), domain)


async def _utter(domain, tracker) -> str:
    from rasa.core.nlg import TemplatedNaturalLanguageGenerator

    response = await TemplatedNaturalLanguageGenerator(domain.responses).generate(
        "utter_disclosure_safe", tracker, "rest"
    )
    return response["text"]


def test_every_kind_has_a_message_here():
    assert set(MESSAGES) == set(REPLY_KINDS)


@pytest.mark.parametrize("kind", REPLY_KINDS)
async def test_the_action_sets_the_kind_and_the_domain_says_its_reply(settings, domain, kind):
    tracker = _rasa_tracker(domain, "pupil")
    assert tracker.get_slot("disclosure_kind") == "generic"  # the slot's initial value

    events = await ActionLogDisclosure(settings).run(
        CollectingDispatcher(), _sdk_tracker(tracker, MESSAGES[kind], f"m-{kind}"), {}
    )
    assert events[0]["name"] == "disclosure_reference" and events[0]["value"]  # recorded, as before
    _apply(tracker, events, domain)
    assert tracker.get_slot("disclosure_kind") == kind

    said = await _utter(domain, tracker)
    assert said == safe_reply("pupil", kind=kind) == load_pupil_replies()[kind]

    # After the hand-off the slot is generic again: a disclosure the action server never sees (it is down)
    # gets the generic reply, not this one.
    reference_events = await ActionDisclosureReference(settings).run(
        CollectingDispatcher(), _sdk_tracker(tracker, MESSAGES[kind], f"m-{kind}"), {}
    )
    _apply(tracker, reference_events, domain)
    assert tracker.get_slot("disclosure_kind") == "generic"
    # The contact offer follows a disclosure, not the button's opener (it already asks a question).
    assert tracker.get_slot("contact_offered") is (kind != "listen")
    assert await _utter(domain, tracker) == safe_reply("pupil")


async def test_the_button_as_the_first_message_gets_the_pupil_opener(settings, domain):
    """The button's ``/disclose`` payload skips the NLU pipeline, so nothing has set ``audience`` yet: the
    action sets it from the message's metadata, or the pupil variant (and its opener) could not apply."""
    tracker = _rasa_tracker(domain, None)
    sdk = _sdk_tracker(tracker, "/disclose", "m-button-first")
    sdk.latest_message["metadata"] = {"school": "lunsford", "audience": "pupil"}
    sdk.slots.pop("audience", None)
    events = await ActionLogDisclosure(settings).run(CollectingDispatcher(), sdk, {})
    assert {"event": "slot", "timestamp": None, "name": "audience", "value": "pupil"} in events
    _apply(tracker, events, domain)
    assert await _utter(domain, tracker) == safe_reply("pupil", kind="listen")


async def test_a_forged_audience_in_metadata_is_not_set(settings, domain):
    tracker = _rasa_tracker(domain, None)
    sdk = _sdk_tracker(tracker, "/disclose", "m-button-forged")
    sdk.latest_message["metadata"] = {"audience": "headteacher"}
    sdk.slots.pop("audience", None)
    events = await ActionLogDisclosure(settings).run(CollectingDispatcher(), sdk, {})
    assert not [e for e in events if e.get("name") == "audience"]


async def test_with_the_action_server_down_a_pupil_gets_the_generic_reply(domain):
    """Nothing sets the slot: its initial value picks the generic text (and never the image advice)."""
    said = await _utter(domain, _rasa_tracker(domain, "pupil"))
    assert said == safe_reply("pupil")
    assert "report remove" not in said.lower() and "sexual" not in said.lower()


@pytest.mark.parametrize("audience", ["staff", "parent"])
async def test_adults_get_their_own_reply_whatever_the_kind(domain, audience):
    for kind in REPLY_KINDS:
        assert await _utter(domain, _rasa_tracker(domain, audience, kind)) == safe_reply(audience)
        assert safe_reply(audience, kind=kind) == safe_reply(audience)


async def test_an_unknown_audience_gets_the_generic_reply_whatever_the_kind(domain):
    for kind in REPLY_KINDS:
        assert await _utter(domain, _rasa_tracker(domain, None, kind)) == safe_reply(None)
        assert safe_reply(None, kind=kind) == safe_reply("pupil")


async def test_an_unset_kind_gets_the_generic_reply(domain):
    tracker = _rasa_tracker(domain, "pupil")
    from rasa.shared.core.events import SlotSet

    tracker.update(SlotSet("disclosure_kind", None))
    assert await _utter(domain, tracker) == safe_reply("pupil")


@pytest.mark.parametrize(
    ("categories", "risk", "kind"),
    [
        (["bullying"], "medium", "bullying"),
        (["image_sharing_sextortion", "bullying"], "high", "images"),
        (["sexual_abuse_grooming", "image_sharing_sextortion"], "high", "images"),
        (["sexual_abuse_grooming"], "high", "grooming"),
        (["adult_boundary_breach"], "high", "grooming"),
        (["self_harm_suicide", "bullying"], "immediate", "self_harm"),
        (["physical_abuse_neglect"], "high", "danger_at_home"),
        (["physical_abuse_neglect"], "immediate", "danger_now"),
        (["bullying"], "immediate", "danger_now"),
        (["radicalisation"], "high", "radicalisation"),
        (["other"], "high", "generic"),
        ([], "high", "generic"),
        (None, None, "generic"),
    ],
)
def test_reply_kind(categories, risk, kind):
    assert reply_kind(categories, risk) == kind
    assert reply_kind(categories, risk, button=True) == "listen"


@pytest.mark.parametrize("kind", [k for k in REPLY_KINDS if k != "listen"])
def test_the_failsafe_gives_a_pupil_the_same_reply_as_the_normal_path(settings, kind):
    verdict = failsafe.assess_failed_message(MESSAGES[kind])
    if kind == "generic":  # the detector alone does not call it a disclosure; the classifier does
        verdict = failsafe.BY_CLASSIFIER
    assert verdict.may_disclose
    replies = failsafe.recover(
        settings,
        verdict,
        text=MESSAGES[kind],
        sender_id="conv-failsafe",
        channel="rest",
        message_id=f"m-failsafe-{kind}",
        school="lunsford",
        audience="pupil",
    )
    assert replies == [safe_reply("pupil", kind=kind)]
    # Once Rasa sent it (a paragraph a message), the failsafe knows it went out and does not send it twice.
    assert all(failsafe.safe_reply_sent([part]) for part in replies[0].split("\n\n"))


def test_the_failsafe_answers_the_button_with_the_listening_opener(settings):
    verdict = failsafe.assess_failed_message("/disclose")
    assert verdict.may_disclose  # still recorded, recall first
    replies = failsafe.recover(
        settings,
        verdict,
        text="/disclose",
        sender_id="conv-button",
        channel="rest",
        message_id="m-button",
        school="lunsford",
        audience="pupil",
    )
    assert replies == [safe_reply("pupil", kind="listen")]
    assert replies[0].startswith("I'm here. What would you like to tell me?")


def test_the_failsafe_gives_adults_and_unknown_readers_their_usual_reply(settings):
    verdict = failsafe.assess_failed_message(MESSAGES["self_harm"])
    common = dict(text=MESSAGES["self_harm"], sender_id="c", channel="rest", school="lunsford")
    [unknown] = failsafe.recover(settings, verdict, message_id="m-u", audience=None, **common)
    assert unknown == safe_reply(None) == safe_reply("pupil")
    staff = failsafe.recover(settings, verdict, message_id="m-s", audience="staff", **common)
    assert staff[0] == safe_reply("staff")
