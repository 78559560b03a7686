"""What the web channels (REST, website, pupil) share: JSON refusals, 429s, and handing a message to Rasa.

A refused request is not a lost disclosure. When a body is refused only because of its metadata or its nesting
(400/413, ``Rejection.salvageable``), :func:`refuse_or_salvage` still reads its top-level ``message`` and
``sender`` (:func:`bot.channels.validation.scan_top_level`: no recursion, no full parse). If the sender passes
the channel's own check and the message may be a disclosure (``failsafe.assess_failed_message``, recall
first), one encrypted record is stored through ``failsafe.recover`` and the refusal carries the safe reply::

    400 {"error": "the body is nested too deeply ...", "messages": [{"recipient_id": ..., "text": ...}]}

The record's message id is derived from the channel, the conversation and a hash of the raw body, so a client
retrying the identical request gets the same reply and still one record. Anything else keeps its plain
refusal, and so does a body over the size limit (it is never read).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from asyncio import CancelledError
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from sanic import response
from sanic.response import HTTPResponse

from bot.channels.validation import Rejection, TopLevel, clean_text, message_problem, scan_top_level

logger = logging.getLogger(__name__)


def refuse(status: int, error: str, headers: Mapping[str, str], **extra: Any) -> HTTPResponse:
    """A JSON error the client can show or act on (never echoing what it sent)."""
    return response.json({"error": error, **extra}, status=status, headers=dict(headers))


def too_many(retry_after: int, headers: Mapping[str, str]) -> HTTPResponse:
    """429 with ``Retry-After``."""
    return refuse(
        429,
        f"too many messages; try again in {retry_after} seconds",
        {**headers, "Retry-After": str(retry_after)},
    )


async def hand_over(
    on_new_message: Callable[[UserMessage], Awaitable[None]], message: UserMessage, channel: str
) -> None:
    """Pass ``message`` to the dialogue engine; a failure is logged by its kind only, never with the words."""
    try:
        await on_new_message(message)
    except CancelledError:
        logger.error("%s: handling a message timed out", channel)
    except Exception as exc:
        logger.error("%s: handling a message failed (%s)", channel, type(exc).__name__)


@dataclass(frozen=True)
class Speaker:
    """Who sent a refused message, decided as the channel's normal path decides it."""

    sender_id: str  # the conversation as stored: ``rest-…``, ``website-…``, ``pupil-…``
    school: str | None
    audience: str | None


def salvage_message_id(channel: str, sender_id: str, raw: bytes) -> str:
    """The same for the same request on the same conversation: a retry is recorded once."""
    digest = hashlib.sha256(b"\0".join([channel.encode(), sender_id.encode("utf-8", "replace"), raw]))
    return f"refused-{digest.hexdigest()[:40]}"


async def refuse_or_salvage(
    rejection: Rejection,
    raw: bytes | None,
    headers: Mapping[str, str],
    *,
    channel: str,
    identify: Callable[[TopLevel], Speaker | None],
    limit: Callable[[str, str], int | None] | None = None,
) -> HTTPResponse:
    """``rejection`` as a JSON error; with the safe reply and one record when it may carry a disclosure.

    ``identify`` checks the sender the scan read (None: not a sender this channel accepts, nothing is
    recorded); ``limit`` is the channel's rate limit (Retry-After seconds, or None to go on).
    """
    if not rejection.salvageable or not raw:
        return refuse(rejection.status, rejection.error, headers)
    from bot.safeguarding import failsafe
    from bot.settings import get_settings

    verdict = None
    speaker: Speaker | None = None
    try:
        scanned = await asyncio.to_thread(scan_top_level, raw)
        if scanned is None or message_problem(scanned.fields.get("message")):
            return refuse(rejection.status, rejection.error, headers)
        speaker = identify(scanned)
        if speaker is None:
            return refuse(rejection.status, rejection.error, headers)
        text = clean_text(scanned.fields["message"])
        verdict = await asyncio.to_thread(failsafe.assess_failed_message, text)
        if not verdict.may_disclose:
            return refuse(rejection.status, rejection.error, headers)
        try:
            retry_after = limit(speaker.sender_id, text) if limit is not None else None
        except Exception as exc:  # a limit that cannot answer must not turn a disclosure away
            logger.error(
                "%s: the rate limit failed (%s); letting the message through", channel, type(exc).__name__
            )
            retry_after = None
        if retry_after:
            return too_many(retry_after, headers)
        logger.warning(
            "%s: a refused request (%d) may be a disclosure; recording it (why=%s)",
            channel,
            rejection.status,
            verdict.why,
        )
        replies = await asyncio.to_thread(
            failsafe.recover,
            get_settings(),
            verdict,
            text=text,
            sender_id=speaker.sender_id,
            channel=channel,
            message_id=salvage_message_id(channel, speaker.sender_id, raw),
            school=speaker.school,
            audience=speaker.audience,
        )
    except Exception as exc:
        if verdict is None or not verdict.may_disclose:
            logger.error("%s: reading a refused request failed (%s)", channel, type(exc).__name__)
            return refuse(rejection.status, rejection.error, headers)
        # Recall first: the person still gets the reply that is safe for anyone.
        logger.critical(
            "%s: a possible disclosure in a refused request was NOT STORED (%s)", channel, type(exc).__name__
        )
        replies = [failsafe.safe_reply(None)]
    collector = CollectingOutputChannel()
    recipient = speaker.sender_id if speaker is not None else None
    for reply in replies:
        await collector.send_text_message(recipient, reply)  # one message per paragraph, as Rasa sends
    return refuse(rejection.status, rejection.error, headers, messages=collector.messages)
