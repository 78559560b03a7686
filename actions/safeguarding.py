"""Safeguarding actions: record a disclosure before any reply, then tell the person what happens next.

The rule is: intent ``disclose`` -> ``action_log_disclosure`` -> ``utter_disclosure_safe`` ->
``action_disclosure_reference``. The logging action sends nothing and never raises: whatever goes wrong, the
safe reply still follows, and the words are kept (database, else spool, else Rasa's tracker store, which the
worker reconciles).

For pupils and parents ``action_disclosure_reference`` sets ``contact_offered``, and a rule then runs
``contact_form``: its question (``action_ask_contact_details``) offers to pass on a name and class (pupils) or
a phone number or e-mail address (parents), and whatever the person types next is taken as the answer
(``contact_details``, ``from_text``), never routed to a policy answer or the fallback menu.
``action_save_contact_details`` then:

* a disclosure in the answer (the rules layer says so) -> recorded as its own disclosure (alerted), kept as
  contact details of the first one too, and answered with the safe reply;
* "no", "no thanks", "I don't want to" -> a kind acknowledgement, nothing kept;
* anything else -> encrypted onto the disclosure (``DisclosureNote``, audit "contact_added", and a message to
  the DSLs that contact details were added) before the reply, which thanks the person and never repeats the
  details; it also sets ``contact_followup``.

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
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

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
from bot.safeguarding.service import NoteResult, RecordResult, attach_contact_details, record_disclosure
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

REFERENCE_SLOT = "disclosure_reference"
CONTACT_SLOT = "contact_details"
OFFER_SLOT = "contact_offered"
FOLLOWUP_SLOT = "contact_followup"
MORE_SLOT = "contact_more"
MORE_FORM = "contact_more_form"
REQUESTED_SLOT = "requested_slot"
LOG_ACTION = "action_log_disclosure"
REFERENCE_ACTION = "action_disclosure_reference"
SAVE_ACTION = "action_save_contact_details"
CONTEXT_MESSAGES = 6

__all__ = [
    "ActionAskContactDetails",
    "ActionDisclosureReference",
    "ActionExtractContactMore",
    "ActionLogDisclosure",
    "ActionSaveContactDetails",
    "ActionSaveMoreContactDetails",
    "ValidateContactForm",
    "ValidateContactMoreForm",
    "maybe_start_worker",
]


def _assess(text: str, latest_message: Mapping[str, Any]) -> tuple[list[str], str]:
    """Categories and risk: the NLU pipeline's result if present, else the detector, else other/high."""
    stored = latest_message.get("safeguarding")
    if isinstance(stored, Mapping) and stored.get("categories"):
        return list(stored["categories"]), str(stored.get("risk") or "high")
    try:
        # Imported here so a missing or broken detector can never stop a disclosure being recorded.
        from bot.safeguarding.detector import assess

        assessment = assess(text)
        return list(assessment.categories) or ["other"], str(assessment.risk)
    except Exception:
        logger.warning(
            "Safeguarding detector unavailable; recording the disclosure as other/high", exc_info=True
        )
        return ["other"], "high"


def _latest_user_index(events: list[Any], message_id: Any) -> int | None:
    latest = None
    for index, event in enumerate(events):
        if isinstance(event, Mapping) and event.get("event") == "user":
            latest = index
            if message_id and event.get("message_id") == message_id:
                return index
    return latest


def _latest_channel(events: list[Any]) -> Any:
    """Like Tracker.get_latest_input_channel, but tolerant of malformed events."""
    for event in reversed(events):
        if isinstance(event, Mapping) and event.get("event") == "user":
            return event.get("input_channel")
    return None


def _context(events: list[Any], before: int | None) -> list[dict[str, str]]:
    """The last few user and bot messages before the disclosure, oldest first."""
    earlier = events[:before] if before is not None else events
    messages = [
        {"who": str(event.get("event")), "text": str(event.get("text") or "")}
        for event in earlier
        if isinstance(event, Mapping) and event.get("event") in ("user", "bot") and event.get("text")
    ]
    return messages[-CONTEXT_MESSAGES:]


def _slot(tracker: Tracker, name: str, metadata: Mapping[str, Any]) -> Any:
    value = tracker.slots.get(name) if isinstance(tracker.slots, Mapping) else None
    return value if value else metadata.get(name)


def _events(tracker: Tracker) -> list[Any]:
    return tracker.events if isinstance(tracker.events, list) else []


def _latest(tracker: Tracker) -> Mapping[str, Any]:
    return tracker.latest_message if isinstance(tracker.latest_message, Mapping) else {}


def _audience(tracker: Tracker, settings: Settings | None) -> str:
    latest = _latest(tracker)
    metadata = latest.get("metadata") if isinstance(latest.get("metadata"), Mapping) else {}
    audience = _slot(tracker, "audience", metadata)
    if not audience:
        audience = (settings or get_settings()).default_audience
    return str(audience)


def _disclosure_fields(tracker: Tracker) -> dict[str, Any]:
    latest = tracker.latest_message if isinstance(tracker.latest_message, Mapping) else {}
    events = tracker.events if isinstance(tracker.events, list) else []
    metadata = latest.get("metadata") if isinstance(latest.get("metadata"), Mapping) else {}
    text = latest.get("text")
    message_id = latest.get("message_id")
    index = _latest_user_index(events, message_id)
    if not message_id and index is not None:
        event = events[index]
        # Rasa always sets one; if not, the event's timestamp still identifies this message on a retry.
        message_id = event.get("message_id") or (
            f"event-ts:{event['timestamp']}" if event.get("timestamp") else None
        )
    categories, risk = _assess(str(text or ""), latest)
    return dict(
        school=_slot(tracker, "school", metadata),
        audience=_slot(tracker, "audience", metadata),
        channel=_latest_channel(events),
        sender_id=tracker.sender_id,
        message_id=message_id,
        text=text,
        context=_context(events, index),
        categories=categories,
        risk=risk,
    )


def _emergency_spool(settings: Settings | None, tracker: Tracker) -> RecordResult | None:
    """Last resort when recording itself failed unexpectedly: spool whatever can be read of the message."""
    try:
        from bot.safeguarding.service import prepare_disclosure, spool_disclosure

        settings = settings or get_settings()
        latest = tracker.latest_message if isinstance(tracker.latest_message, Mapping) else {}
        prepared = prepare_disclosure(
            settings,
            school=None,
            audience=None,
            channel=None,
            sender_id=getattr(tracker, "sender_id", None),
            message_id=latest.get("message_id"),
            text=latest.get("text"),
            context=None,
            categories=None,
            risk=None,
        )
        return RecordResult(reference=spool_disclosure(settings, prepared), stored="spool")
    except Exception:
        logger.critical(
            "DISCLOSURE NOT STORED for conversation %r: recording and the emergency spool both failed. "
            "The message is still in Rasa's tracker store; run `schoolguide disclosures reconcile`.",
            getattr(tracker, "sender_id", None),
            exc_info=True,
        )
        return None


def _wake_worker() -> None:
    try:
        from bot.safeguarding.worker import wake

        wake()
    except Exception:
        logger.warning("Could not wake the safeguarding worker; alerts go on its next pass", exc_info=True)


class ActionLogDisclosure(Action):
    """Record the latest user message as a disclosure, before any reply; sets ``disclosure_reference``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    def name(self) -> str:
        return "action_log_disclosure"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        result: RecordResult | None = None
        try:
            settings = self._settings or get_settings()
            fields = _disclosure_fields(tracker)
            # The database and spool writes block; keep the action server's event loop free meanwhile.
            result = await asyncio.to_thread(record_disclosure, settings, **fields)
        except Exception:
            logger.exception("Recording a disclosure failed unexpectedly; using the emergency spool")
            result = _emergency_spool(self._settings, tracker)
        if result is not None and result.stored != "log":
            _wake_worker()
            return [
                _committed(SlotSet(REFERENCE_SLOT, result.reference), tracker, result.reference, DISCLOSURE)
            ]
        return [SlotSet(REFERENCE_SLOT, None)]


class ActionDisclosureReference(Action):
    """After the safe reply: the reference for staff and parents; ``contact_offered`` for pupils and parents.

    ``contact_offered`` (true for pupils and parents) is what the rule that starts ``contact_form`` waits for;
    the question itself is the form's, so it is only ever asked when its answer will be captured.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    def name(self) -> str:
        return "action_disclosure_reference"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        try:
            audience = _audience(tracker, self._settings)
            reference = _reference(tracker)
            text = handoff_text(audience, reference)
            offered = offers_contact(audience)
        except Exception:
            logger.exception("Could not tailor the disclosure hand-off message")
            text, offered = REFERENCE_UNAVAILABLE, False
        if text:
            dispatcher.utter_message(text=text)
        return [SlotSet(OFFER_SLOT, offered)]


# --- optional contact details after a disclosure ------------------------------------------------------------

# Whole answers made only of these words (and at least one refusal, or intent "deny") decline the offer.
_REFUSALS = frozenset(
    "no nope nah na not dont don never rather prefer anonymous skip pass nothing none wont cant".split()
)
_DECLINE_WORDS = _REFUSALS | frozenset(
    """thanks thank you ty thx i im id ill to want wanna say tell telling give giving share it its is ok okay
    fine good that thats alright all right please sorry now really later maybe yet my me name number email
    details class stay be keep would like do mind way bye goodbye just leave know well um umm though tho but
    the a any x xx""".split()
)
# Whole answers made only of these words carry no details ("yes", "ok", "thank you").
_AFFIRMATIONS = frozenset("yes yeah yea yep yup ya y ok okay k kk sure alright go".split())
_FILLER_WORDS = _AFFIRMATIONS | frozenset(
    "please thanks thank you ty thx cool um umm hmm right on then and so hi hello hey oh ah well good great "
    "fine x xx".split()
)
_WORD = re.compile(r"\w+|[@+]")
# "it's ok", "that's fine thanks", "I'm good": British for "no, thank you".
_POLITE_NO = re.compile(
    r"(?:no )?(?:its|thats|im|i am) (?:ok|okay|fine|alright|all right|good)(?: thanks?| thank you)?"
)


def _words(text: str) -> list[str]:
    """Lower-case words; apostrophes dropped ("don't" -> "dont"), "nooo" -> "no"."""
    plain = text.lower().replace("\u2019", "").replace("'", "")
    words = []
    for word in _WORD.findall(plain):
        if re.fullmatch(r"n+o+", word):
            word = "no"
        elif re.fullmatch(r"n+a+h+", word):
            word = "nah"
        words.append(word)
    return words


def _contact_answer(text: str, intent: Any) -> str:
    """ "declined", "empty" (only "yes", "ok", "thanks"...) or "details". Anything unclear counts as details:
    keeping a message that was not a name costs nothing, dropping one that was could cost a child help."""
    ordered = _words(text)
    words = set(ordered)
    if not words:
        return "empty"
    if words <= _DECLINE_WORDS and (words & _REFUSALS or intent == "deny"):
        return "declined"
    if _POLITE_NO.fullmatch(" ".join(ordered)):
        return "declined"
    if words <= _FILLER_WORDS:
        return "empty"
    return "details"


# --- more contact details in the next message ---------------------------------------------------------------

_PHONE = re.compile(r"(?:\+|\b)\d[\d \-().]{5,}\d\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# "6b", "10rt", "y6"; not "2nd", "5pm", "13s".
_CLASS_CODE = re.compile(r"(?:[1-9]|1[0-3])[a-z]{1,3}|y(?:[1-9]|1[0-3])")
_NOT_CLASS_CODES = re.compile(r"\d+(?:st|nd|rd|th|am|pm|s|yo|yrs|min|mins|hr|hrs)")
_YEAR_WORDS = frozenset("year yr".split())
_CLASS_WORDS = frozenset("class form set group".split())
_SCHOOL_STAGES = frozenset("reception nursery".split())
# Words around contact details that are not part of them: "my name is", "I'm in", "my son's number is"...
_LEAD_INS = frozenset(
    """my name names is im i am its it this me called call in and also oh sorry yes yeah yep ok okay hi hello
    hey thanks thank you please x xx the a our her his their son sons daughter daughters child childs kid mum
    mums mom moms dad dads number email phone mobile tel on at from too as well by surname first
    last""".split()
)
_QUESTION_WORDS = frozenset(
    """what who whom whose which when where why how can could should would will shall may might must do does
    did is are am was were have has had""".split()
)
# Words that are not names: short everyday chat, feelings, and what policy questions are about.
_COMMON_WORDS = (
    _REFUSALS
    | _DECLINE_WORDS
    | _AFFIRMATIONS
    | _FILLER_WORDS
    | _QUESTION_WORDS
    | frozenset(
        """an or if of to for with about into over after before up down out off than then too very just only
        also yes you your yours he him she hers we us they them these those there here that get gets
        got go goes going went want wants know think say says tell told ask asked let make made see
        saw look help need use used post posted share shared follow followed send sent message
        messaged talk talked stop like likes love find found feel felt happen happened left try give
        gave take took come came put allowed allow bye goodbye hiya cool great nice lol omg idk
        dunno hmm wow yay school teacher teachers staff policy policies rule rules photo photos
        picture pictures pic pics video videos app apps account accounts online social media phones
        friend friends parent parents children kids pupil pupils student students messages chat
        chats groups post posts comment comments age old safe unsafe bullying bully bullied internet
        website game games homework private public secret problem trouble worried scared sad upset
        angry frightened lonely hurt crying cry afraid unhappy anxious report snapchat tiktok
        instagram insta whatsapp facebook youtube roblox discord fortnite minecraft twitter reddit
        twitch telegram today tomorrow yesterday tonight morning night week day time everything
        something anything someone anyone everyone nobody people person thing things stuff really
        again still already more much many some every other another same new done""".split()
    )
)
MAX_NAME_WORDS = 3
MAX_DETAILS_WORDS = 15


def _entity_words(latest: Mapping[str, Any]) -> set[str]:
    """Words the NLU recognised as a platform or a role ("snapchat", "coach"): not names."""
    words: set[str] = set()
    entities = latest.get("entities") if isinstance(latest.get("entities"), list) else []
    for entity in entities:
        if isinstance(entity, Mapping) and entity.get("entity") in ("platform", "role"):
            words.update(_words(str(entity.get("value") or "")))
    return words


def _without_class(words: list[str]) -> tuple[list[str], bool]:
    """``words`` without a class, year or form ("year 6", "class 6b", "6b", "reception"); and whether one was
    there. A bare number (an age or a year group) counts only in a very short answer."""
    rest: list[str] = []
    found = False
    index = 0
    while index < len(words):
        word, following = words[index], words[index + 1] if index + 1 < len(words) else ""
        if word in _YEAR_WORDS and re.fullmatch(r"[1-9]|1[0-3]|r", following):
            found, index = True, index + 2
        elif word in _CLASS_WORDS and following and following not in _COMMON_WORDS:
            found, index = True, index + 2
        elif word in _SCHOOL_STAGES or (_CLASS_CODE.fullmatch(word) and not _NOT_CLASS_CODES.fullmatch(word)):
            found, index = True, index + 1
        elif len(words) <= 4 and re.fullmatch(r"[1-9]|1[0-8]", word):
            found, index = True, index + 1
        else:
            rest.append(word)
            index += 1
    return rest, found


def _has_phone_or_email(text: str) -> bool:
    return bool(_EMAIL.search(text)) or any(
        7 <= sum(char.isdigit() for char in match) <= 15 for match in _PHONE.findall(text)
    )


def _more_contact_details(text: str, latest: Mapping[str, Any]) -> bool:
    """Whether a message right after contact details looks like more of them: a phone number or e-mail
    address, a class or year ("year 6 class 6B", "6B"), or a short name ("jess", "it's Jess Smith").

    A question, a refusal, "ok thanks", or a sentence about anything else is not: it goes to the usual rules.
    The NLU's intent is not used: it calls names and numbers all sorts of things.
    """
    words = _words(text)
    if not words or len(words) > MAX_DETAILS_WORDS:
        return False
    if _has_phone_or_email(text):
        return True
    if "?" in text or words[0] in _QUESTION_WORDS:
        return False
    intent = latest.get("intent") if isinstance(latest.get("intent"), Mapping) else {}
    if _contact_answer(text, intent.get("name")) != "details":
        return False
    rest, found_class = _without_class(words)
    names = [word for word in rest if word not in _LEAD_INS]
    if not names:
        return found_class
    not_names = _COMMON_WORDS | _entity_words(latest)
    return len(names) <= MAX_NAME_WORDS and all(
        word.isalpha() and len(word) > 1 and word not in not_names for word in names
    )


def _user_messages_since(events: list[Any], action_name: str) -> int | None:
    """User messages since ``action_name`` last ran in this session; None if it has not run in it."""
    count = 0
    for event in reversed(events):
        if not isinstance(event, Mapping):
            continue
        if event.get("event") == "action" and event.get("name") == action_name:
            return count
        if event.get("event") == "session_started" or (
            event.get("event") == "action" and event.get("name") == "action_session_start"
        ):
            return None
        if event.get("event") == "user":
            count += 1
    return None


def _is_bare_yes(text: str) -> bool:
    ordered = _words(text)
    words = set(ordered)
    if not words or _POLITE_NO.fullmatch(" ".join(ordered)):
        return False
    return words <= _FILLER_WORDS and bool(words & _AFFIRMATIONS)


def _is_disclosure(text: str, latest: Mapping[str, Any]) -> bool:
    """The rules layer decides. The intent classifier alone does not: it calls names and phone numbers
    "disclose" (they are kept as contact details either way). Without the rules layer: the NLU pipeline's
    verdict, then the intent, erring towards recording."""
    try:
        from bot.safeguarding.detector import assess

        return bool(assess(text).is_disclosure)
    except Exception:
        logger.warning("Safeguarding detector unavailable; using the NLU result instead", exc_info=True)
    stored = latest.get("safeguarding")
    if isinstance(stored, Mapping) and stored.get("is_disclosure"):
        return True
    intent = latest.get("intent") if isinstance(latest.get("intent"), Mapping) else {}
    return intent.get("name") == "disclose"


def _reference(tracker: Tracker) -> str | None:
    reference = tracker.slots.get(REFERENCE_SLOT) if isinstance(tracker.slots, Mapping) else None
    return str(reference) if reference else None


def _answers_since_offer(events: list[Any]) -> int:
    """User messages since the last hand-off message (0 while the form asks its question the first time)."""
    count = 0
    for event in reversed(events):
        if not isinstance(event, Mapping):
            continue
        if event.get("event") == "action" and event.get("name") == REFERENCE_ACTION:
            return count
        if event.get("event") == "user":
            count += 1
    return 0


def _disclosure_index(events: list[Any], before: int | None) -> int | None:
    """The user message that action_log_disclosure last recorded before index ``before``."""
    end = before if before is not None else len(events)
    for index in range(end - 1, -1, -1):
        event = events[index]
        if isinstance(event, Mapping) and event.get("event") == "action" and event.get("name") == LOG_ACTION:
            for earlier in range(index - 1, -1, -1):
                if isinstance(events[earlier], Mapping) and events[earlier].get("event") == "user":
                    return earlier
            return None
    return None


def _event_fields(tracker: Tracker, events: list[Any], index: int) -> dict[str, Any]:
    """``record_disclosure`` fields for an earlier user message, derived as action_log_disclosure did."""
    event = events[index]
    parse_data = event.get("parse_data") if isinstance(event.get("parse_data"), Mapping) else {}
    metadata = event.get("metadata") if isinstance(event.get("metadata"), Mapping) else {}
    text = event.get("text")
    message_id = event.get("message_id") or (
        f"event-ts:{event['timestamp']}" if event.get("timestamp") else None
    )
    categories, risk = _assess(str(text or ""), parse_data)
    return dict(
        school=_slot(tracker, "school", metadata),
        audience=_slot(tracker, "audience", metadata),
        channel=event.get("input_channel"),
        sender_id=tracker.sender_id,
        message_id=message_id,
        text=text,
        context=_context(events, index),
        categories=categories,
        risk=risk,
    )


def _safe_reply(dispatcher: CollectingDispatcher, audience: str) -> None:
    try:
        from bot.safeguarding.replies import safe_reply

        dispatcher.utter_message(text=safe_reply(audience))
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
        try:
            audience: str | None = _audience(tracker, self._settings)
        except Exception:
            logger.exception("Could not tell who is asking; using the wording that suits anyone")
            audience = None
        if _answers_since_offer(_events(tracker)) == 0:
            dispatcher.utter_message(text=contact_offer(audience))
        else:
            dispatcher.utter_message(text=contact_prompt(audience))
        return []


class ValidateContactForm(FormValidationAction):
    """A first answer of only "yes" or "ok" means "I'd like to" rather than a name: ask once more."""

    def name(self) -> str:
        return "validate_contact_form"

    async def validate_contact_details(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            if (
                isinstance(slot_value, str)
                and _is_bare_yes(slot_value)
                and _answers_since_offer(_events(tracker)) <= 1
            ):
                return {CONTACT_SLOT: None}
        except Exception:
            logger.exception("Could not check the contact details answer; taking it as given")
        return {CONTACT_SLOT: slot_value}


class ActionSaveContactDetails(Action):
    """After contact_form: keep the details with the disclosure (or record a new disclosure), then reply.

    ``contact_followup`` is set (true) only when details were kept: a rule then waits for more in the next
    message (``contact_more_form``). Declined, a disclosure instead, or nothing could keep them: null.
    """

    # Added to the "contact_added" audit event of every note this action keeps.
    audit_detail: dict[str, Any] = {}

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
            audience = _audience(tracker, settings)
            latest = _latest(tracker)
            slots = tracker.slots if isinstance(tracker.slots, Mapping) else {}
            answer = slots.get(CONTACT_SLOT) or latest.get("text") or ""
            text = answer if isinstance(answer, str) else str(answer)
            if _is_disclosure(text, latest):
                second = await self._second_disclosure(dispatcher, tracker, settings, audience, text)
                return events + followup + second
            intent = latest.get("intent") if isinstance(latest.get("intent"), Mapping) else {}
            if _contact_answer(text, intent.get("name")) != "details":
                dispatcher.utter_message(text=contact_declined(audience, _reference(tracker)))
                return events + followup
            saved, kept = await self._keep(settings, tracker, text)
            dispatcher.utter_message(text=contact_thanks(audience, saved=saved))
            if saved:
                followup = [SlotSet(FOLLOWUP_SLOT, True)]
                events[0] = _committed_contact(events[0], tracker, kept)
            return events + kept + followup
        except Exception:
            logger.exception("Handling contact details after a disclosure failed unexpectedly")
            dispatcher.utter_message(text=contact_thanks(audience, saved=False))
            return events + followup

    async def _keep(
        self, settings: Settings, tracker: Tracker, text: str
    ) -> tuple[bool, list[dict[str, Any]]]:
        """Attach ``text`` as contact details; returns (kept durably, the reference slot if it changed)."""
        note, reference = await asyncio.to_thread(self._attach, settings, tracker, text, None)
        saved = note is not None and note.stored != "log"
        changed = bool(reference) and reference != _reference(tracker)
        return saved, [SlotSet(REFERENCE_SLOT, reference)] if changed else []

    def _attach(
        self, settings: Settings, tracker: Tracker, text: str, also_recorded_as: str | None
    ) -> tuple[NoteResult | None, str | None]:
        """Attach ``text`` to the disclosure the form followed; returns (where it went, that reference).

        With no reference (nothing could store the disclosure at the time) the disclosure is recorded again
        from the tracker, idempotently, so the details have something to belong to. If even that message
        cannot be found, the answer is recorded as a disclosure itself, its context carrying the conversation.
        """
        events = _events(tracker)
        latest = _latest(tracker)
        current = _latest_user_index(events, latest.get("message_id"))
        original = _disclosure_index(events, current)
        reference = _reference(tracker)
        detail: dict[str, Any] = dict(self.audit_detail)
        if also_recorded_as:
            detail["also_recorded_as"] = also_recorded_as
        disclosure_sender, disclosure_message = None, None
        if original is not None:
            fields = _event_fields(tracker, events, original)
            disclosure_sender, disclosure_message = fields["sender_id"], fields["message_id"]
            if not reference:
                result = record_disclosure(settings, **fields)
                if result.stored != "log":
                    reference = result.reference
                    detail["disclosure_recorded_again"] = result.stored
                    _wake_worker()
        elif not reference:
            if also_recorded_as:
                return None, None  # the answer itself was recorded as a disclosure: nothing to attach to
            fields = _disclosure_fields(tracker)
            result = record_disclosure(settings, **fields)
            if result.stored == "log":
                return None, None
            _wake_worker()
            reference = result.reference
            disclosure_sender, disclosure_message = fields["sender_id"], fields["message_id"]
            detail["recorded_as_disclosure"] = "the disclosure before these details could not be found"
        note = attach_contact_details(
            settings,
            disclosure_reference=reference,
            disclosure_sender_id=disclosure_sender,
            disclosure_message_id=disclosure_message,
            sender_id=tracker.sender_id,
            message_id=latest.get("message_id") or _fields_message_id(events, current),
            text=text,
            audit_detail=detail,
        )
        if note.stored != "log":
            _wake_worker()  # the DSLs are told that contact details were added (or the spool is replayed)
        return note, note.reference or reference

    async def _second_disclosure(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        settings: Settings,
        audience: str,
        text: str,
    ) -> list[dict[str, Any]]:
        """The answer discloses harm: record it as a disclosure first, keep it as contact details too."""
        result: RecordResult | None = None
        try:
            result = await asyncio.to_thread(record_disclosure, settings, **_disclosure_fields(tracker))
        except Exception:
            logger.exception("Recording a disclosure in contact details failed; using the emergency spool")
            result = _emergency_spool(self._settings, tracker)
        reference = result.reference if result is not None and result.stored != "log" else None
        if reference:
            _wake_worker()
        try:
            await asyncio.to_thread(self._attach, settings, tracker, text, reference)
        except Exception:
            logger.exception("Could not also keep the disclosure as contact details of the first one")
        _safe_reply(dispatcher, audience)
        follow_up = handoff_text(audience, reference)
        if follow_up:
            dispatcher.utter_message(text=follow_up)
        return (
            [_committed(SlotSet(REFERENCE_SLOT, reference), tracker, reference, DISCLOSURE)]
            if reference
            else []
        )


class ActionExtractContactMore(Action):
    """``contact_more``'s custom mapping, run by Rasa's ``action_extract_slots`` while ``contact_more_form``
    waits: the message is taken only if it is the first one after the details were kept and looks like more
    of them. Taking nothing rejects the form, so the message goes to the usual rules instead."""

    def name(self) -> str:
        return "action_extract_contact_more"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        try:
            slots = tracker.slots if isinstance(tracker.slots, Mapping) else {}
            loop = tracker.active_loop if isinstance(tracker.active_loop, Mapping) else {}
            if loop.get("name") != MORE_FORM or not slots.get(FOLLOWUP_SLOT):
                return []
            if _user_messages_since(_events(tracker), SAVE_ACTION) != 1:
                return []  # only the message right after the details, in the same session
            latest = _latest(tracker)
            text = latest.get("text")
            if not isinstance(text, str):
                return []
            # A class or number with a disclosure ("6B. and my uncle hit me again") is taken too, like the
            # first answer: action_save_more_contact_details records the disclosure first, then keeps it.
            if _more_contact_details(text, latest) or (
                (_has_phone_or_email(text) or _without_class(_words(text))[1])
                and _is_disclosure(text, latest)
            ):
                return [SlotSet(MORE_SLOT, text)]
        except Exception:
            logger.exception("Could not tell whether a message adds to the contact details; leaving it")
        return []


class ValidateContactMoreForm(Action):
    """``contact_more_form`` waits for one message. Back from a message it did not take (the usual rules
    answered it), it stops waiting: nothing is asked, and the next message is an ordinary message again."""

    def name(self) -> str:
        return "validate_contact_more_form"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        loop = tracker.active_loop if isinstance(tracker.active_loop, Mapping) else {}
        slots = tracker.slots if isinstance(tracker.slots, Mapping) else {}
        if loop.get("name") == MORE_FORM and not slots.get(MORE_SLOT):
            return [SlotSet(REQUESTED_SLOT, None)]
        return []


class ActionSaveMoreContactDetails(ActionSaveContactDetails):
    """After contact_more_form: keep the second message with the same disclosure and thank the person briefly;
    a disclosure in it is recorded as a disclosure of its own first. Nothing taken (the wait ended): nothing
    to do or say."""

    audit_detail = {"follow_up": True}

    def name(self) -> str:
        return "action_save_more_contact_details"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [SlotSet(MORE_SLOT, None), SlotSet(FOLLOWUP_SLOT, None)]
        slots = tracker.slots if isinstance(tracker.slots, Mapping) else {}
        answer = slots.get(MORE_SLOT)
        if not answer:
            return events
        text = answer if isinstance(answer, str) else str(answer)
        audience: str | None = None
        try:
            settings = self._settings or get_settings()
            audience = _audience(tracker, settings)
            if _is_disclosure(text, _latest(tracker)):
                return events + await self._second_disclosure(dispatcher, tracker, settings, audience, text)
            saved, kept = await self._keep(settings, tracker, text)
            dispatcher.utter_message(text=contact_more_thanks(audience, saved=saved))
            if saved:
                events[0] = _committed_contact(events[0], tracker, kept)
            return events + kept
        except Exception:
            logger.exception("Handling more contact details after a disclosure failed unexpectedly")
            dispatcher.utter_message(text=contact_more_thanks(audience, saved=False))
            return events


def _fields_message_id(events: list[Any], index: int | None) -> str | None:
    if index is None:
        return None
    event = events[index]
    return event.get("message_id") or (f"event-ts:{event['timestamp']}" if event.get("timestamp") else None)


# --- commit markers (bot/safeguarding/redaction.py) ---------------------------------------------------------
# Returned only after a confirmed commit (database or spool): the tracker store then keeps the reference
# instead of the words. Without a marker the words stay there for the reconciler.


def _committed(event: dict[str, Any], tracker: Tracker, reference: str, kind: str) -> dict[str, Any]:
    try:
        events = _events(tracker)
        message_id = _latest(tracker).get("message_id") or _fields_message_id(
            events, _latest_user_index(events, None)
        )
        return mark_committed(event, message_id=message_id, reference=reference, kind=kind)
    except Exception:
        logger.exception("Could not mark the message as committed; the tracker store keeps its words")
        return event


def _committed_contact(event: dict[str, Any], tracker: Tracker, kept: list[dict[str, Any]]) -> dict[str, Any]:
    """``event`` marking the latest message as contact details kept with the disclosure in ``kept`` (or the
    one the conversation already has)."""
    reference = kept[0].get("value") if kept else _reference(tracker)
    return _committed(event, tracker, reference, CONTACT) if reference else event


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
