"""The REST channel (``/webhooks/rest/webhook``): an integration channel, where the server decides who talks.

What the client may not decide:

* the conversation: the sender is namespaced by the server (``rest-<sender>``), so no REST request can reach
  a widget (``website-…``, ``pupil-…``), Slack (``slack:…``) or Teams (``teams:…``) conversation;
* the channel: a client's ``input_channel`` is ignored; it is always ``rest``;
* anything but ``school`` and ``audience`` in the metadata (at most 16 KB, shallow: 413/400 otherwise). A
  refused body that may hold a disclosure still gets the safe reply and one record
  (:func:`bot.channels.web.refuse_or_salvage`); only a valid top-level string ``metadata.school`` and
  ``metadata.audience`` are recorded with it.

Who may talk: with ``SCHOOLGUIDE_REST_TOKEN`` set, only requests with ``Authorization: Bearer <token>`` (401
otherwise, before the body is parsed). Without a token the channel is open only while the server binds to
loopback (``SCHOOLGUIDE_BIND_HOST``); bound anywhere else it is switched off (not mounted, and 403 if it is).

Bodies are size-checked (413), the text cleaned of lone surrogates and control characters, and messages rate
limited (429 with ``Retry-After``) like the widgets' (:mod:`bot.channels.limits`). Malformed requests get a
400 that says what is wrong; nothing reaches the dialogue engine.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import rasa.utils.endpoints
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.limits import WebLimits, client_address, is_loopback, shared_limits
from bot.channels.validation import (
    MAX_REST_BODY_BYTES,
    Rejection,
    TopLevel,
    clean_text,
    read_message,
    sender_problem,
)
from bot.channels.web import Speaker, hand_over, refuse, refuse_or_salvage, too_many
from bot.settings import Settings, get_settings

SENDER_PREFIX = "rest-"
DEFAULT_SENDER = "default"
MAX_CONTEXT_CHARS = 64
DEFAULT_BIND_HOST = "127.0.0.1"


def bind_host(settings: Settings) -> str:
    """Where the servers listen (``SCHOOLGUIDE_BIND_HOST``, loopback by default)."""
    return getattr(settings, "bind_host", None) or DEFAULT_BIND_HOST


def open_without_token(settings: Settings) -> bool:
    """Without a token, REST answers only a server reachable from this machine alone."""
    return is_loopback(bind_host(settings))


def rest_sender(sender: str | None) -> str:
    """The conversation a REST sender gets: always in the ``rest-`` namespace."""
    return SENDER_PREFIX + (sender or DEFAULT_SENDER)


def rest_metadata(metadata: Any) -> dict[str, str]:
    """Only ``school`` and ``audience``, as short clean strings (the NLU component validates the values)."""
    if not isinstance(metadata, Mapping):
        return {}
    return {
        key: clean_text(value)[:MAX_CONTEXT_CHARS]
        for key in ("school", "audience")
        if isinstance(value := metadata.get(key), str)
    }


def refused_speaker(scanned: TopLevel) -> Speaker | None:
    """Who sent a refused REST body: the namespaced sender, and a known school and audience or None."""
    from bot.safeguarding.failsafe import conversation_context

    sender = scanned.fields.get("sender")
    if sender_problem(sender):
        return None
    school, audience = conversation_context(rest_metadata(scanned.metadata))
    return Speaker(rest_sender(sender), school, audience)


class ValidatingRestInput(RestInput):
    """``rest`` channel: token or loopback only, server-side sender, channel and metadata, limits."""

    @classmethod
    def name(cls) -> str:
        return "rest"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> ValidatingRestInput:
        return cls(**(credentials or {}))

    def __init__(self, token: str | None = None, limits: WebLimits | None = None) -> None:
        self.token = token
        self.limits = limits

    def _refusal(self, request: Request) -> HTTPResponse | None:
        if self.token:
            scheme, _, given = (request.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode("utf-8", "replace"), self.token.encode("utf-8")
            ):
                return refuse(401, "a REST token is required (Authorization: Bearer ...)", {})
            return None
        if not open_without_token(get_settings()):
            return refuse(403, "the REST channel is off: set SCHOOLGUIDE_REST_TOKEN to use it", {})
        return None

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[None]]) -> Blueprint:
        blueprint = Blueprint("schoolguide_rest", __name__)

        @blueprint.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @blueprint.route("/webhook", methods=["POST"])
        async def receive(request: Request):
            refusal = self._refusal(request)
            if refusal is not None:
                return refusal
            body = read_message(request.body, MAX_REST_BODY_BYTES)
            limits = self.limits or shared_limits(get_settings())
            if isinstance(body, Rejection):
                return await refuse_or_salvage(
                    body,
                    request.body,
                    {},
                    channel=self.name(),
                    identify=refused_speaker,
                    limit=lambda sender, text: limits.message(sender, client_address(request), text),
                )
            sender = rest_sender(body.get("sender"))
            text = body["message"]
            retry_after = limits.message(sender, client_address(request), text)
            if retry_after:
                return too_many(retry_after, {})
            metadata = rest_metadata(body.get("metadata"))
            if rasa.utils.endpoints.bool_arg(request, "stream", default=False):
                return response.stream(
                    self.stream_response(on_new_message, text, sender, self.name(), metadata),
                    content_type="text/event-stream",
                )
            collector = CollectingOutputChannel()
            message = UserMessage(text, collector, sender, input_channel=self.name(), metadata=metadata)
            await hand_over(on_new_message, message, self.name())
            return response.json(collector.messages)

        return blueprint


def credentials_entry(settings: Settings) -> tuple[str, dict | None] | None:
    """On with a token; without one only while the server binds to loopback (else switched off)."""
    if settings.rest_token:
        return f"{__name__}.{ValidatingRestInput.__name__}", {"token": settings.rest_token}
    if open_without_token(settings):
        return f"{__name__}.{ValidatingRestInput.__name__}", None
    return None
