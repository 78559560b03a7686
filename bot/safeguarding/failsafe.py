"""The last resort when the Rasa server fails to handle a message: never a silent loss.

Rasa's channels catch any exception from message handling, log it and answer ``[]``: no reply, no record and
no tracker event, so nothing could ever recover a disclosure that broke the pipeline (a lone surrogate made
spaCy raise; metadata nested hundreds deep made Rasa's deep copies overflow the stack).
``bot.rasa_server`` wraps message handling so that such a failure ends here instead:

* ``bot.untrusted`` cleans every message before NLU, so odd input takes the normal path;
* when handling still fails, ``assess_failed_message`` decides, recall first, whether the message might be a
  disclosure: the rules fired, the detector itself failed, or the message is the "Talk to a grown-up"
  button (the Rasa glue adds the classifier's opinion when the NLU can still run);
* ``recover`` then stores an encrypted record exactly like ``action_log_disclosure`` would (same store, spool
  when the database is down, idempotent on the Rasa message id) with ``source="failsafe"``, and returns the
  domain's static safe reply for the audience (plus the reference for staff and parents); pupils get the
  reply that fits the verdict's categories (``reply_kind``, as ``action_log_disclosure`` picks it; the
  button gets the listening opener). Anything else gets ``GENERIC_ERROR_REPLY``, so nobody is left looking
  at silence.

No Rasa imports: the decisions are plain functions with their own tests (tests/security/test_silent_loss.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.safeguarding.categories import kind_for
from bot.safeguarding.detector import CLASSIFIER_ONLY, DISCLOSE_INTENT, get_detector
from bot.safeguarding.handoff_texts import handoff_text
from bot.safeguarding.replies import all_safe_replies, safe_reply
from bot.safeguarding.service import RecordResult, record_disclosure
from bot.settings import AUDIENCES, Settings
from bot.untrusted import clean_text

logger = logging.getLogger(__name__)

FAILSAFE_SOURCE = "failsafe"
GENERIC_ERROR_REPLY = "Sorry, something went wrong, please try again."


@dataclass(frozen=True)
class Verdict:
    """Whether a message that could not be handled might be a disclosure, and what to record if so."""

    may_disclose: bool
    categories: tuple[str, ...] = ()
    risk: str = "high"
    why: str = ""


CLEARLY_NOT = Verdict(False, why="detector")
# The classifier alone said "disclose": what the DisclosureDetector component would record.
BY_CLASSIFIER = Verdict(True, CLASSIFIER_ONLY.categories, CLASSIFIER_ONLY.risk, "classifier")


def assess_failed_message(text: Any) -> Verdict:
    """Recall first: a disclosure when the rules fire, when the detector fails, or for the disclose button."""
    text = clean_text(text)
    if not isinstance(text, str) or not text.strip():
        return Verdict(False, why="no text")
    if text.strip().startswith(f"/{DISCLOSE_INTENT}"):
        return Verdict(True, ("other",), "high", "button")
    try:
        assessment = get_detector().assess(text)
    except Exception:
        logger.error(
            "safeguarding detector unavailable on the failure path: treating the message as a disclosure"
        )
        return Verdict(True, ("other",), "high", "detector failed")
    if "detector_error" in assessment.matched:
        return Verdict(True, ("other",), "high", "detector failed")
    if assessment.is_disclosure:
        return Verdict(True, assessment.categories, assessment.risk, "rules")
    return CLEARLY_NOT


def _valid(value: Any, allowed: Iterable[str]) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 64 and value.strip().lower() in allowed:
        return value.strip().lower()
    return None


def _known_schools() -> tuple[str, ...]:
    try:
        from bot.knowledge import get_knowledge

        return tuple(get_knowledge().schools)
    except Exception:
        logger.warning("clause base unavailable on the failure path; recording the default school")
        return ()


def conversation_context(*sources: Any) -> tuple[str | None, str | None]:
    """(school, audience): the first valid value in ``sources`` (slots, then metadata), None if none is."""
    schools = _known_schools()
    school = audience = None
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        school = school or _valid(source.get("school"), schools)
        audience = audience or _valid(source.get("audience"), AUDIENCES)
    return school, audience


def safe_reply_texts() -> frozenset[str]:
    """Every safe reply (each audience's, each pupil kind's): a failure after the normal path sent one must
    not send it twice."""
    try:
        return frozenset(all_safe_replies())
    except Exception:
        return frozenset()


def safe_reply_sent(sent: Iterable[Any]) -> bool:
    """Whether ``sent`` (texts already on a channel) holds a safe reply; Rasa sends each paragraph alone."""
    paragraphs = {part.strip() for text in safe_reply_texts() for part in text.split("\n\n")}
    return any(isinstance(text, str) and text.strip() in paragraphs for text in sent)


def recover(
    settings: Settings,
    verdict: Verdict,
    *,
    text: Any,
    sender_id: Any,
    channel: Any,
    message_id: Any,
    school: str | None,
    audience: str | None,
) -> list[str]:
    """Record the message if it may be a disclosure (never raises), and return the replies to send."""
    if not verdict.may_disclose:
        return [GENERIC_ERROR_REPLY]
    result: RecordResult | None = None
    try:
        result = record_disclosure(
            settings,
            school=school,
            audience=audience,
            channel=channel,
            sender_id=sender_id,
            message_id=message_id,
            text=clean_text(text),
            categories=list(verdict.categories),
            risk=verdict.risk,
            source=FAILSAFE_SOURCE,
        )
    except Exception:  # record_disclosure never raises; this is belt and braces for the reply below
        logger.critical("DISCLOSURE NOT STORED on the failure path (conversation %r)", sender_id)
    if result is not None:
        logger.warning(
            "message handling failed; recorded it as possible disclosure %s (%s, why=%s, created=%s)",
            result.reference,
            result.stored,
            verdict.why,
            result.created,
        )
    reference = result.reference if result is not None and result.stored != "log" else None
    kind = kind_for(audience, verdict.categories, verdict.risk, button=verdict.why == "button")
    replies = [safe_reply(audience, kind=kind)]
    # Unknown audience: the pupil text (safe for anyone) promises no follow-up message, so none is sent.
    follow_up = handoff_text(audience, reference) if audience else None
    if follow_up:
        replies.append(follow_up)
    return replies
