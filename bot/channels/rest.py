"""Rasa's REST channel, with the request body checked first.

The stock channel answers a body that is not an object (or a message that is not text) with a server error;
here such requests get a 400 that says what is wrong, and nothing reaches the dialogue engine. The URL is
unchanged: ``/webhooks/rest/webhook``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request

from bot.channels.validation import message_body_problem
from bot.settings import Settings


def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None


class ValidatingRestInput(RestInput):
    """``rest`` channel that rejects malformed requests with a clear 400."""

    @classmethod
    def name(cls) -> str:
        return "rest"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[None]]) -> Blueprint:
        blueprint = super().blueprint(on_new_message)

        @blueprint.middleware("request")
        async def check_body(request: Request):
            if request.method != "POST" or not request.path.endswith("/webhook"):
                return None
            problem = message_body_problem(_json_body(request))
            if problem:
                return response.json({"error": problem}, status=400)
            return None

        return blueprint


def credentials_entry(settings: Settings) -> tuple[str, dict | None]:
    """Always on: the widgets, tests and `curl` use it."""
    return f"{__name__}.{ValidatingRestInput.__name__}", None
