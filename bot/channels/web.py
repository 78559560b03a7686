"""What the web channels (REST, website, pupil) share: JSON refusals, 429s, and handing a message to Rasa."""

from __future__ import annotations

import logging
from asyncio import CancelledError
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rasa.core.channels.channel import UserMessage
from sanic import response
from sanic.response import HTTPResponse

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
