"""Safeguarding actions: record a disclosure before any reply, then tell the person what happens next.

The rule is: intent ``disclose`` -> ``action_log_disclosure`` -> ``utter_disclosure_safe`` ->
``action_disclosure_reference``. The logging action sends nothing and never raises: whatever goes wrong, the
safe reply still follows, and the words are kept (database, else spool, else Rasa's tracker store, which the
worker reconciles).

The logging action also sets ``disclosure_kind`` (``bot.safeguarding.categories.reply_kind``: bullying,
images, grooming, self_harm, danger_at_home, danger_now, radicalisation, "listen" for the "Talk to a
grown-up" button, else generic), and ``utter_disclosure_safe`` gives pupils the reply that fits it
(bot/safeguarding/replies.yml). ``action_disclosure_reference`` puts it back to generic, so a disclosure made
while the action server is down (nothing sets the slot) gets the generic reply, not the previous one's.

For pupils and parents ``action_disclosure_reference`` sets ``contact_offered``, and a rule then runs
``contact_form``: its question (``action_ask_contact_details``) offers to pass on a name and class (pupils) or
a phone number or e-mail address (parents). Contact details are taken only when they are contact details:
``action_extract_contact_details`` (the ``contact_details`` slot's custom mapping) takes the answer only if it
is contact details (a name and class, a phone number, an e-mail address: that accepts the offer too), a
refusal, or a yes without them ("yes", "ok you can": ``validate_contact_form`` then asks for them once, and
only details or a refusal are taken after that). Anything else (a question, another topic, "why?", a
disclosure with no details in it) is not taken: the form is rejected, the message is handled as a new
message by the usual rules (a policy answer, the fallback, or a disclosure recorded first and the safe
reply), and ``validate_contact_form`` then ends the form (after a new disclosure it makes the offer again).
A question is never stored as contact details. ``action_save_contact_details`` then:

* nothing taken -> nothing to do or say (the usual rules answered the message);
* a disclosure in the answer (the rules layer says so; only taken with a class or number in it) ->
  recorded as its own disclosure (alerted), kept as contact details of the first one too, and answered with
  the safe reply;
* "no", "no thanks", "I don't want to" -> a kind acknowledgement, nothing kept;
* contact details -> encrypted onto the disclosure (``DisclosureNote``, audit "contact_added", and a message
  to the DSLs that contact details were added) before the reply, which thanks the person and never repeats
  the details; it also sets ``contact_followup``.

Contact details often come in two messages ("jess", then "year 6 class 6B"; "yes my number is", then
"07700 900123"). So once details are kept, a rule starts ``contact_more_form``, which asks nothing and waits
for the next message only. ``action_extract_contact_more`` (its slot's custom mapping) takes that message
into ``contact_more`` only if it looks like more contact details (a class or year, a phone number, an e-mail
address, a short name); ``action_save_more_contact_details`` then keeps it with the same disclosure (or
records it as a disclosure of its own first, as above) and thanks the person briefly. Any other message is
not taken: the form is rejected, the usual rules answer it (a policy question, thanks, a new disclosure), and
``validate_contact_more_form`` ends the wait. A new session ends it too.

If the action server is down none of this runs (``contact_offered`` is never set, so the form never starts);
the safe reply has already gone out and the next message is handled as usual.

The actions are thin: they read the tracker through ``bot/safeguarding/turns.py`` (one reading of a user
turn, shared with the reconciler), leave the deciding and storing to ``bot/safeguarding/contact.py`` (the
contact-details classifier, record or attach) and ``bot/safeguarding/service.py`` (which keeps contact
details only with a disclosure of the same conversation and session), and turn the outcome into replies,
slots and commit markers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.safeguarding.categories import GENERIC_KIND, kind_for
from bot.safeguarding.contact import (
    contact_answer,
    keep_contact_details,
    offer_answer,
    record_latest,
    reference_of,
    takes_as_more,
)
from bot.safeguarding.detector import DISCLOSE_INTENT
from bot.safeguarding.handoff_texts import (
    REFERENCE_UNAVAILABLE,
    contact_declined,
    contact_more_thanks,
    contact_offer,
    contact_prompt,
    contact_thanks,
    handoff_text,
    offers_contact,
)
from bot.safeguarding.redaction import CONTACT, DISCLOSURE, mark_committed
from bot.safeguarding.service import RecordResult
from bot.safeguarding.turns import Conversation, discloses
from bot.settings import AUDIENCES, Settings, get_settings

logger = logging.getLogger(__name__)

REFERENCE_SLOT = "disclosure_reference"
KIND_SLOT = "disclosure_kind"
CONTACT_SLOT = "contact_details"
OFFER_SLOT = "contact_offered"
FOLLOWUP_SLOT = "contact_followup"
MORE_SLOT = "contact_more"
MORE_FORM = "contact_more_form"
CONTACT_FORM = "contact_form"
REQUESTED_SLOT = "requested_slot"
REFERENCE_ACTION = "action_disclosure_reference"
SAVE_ACTION = "action_save_contact_details"

__all__ = [
    "ActionAskContactDetails",
    "ActionDisclosureReference",
    "ActionExtractContactDetails",
    "ActionExtractContactMore",
    "ActionLogDisclosure",
    "ActionSaveContactDetails",
    "ActionSaveMoreContactDetails",
    "ValidateContactForm",
    "ValidateContactMoreForm",
    "maybe_start_worker",
]


def _audience(conversation: Conversation, settings: Settings | None) -> str:
    audience = conversation.slot("audience", conversation.latest.get("metadata"))
    return str(audience or (settings or get_settings()).default_audience)


def _audience_events(conversation: Conversation) -> list[dict[str, Any]]:
    """The ``audience`` slot from the message's metadata when it is still unset, so that the safe reply's
    audience variant applies. The "Talk to a grown-up" button's ``/disclose`` payload skips the NLU pipeline,
    which otherwise sets the slot from the (validated) metadata."""
    if conversation.slots.get("audience"):
        return []
    metadata = conversation.latest.get("metadata")
    value = metadata.get("audience") if isinstance(metadata, Mapping) else None
    if isinstance(value, str) and value.strip().lower() in AUDIENCES:
        return [SlotSet("audience", value.strip().lower())]
    return []


def _is_disclosure(text: str, conversation: Conversation) -> bool:
    return discloses(text, conversation.latest)


def _intent(conversation: Conversation) -> Any:
    intent = conversation.latest.get("intent")
    return intent.get("name") if isinstance(intent, Mapping) else None


def _pressed_the_button(conversation: Conversation) -> bool:
    """The latest message is the "Talk to a grown-up" button (its payload): nothing has been said yet."""
    return str(conversation.latest.get("text") or "").strip().startswith(f"/{DISCLOSE_INTENT}")


def _reply_kind(conversation: Conversation, settings: Settings | None = None) -> str:
    """Which reply fits the latest message for this audience (``kind_for``: the pupil's kinds, the staff
    allegation reply); generic if that cannot be told."""
    try:
        audience = _audience(conversation, settings)
        if _pressed_the_button(conversation):
            return kind_for(audience, (), button=True)
        turn = conversation.latest_turn()
        categories, risk = turn.verdict()
        return kind_for(audience, categories, risk)
    except Exception:
        logger.exception("Could not tell what the disclosure is about; the pupil gets the generic reply")
        return GENERIC_KIND


def _kind_events(conversation: Conversation, kind: str) -> list[dict[str, Any]]:
    """``disclosure_kind`` set to ``kind`` unless it already is (unset counts as generic)."""
    current = conversation.slots.get(KIND_SLOT) or GENERIC_KIND
    return [] if current == kind else [SlotSet(KIND_SLOT, kind)]


async def _record(settings: Settings | None, conversation: Conversation) -> RecordResult | None:
    try:
        settings = settings or get_settings()
    except Exception:
        logger.critical("DISCLOSURE NOT STORED: the settings could not be read", exc_info=True)
        return None
    # The database and spool writes block; keep the action server's event loop free meanwhile.
    return await asyncio.to_thread(record_latest, settings, conversation)


class ActionLogDisclosure(Action):
    """Record the latest user message as a disclosure, before any reply; sets ``disclosure_reference`` and
    ``disclosure_kind`` (which of the pupil's safe replies fits)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    def name(self) -> str:
        return "action_log_disclosure"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        conversation = Conversation(tracker)
        result = await _record(self._settings, conversation)
        kind = await asyncio.to_thread(_reply_kind, conversation, self._settings)
        context = [*_audience_events(conversation), *_kind_events(conversation, kind)]
        if result is not None and result.stored != "log":
            reference = _committed(SlotSet(REFERENCE_SLOT, result.reference), conversation, result.reference)
            return [reference, *context]
        return [SlotSet(REFERENCE_SLOT, None), *context]


class ActionDisclosureReference(Action):
    """After the safe reply: the reference for staff and parents; ``contact_offered`` for pupils and parents.

    ``contact_offered`` (true for pupils and parents) is what the rule that starts ``contact_form`` waits for;
    the question itself is the form's, so it is only ever asked when its answer will be captured. Not after
    the "Talk to a grown-up" button: its reply asks what the child would like to tell, and asking for a name
    and class as well, before anything was said, would be two questions at once (the offer comes after what
    they then tell). The safe reply has gone out: ``disclosure_kind`` goes back to generic for the next one.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    def name(self) -> str:
        return "action_disclosure_reference"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        try:
            conversation = Conversation(tracker)
            audience = _audience(conversation, self._settings)
            text = handoff_text(audience, reference_of(conversation))
            offered = offers_contact(audience) and not _pressed_the_button(conversation)
        except Exception:
            logger.exception("Could not tailor the disclosure hand-off message")
            text, offered = REFERENCE_UNAVAILABLE, False
        if text:
            dispatcher.utter_message(text=text)
        try:
            reset = _kind_events(Conversation(tracker), GENERIC_KIND)
        except Exception:
            logger.exception("Could not read disclosure_kind; setting it back to generic")
            reset = [SlotSet(KIND_SLOT, GENERIC_KIND)]
        return [SlotSet(OFFER_SLOT, offered), *reset]


# --- optional contact details after a disclosure (bot/safeguarding/contact.py) ----------------------------


def _safe_reply(dispatcher: CollectingDispatcher, audience: str, kind: str | None = None) -> None:
    try:
        from bot.safeguarding.replies import safe_reply

        dispatcher.utter_message(text=safe_reply(audience, kind=kind))
    except Exception:
        logger.warning("Safe reply texts unavailable; using utter_disclosure_safe", exc_info=True)
        dispatcher.utter_message(response="utter_disclosure_safe")


class ActionAskContactDetails(Action):
    """contact_form's question: the offer (once), or, after a bare "yes"/"ok", a short prompt (once)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    def name(self) -> str:
        return "action_ask_contact_details"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        conversation = Conversation(tracker)
        try:
            audience: str | None = _audience(conversation, self._settings)
        except Exception:
            logger.exception("Could not tell who is asking; using the wording that suits anyone")
            audience = None
        if conversation.user_messages_after(REFERENCE_ACTION) == 0:
            dispatcher.utter_message(text=contact_offer(audience))
        else:
            dispatcher.utter_message(text=contact_prompt(audience))
        return []


def _previous_answer(conversation: Conversation) -> tuple[str, Mapping[str, Any]] | None:
    """The user message before the latest one (its text and parse data), if there is one in the events."""
    current = conversation.latest_user_index()
    if current is None:
        return None
    for index in range(current - 1, conversation.session_start() - 1, -1):
        event = conversation.events[index]
        if isinstance(event, Mapping) and event.get("event") == "user":
            parse_data = event.get("parse_data")
            text = event.get("text")
            return (text if isinstance(text, str) else ""), (
                parse_data if isinstance(parse_data, Mapping) else {}
            )
    return None


def _answer_to_the_offer(conversation: Conversation) -> str:
    """What the latest message is while contact_form asks (``offer_answer``): the first message after the
    offer, or the one after a first answer that said yes without the details (the form asked for them)."""
    text = conversation.latest.get("text")
    if not isinstance(text, str):
        return "other"
    answers = conversation.user_messages_since(REFERENCE_ACTION)
    if answers == 1:
        return offer_answer(text, conversation.latest)
    if answers == 2:
        previous = _previous_answer(conversation)
        if previous is not None and offer_answer(*previous) == "accepted":
            return offer_answer(text, conversation.latest, accepted=True)
    return "other"


class _ExtractWhileWaiting:
    """A custom slot mapping run by Rasa's ``action_extract_slots`` while ``form`` is active and ``flag`` is
    set: the latest message fills ``slot`` only if :meth:`takes` says so. Taking nothing rejects the form, so
    the message goes to the usual rules instead. A mixin, not an Action: Rasa SDK registers every Action
    subclass by its name."""

    form: str
    flag: str
    slot: str
    what: str

    def takes(self, conversation: Conversation) -> bool:
        raise NotImplementedError

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        try:
            conversation = Conversation(tracker)
            loop = tracker.active_loop if isinstance(tracker.active_loop, Mapping) else {}
            if loop.get("name") != self.form or not conversation.slots.get(self.flag):
                return []
            if self.takes(conversation):
                return [SlotSet(self.slot, conversation.latest.get("text"))]
        except Exception:
            logger.exception("Could not tell whether a message %s; leaving it", self.what)
        return []


class ActionExtractContactDetails(_ExtractWhileWaiting, Action):
    """``contact_details``'s custom mapping, run by Rasa's ``action_extract_slots`` while ``contact_form``
    asks. The message is taken only if it answers the offer: contact details (which accept it too), a
    refusal, or a yes with the details still to come (first answer only; the form then asks for them once).
    Anything else (a question, another topic, "why?", a disclosure with no details in it) is not taken: the
    form is rejected, the usual rules answer the message (a disclosure is recorded first), and
    ``validate_contact_form`` then ends the form. A question is never stored as contact details."""

    form, flag, slot, what = CONTACT_FORM, OFFER_SLOT, CONTACT_SLOT, "answers the contact offer"

    def name(self) -> str:
        return "action_extract_contact_details"

    def takes(self, conversation: Conversation) -> bool:
        return _answer_to_the_offer(conversation) != "other"


def _returned_without_an_answer(tracker: Tracker, form: str) -> bool:
    """``form`` runs again after the usual rules answered a message it did not take: Rasa rejected it since
    the latest user message. Not at the form's start (no rejection), and not for a message it took."""
    loop = tracker.active_loop if isinstance(tracker.active_loop, Mapping) else {}
    if loop.get("name") != form:
        return False
    for event in reversed(tracker.events or []):
        if not isinstance(event, Mapping):
            continue
        if event.get("event") == "user":
            return False
        if event.get("event") == "action_execution_rejected" and event.get("name") == form:
            return True
    return False


def _handed_off_since_the_latest_message(tracker: Tracker) -> bool:
    """``action_disclosure_reference`` ran after the latest user message: it was a new disclosure."""
    for event in reversed(tracker.events or []):
        if isinstance(event, Mapping) and event.get("event") == "user":
            return False
        if (
            isinstance(event, Mapping)
            and event.get("event") == "action"
            and event.get("name") == REFERENCE_ACTION
        ):
            return True
    return False


class ValidateContactForm(FormValidationAction):
    """A first answer that says yes without the details ("yes", "ok you can") means "I'd like to": ask for
    them once (``contact_prompt``). Back from a message the form did not take (the usual rules answered it),
    the form ends and nothing is kept; if that message was a new disclosure (recorded, safe reply, hand-off),
    the offer is made again instead."""

    def name(self) -> str:
        return "validate_contact_form"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        try:
            if (
                _returned_without_an_answer(tracker, CONTACT_FORM)
                and not Conversation(tracker).slots.get(CONTACT_SLOT)
                and not _handed_off_since_the_latest_message(tracker)
            ):
                return [SlotSet(REQUESTED_SLOT, None)]
        except Exception:
            logger.exception("Could not tell whether the contact form should end; it goes on")
        return await super().run(dispatcher, tracker, domain)

    async def validate_contact_details(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            conversation = Conversation(tracker)
            if (
                isinstance(slot_value, str)
                and conversation.user_messages_after(REFERENCE_ACTION) <= 1
                and offer_answer(slot_value, conversation.latest) == "accepted"
            ):
                return {CONTACT_SLOT: None}
        except Exception:
            logger.exception("Could not check the contact details answer; taking it as given")
        return {CONTACT_SLOT: slot_value}


class ActionSaveContactDetails(Action):
    """After contact_form: keep the details with the disclosure (or record a new disclosure), then reply.

    ``contact_followup`` is set (true) only when details were kept: a rule then waits for more in the next
    message (``contact_more_form``). Declined, a disclosure instead, or nothing could keep them (or the
    disclosure named is not this conversation's session's, see ``attach_contact_details``): null.
    """

    # Added to the "contact_added" audit event of every note this action keeps.
    audit_detail: dict[str, Any] = {}
    # What asked for the details (store.NOTE_ORIGINS), shown by `schoolguide disclosures show`.
    origin = "contact_form"

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    def name(self) -> str:
        return "action_save_contact_details"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [SlotSet(CONTACT_SLOT, None), SlotSet(OFFER_SLOT, None)]
        followup: list[dict[str, Any]] = [SlotSet(FOLLOWUP_SLOT, None)]
        audience: str | None = None
        try:
            settings = self._settings or get_settings()
            conversation = Conversation(tracker)
            audience = _audience(conversation, settings)
            answer = conversation.slots.get(CONTACT_SLOT)
            if not answer:
                return events + followup  # the form took nothing: the usual rules answered the message
            text = answer if isinstance(answer, str) else str(answer)
            if _is_disclosure(text, conversation):
                second = await self._second_disclosure(dispatcher, conversation, settings, audience, text)
                return events + followup + second
            if contact_answer(text, _intent(conversation)) != "details":
                dispatcher.utter_message(text=contact_declined(audience, reference_of(conversation)))
                return events + followup
            if not takes_as_more(text, conversation.latest):
                # action_extract_contact_details takes no such message; never keep one (a question) anyway.
                logger.warning("contact_form handed over a message that is not contact details; not kept")
                dispatcher.utter_message(text=contact_declined(audience, reference_of(conversation)))
                return events + followup
            saved, kept = await self._keep(settings, conversation, text)
            dispatcher.utter_message(text=contact_thanks(audience, saved=saved))
            if saved:
                followup = [SlotSet(FOLLOWUP_SLOT, True)]
                events[0] = _committed_contact(events[0], conversation, kept)
            return events + kept + followup
        except Exception:
            logger.exception("Handling contact details after a disclosure failed unexpectedly")
            dispatcher.utter_message(text=contact_thanks(audience, saved=False))
            return events + followup

    async def _keep(
        self, settings: Settings, conversation: Conversation, text: str, also_recorded_as: str | None = None
    ) -> tuple[bool, list[dict[str, Any]]]:
        """Attach ``text`` as contact details; returns (kept durably, the reference slot if it changed)."""
        note, reference = await asyncio.to_thread(
            keep_contact_details,
            settings,
            conversation,
            text,
            origin=self.origin,
            audit_detail=self.audit_detail,
            also_recorded_as=also_recorded_as,
        )
        saved = note is not None and note.kept
        changed = bool(reference) and reference != reference_of(conversation)
        return saved, [SlotSet(REFERENCE_SLOT, reference)] if changed else []

    async def _second_disclosure(
        self,
        dispatcher: CollectingDispatcher,
        conversation: Conversation,
        settings: Settings,
        audience: str,
        text: str,
    ) -> list[dict[str, Any]]:
        """The answer discloses harm: record it as a disclosure first, keep it as contact details too."""
        result = await _record(settings, conversation)
        reference = result.reference if result is not None and result.stored != "log" else None
        try:
            await self._keep(settings, conversation, text, also_recorded_as=reference)
        except Exception:
            logger.exception("Could not also keep the disclosure as contact details of the first one")
        _safe_reply(dispatcher, audience, await asyncio.to_thread(_reply_kind, conversation))
        follow_up = handoff_text(audience, reference)
        if follow_up:
            dispatcher.utter_message(text=follow_up)
        return [_committed(SlotSet(REFERENCE_SLOT, reference), conversation, reference)] if reference else []


class ActionExtractContactMore(_ExtractWhileWaiting, Action):
    """``contact_more``'s custom mapping, run by Rasa's ``action_extract_slots`` while ``contact_more_form``
    waits: the message is taken only if it is the first one after the details were kept and looks like more
    of them. Taking nothing rejects the form, so the message goes to the usual rules instead."""

    form, flag, slot, what = MORE_FORM, FOLLOWUP_SLOT, MORE_SLOT, "adds to the contact details"

    def name(self) -> str:
        return "action_extract_contact_more"

    def takes(self, conversation: Conversation) -> bool:
        if conversation.user_messages_since(SAVE_ACTION) != 1:
            return False  # only the message right after the details, in the same session
        text = conversation.latest.get("text")
        return isinstance(text, str) and takes_as_more(text, conversation.latest)


class ValidateContactMoreForm(Action):
    """``contact_more_form`` waits for one message. Back from a message it did not take (the usual rules
    answered it), it stops waiting: nothing is asked, and the next message is an ordinary message again.
    Rasa also runs this when the form starts (the form is already active then): it must not end it there."""

    def name(self) -> str:
        return "validate_contact_more_form"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if _returned_without_an_answer(tracker, MORE_FORM) and not Conversation(tracker).slots.get(MORE_SLOT):
            return [SlotSet(REQUESTED_SLOT, None)]
        return []


class ActionSaveMoreContactDetails(ActionSaveContactDetails):
    """After contact_more_form: keep the second message with the same disclosure and thank the person briefly;
    a disclosure in it is recorded as a disclosure of its own first. Nothing taken (the wait ended): nothing
    to do or say."""

    audit_detail = {"follow_up": True}
    origin = "contact_more"

    def name(self) -> str:
        return "action_save_more_contact_details"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [SlotSet(MORE_SLOT, None), SlotSet(FOLLOWUP_SLOT, None)]
        conversation = Conversation(tracker)
        answer = conversation.slots.get(MORE_SLOT)
        if not answer:
            return events
        text = answer if isinstance(answer, str) else str(answer)
        audience: str | None = None
        try:
            settings = self._settings or get_settings()
            audience = _audience(conversation, settings)
            if _is_disclosure(text, conversation):
                second = await self._second_disclosure(dispatcher, conversation, settings, audience, text)
                return events + second
            saved, kept = await self._keep(settings, conversation, text)
            dispatcher.utter_message(text=contact_more_thanks(audience, saved=saved))
            if saved:
                events[0] = _committed_contact(events[0], conversation, kept)
            return events + kept
        except Exception:
            logger.exception("Handling more contact details after a disclosure failed unexpectedly")
            dispatcher.utter_message(text=contact_more_thanks(audience, saved=False))
            return events


# --- commit markers (bot/safeguarding/redaction.py) ---------------------------------------------------------
# Returned only after a confirmed commit (database or spool): the tracker store then keeps the reference
# instead of the words. Without a marker the words stay there for the reconciler.


def _committed(
    event: dict[str, Any], conversation: Conversation, reference: str, kind: str = DISCLOSURE
) -> dict[str, Any]:
    try:
        message_id = conversation.latest_turn().message_id
        return mark_committed(event, message_id=message_id, reference=reference, kind=kind)
    except Exception:
        logger.exception("Could not mark the message as committed; the tracker store keeps its words")
        return event


def _committed_contact(
    event: dict[str, Any], conversation: Conversation, kept: list[dict[str, Any]]
) -> dict[str, Any]:
    """``event`` marking the latest message as contact details kept with the disclosure in ``kept`` (or the
    one the conversation already has)."""
    reference = kept[0].get("value") if kept else reference_of(conversation)
    return _committed(event, conversation, reference, CONTACT) if reference else event


def maybe_start_worker(settings: Settings | None = None) -> bool:
    """Start the hand-off worker in the action server unless SCHOOLGUIDE_WORKER=off (tests set it off)."""
    settings = settings or get_settings()
    if not settings.worker_enabled:
        return False
    try:
        from bot.safeguarding.worker import start_background_worker

        start_background_worker(settings)
        return True
    except Exception:
        logger.critical("The safeguarding worker could not start: alerts will not be sent", exc_info=True)
        return False
