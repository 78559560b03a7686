"""Contact details after a disclosure: what an answer is, and where it is kept.

Two parts, both plain functions (no Rasa imports), used by the thin actions in ``actions/safeguarding.py``:

* **The classifier.** What a message is while the contact offer waits for an answer (``offer_answer``):
  contact details (a name and class, a phone number, an e-mail address; ``looks_like_details``), a refusal
  ("no thanks", "it's ok"), an acceptance with no details yet ("yes", "ok you can", "yes my number is"), or
  anything else (a question, another topic, "why?"), which the contact form does not take: it is handled as a
  new message. A question is never contact details, even when it contains a name. The same test decides
  whether the message after the details looks like more of them.
* **Record or attach.** The details are attached to the disclosure the contact form followed, in this
  conversation's current session (``service.attach_contact_details`` checks that itself). If that disclosure
  could not be stored at the time, it is recorded again from the tracker first (idempotently); if it cannot
  even be found, the answer is recorded as a disclosure itself, so the words still reach the DSL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from bot.safeguarding.service import (
    NoteResult,
    RecordResult,
    attach_contact_details,
    prepare_disclosure,
    record_disclosure,
    spool_disclosure,
)
from bot.safeguarding.turns import Conversation, discloses
from bot.settings import Settings

logger = logging.getLogger(__name__)

REFERENCE_SLOT = "disclosure_reference"

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


def split_words(text: str) -> list[str]:
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


def contact_answer(text: str, intent: Any) -> str:
    """ "declined", "empty" (only "yes", "ok", "thanks"...) or "details". Anything unclear counts as details:
    keeping a message that was not a name costs nothing, dropping one that was could cost a child help."""
    ordered = split_words(text)
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
# Everyday words that are also first names: names only next to a class or year.
_NAME_LIKE_WORDS = frozenset("will may".split())
MAX_NAME_WORDS = 3
MAX_DETAILS_WORDS = 15


def _entity_words(latest: Mapping[str, Any]) -> set[str]:
    """Words the NLU recognised as a platform or a role ("snapchat", "coach"): not names."""
    words: set[str] = set()
    entities = latest.get("entities") if isinstance(latest.get("entities"), list) else []
    for entity in entities:
        if isinstance(entity, Mapping) and entity.get("entity") in ("platform", "role"):
            words.update(split_words(str(entity.get("value") or "")))
    return words


def without_class(words: list[str]) -> tuple[list[str], bool]:
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


def has_phone_or_email(text: str) -> bool:
    return bool(_EMAIL.search(text)) or any(
        7 <= sum(char.isdigit() for char in match) <= 15 for match in _PHONE.findall(text)
    )


# Words that may come before a question's first word: "so can I...", "ok but why", "lol what".
_QUESTION_LEAD_INS = frozenset(
    "so and but ok okay um umm hmm hey hi hello oh also just sorry wait well then yes yeah no nah lol".split()
)
_WH_WORDS = frozenset(
    "what who whom whose which when where why how whats whos wheres whens hows whys whatre".split()
)


def is_question(text: str) -> bool:
    """A question: "?" anywhere; a question word first ("why", "what age can kids have WhatsApp"); or a verb
    that starts questions ("is it ok to meet my online bestie irl", "can i add mr smith on insta lol", "can
    jess use tiktok"; "will" and "may" only before a word that is not a name: not "May 6B", "Will Smith"),
    after "so", "ok but"... A question is never taken as contact details, even when it contains a name."""
    if "?" in text or "\uff1f" in text:
        return True
    words = split_words(text)
    while words and words[0] in _QUESTION_LEAD_INS:
        words = words[1:]
    if not words:
        return False
    if words[0] in _WH_WORDS:
        return True
    if words[0] not in _QUESTION_WORDS or len(words) < 2 or words[1] == "not":  # "do not want to"
        return False
    if words[0] in _NAME_LIKE_WORDS:  # "will you", "may i"; not "Will Smith", "May 6B"
        return words[1] in _COMMON_WORDS or words[1] in _LEAD_INS or words[1].isdigit()
    return True


def looks_like_details(text: str, latest: Mapping[str, Any]) -> bool:
    """Whether a message looks like contact details: a phone number or e-mail address, a class or year
    ("year 6 class 6B", "6B"), or a short name ("jess", "it's Jess Smith", "jess year 6").

    A question, a refusal, "ok thanks", or a sentence about anything else is not: it goes to the usual rules.
    What policy questions are about (apps, staff, photos...) and the NLU's platform and role entities are
    never names. The NLU's intent is not used otherwise: it calls names and numbers all sorts of things.
    """
    words = split_words(text)
    if not words or len(words) > MAX_DETAILS_WORDS or is_question(text):
        return False
    if has_phone_or_email(text):
        return True
    intent = latest.get("intent") if isinstance(latest.get("intent"), Mapping) else {}
    if contact_answer(text, intent.get("name")) != "details":
        return False
    rest, found_class = without_class(words)
    names = [word for word in rest if word not in _LEAD_INS]
    if not names:
        return found_class
    not_names = _COMMON_WORDS | _entity_words(latest)
    if found_class:
        not_names = not_names - _NAME_LIKE_WORDS  # "May 6B", "Will Smith year 6"
    return len(names) <= MAX_NAME_WORDS and all(
        word.isalpha() and len(word) > 1 and word not in not_names for word in names
    )


_ACCEPT_WORDS = (
    _FILLER_WORDS
    | _LEAD_INS
    | frozenset(
        """you can may could go ahead do it that thats fine will ill id would like to want wanna sure here is
        are of course definitely absolutely alright send type put write give tell share happy""".split()
    )
)


def accepts_offer(text: str, intent: Any = None) -> bool:
    """Whether the answer to the offer says yes without the details yet: "yes", "ok you can", "yes please",
    "yes my number is", the "Yes" button (its payload "/affirm"). Never a question or a refusal."""
    stripped = text.strip().lower()
    if stripped.startswith("/affirm"):
        return True
    if not stripped or is_question(text):
        return False
    ordered = split_words(text)
    words = set(ordered)
    if not words or words & _REFUSALS or _POLITE_NO.fullmatch(" ".join(ordered)):
        return False
    agrees = bool(words & _AFFIRMATIONS) or {"you", "can"} <= words or "ahead" in words
    return words <= _ACCEPT_WORDS and agrees


def declines_offer(text: str, intent: Any = None) -> bool:
    """Whether the answer to the offer says no ("no", "no thanks", "I don't want to", "it's ok thanks", the
    "No" button). A question is not a refusal: it is answered as usual."""
    if text.strip().lower().startswith("/deny"):
        return True
    return not is_question(text) and contact_answer(text, intent) == "declined"


def offer_answer(text: str, latest: Mapping[str, Any], *, accepted: bool = False) -> str:
    """What ``contact_form`` makes of a message while the offer (``accepted``: the prompt after a "yes")
    waits for an answer:

    * "details": contact details (``takes_as_more``: they look like details, or a class or number given with
      a disclosure, which is recorded as a disclosure first); this accepts the offer too;
    * "declined": a refusal; nothing is kept;
    * "accepted": yes, but no details yet (only as the first answer): the person is asked for them once;
    * "other": anything else (a question, another topic, "why?", a disclosure with no details in it): not
      taken, so the message is handled as a new message by the usual rules.
    """
    if not isinstance(text, str) or not text.strip():
        return "other"
    if text.strip().startswith("/"):  # a button's payload ("/affirm", "/deny"): never details
        payload = text.strip().lower()
        if payload.startswith("/deny"):
            return "declined"
        return "accepted" if payload.startswith("/affirm") and not accepted else "other"
    intent_data = latest.get("intent") if isinstance(latest.get("intent"), Mapping) else {}
    intent = intent_data.get("name")
    if takes_as_more(text, latest):
        return "details"
    if declines_offer(text, intent):
        return "declined"
    if not accepted and accepts_offer(text, intent):
        return "accepted"
    return "other"


def takes_as_more(text: str, latest: Mapping[str, Any]) -> bool:
    """Whether ``contact_more_form`` takes ``text``: more contact details, or a class or number given with a
    disclosure ("6B. and my uncle hit me again": recorded as a disclosure first, then kept too)."""
    if looks_like_details(text, latest):
        return True
    if is_question(text):
        return False
    return bool(has_phone_or_email(text) or without_class(split_words(text))[1]) and discloses(text, latest)


# --- record or attach ---------------------------------------------------------------------------------------


def wake_worker() -> None:
    """Ask the hand-off worker to run now (alerts, spool replay); it runs on its own schedule anyway."""
    try:
        from bot.safeguarding.worker import wake

        wake()
    except Exception:
        logger.warning("Could not wake the safeguarding worker; alerts go on its next pass", exc_info=True)


def reference_of(conversation: Conversation) -> str | None:
    """The disclosure reference this conversation was given (the slot), if any."""
    reference = conversation.slots.get(REFERENCE_SLOT)
    return str(reference) if reference else None


def record_latest(settings: Settings, conversation: Conversation) -> RecordResult | None:
    """Record the conversation's latest message as a disclosure, durably; never raises.

    Should recording itself fail unexpectedly, whatever can be read of the message goes to the spool
    (``emergency_spool``). None only when even that failed (logged at CRITICAL).
    """
    try:
        result = record_disclosure(settings, **conversation.disclosure_fields(conversation.latest_turn()))
    except Exception:
        logger.exception("Recording a disclosure failed unexpectedly; using the emergency spool")
        return emergency_spool(settings, conversation)
    if result.stored != "log":
        wake_worker()
    return result


def emergency_spool(settings: Settings, conversation: Conversation) -> RecordResult | None:
    """Last resort when recording itself failed unexpectedly: spool whatever can be read of the message."""
    try:
        prepared = prepare_disclosure(
            settings,
            school=None,
            audience=None,
            channel=None,
            sender_id=conversation.sender_id,
            message_id=conversation.latest.get("message_id"),
            text=conversation.latest.get("text"),
            context=None,
            categories=None,
            risk=None,
        )
        result = RecordResult(reference=spool_disclosure(settings, prepared), stored="spool")
    except Exception:
        logger.critical(
            "DISCLOSURE NOT STORED for conversation %r: recording and the emergency spool both failed. "
            "The message is still in Rasa's tracker store; run `schoolguide disclosures reconcile`.",
            conversation.sender_id,
            exc_info=True,
        )
        return None
    wake_worker()
    return result


def keep_contact_details(
    settings: Settings,
    conversation: Conversation,
    text: str,
    *,
    origin: str,
    audit_detail: Mapping[str, Any] | None = None,
    also_recorded_as: str | None = None,
) -> tuple[NoteResult | None, str | None]:
    """Attach ``text`` to the disclosure the contact form followed; returns (where it went, that reference).

    The disclosure is the message ``action_log_disclosure`` last recorded in this session. With no reference
    (nothing could store it at the time) it is recorded again from the tracker, idempotently, so the details
    have something to belong to. If even that message cannot be found, the answer is recorded as a disclosure
    itself, its context carrying the conversation. ``also_recorded_as``: the answer was recorded as a
    disclosure of its own already. A refused note (not this conversation's session, ``stored="refused"``)
    returns no reference: the person is never told one that is not theirs.
    """
    latest = conversation.latest_turn()
    index = conversation.disclosure_index()
    reference = reference_of(conversation)
    detail: dict[str, Any] = dict(audit_detail or {})
    if also_recorded_as:
        detail["also_recorded_as"] = also_recorded_as
    disclosure_sender, disclosure_message = None, None
    if index is not None:
        fields = conversation.disclosure_fields(conversation.turn(index))
        disclosure_sender, disclosure_message = fields["sender_id"], fields["message_id"]
        if not reference:
            result = record_disclosure(settings, **fields)
            if result.stored != "log":
                reference = result.reference
                detail["disclosure_recorded_again"] = result.stored
                wake_worker()
    elif not reference:
        if also_recorded_as:
            return None, None  # the answer itself was recorded as a disclosure: nothing to attach to
        fields = conversation.disclosure_fields(latest)
        result = record_disclosure(settings, **fields)
        if result.stored == "log":
            return None, None
        wake_worker()
        reference = result.reference
        disclosure_sender, disclosure_message = fields["sender_id"], fields["message_id"]
        detail["recorded_as_disclosure"] = "the disclosure before these details could not be found"
    note = attach_contact_details(
        settings,
        disclosure_reference=reference,
        disclosure_sender_id=disclosure_sender,
        disclosure_message_id=disclosure_message,
        sender_id=conversation.sender_id,
        message_id=latest.message_id,
        text=text,
        audit_detail=detail,
        channel=latest.channel,
        origin=origin,
        session_keys=conversation.session_keys(),
    )
    if note.stored == "refused":
        return note, None
    if note.kept:
        wake_worker()  # the DSLs are told that contact details were added (or the spool is replayed)
    return note, note.reference or reference
