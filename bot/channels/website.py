"""The ``website`` channel: an embeddable chat widget for parents, and the machinery the pupil page reuses.

URLs (Rasa mounts every channel under ``/webhooks/<name>/``):

* ``GET  /webhooks/website/``            a demo page with the widget open (``?school=<slug>`` picks a school;
  none: the default school; an unknown one: a 404 page saying the link is wrong, never another school's page)
* ``GET  /webhooks/website/widget.js``   the widget: one dependency-free file, see ``static/widget.js``
* ``GET  /webhooks/website/widget.css``  its styles (the script adds the stylesheet itself)
* ``POST /webhooks/website/conversation`` ``{"sender": "<id>"}``: a new conversation id, signed by the server
* ``POST /webhooks/website/webhook``     ``{"sender": "<id>", "message", "metadata": {"school"}}`` -> replies

A school embeds the widget with one tag (the page then needs nothing else)::

    <script src="https://bot.school.example/webhooks/website/widget.js" data-school="lunsford" defer></script>

Who is talking is decided here, not by the client: the AUDIENCE is fixed by the channel (parent on the
website, pupil on the pupil page), whatever the request says, and the SCHOOL is the embedding page's
``data-school`` when it names a known school, else the deployment's default. The CONVERSATION is one the
server issued and signed (:mod:`bot.channels.identity`): a made-up, altered or other channel's id gets a 400
(``"code": "new_conversation"``; the widget then asks for a new id), never that conversation. Stored sender
ids are ``<channel>-<id>``, so a widget conversation can never continue one from another channel.

Every message is size-checked (413), cleaned of lone surrogates and control characters, and rate limited
(429 with ``Retry-After``; see :mod:`bot.channels.limits`) before the dialogue engine sees it. A body refused
for its metadata or nesting whose message may be a disclosure, from a conversation id that verifies, still
gets the safe reply (in ``messages`` next to ``error``) and one record (``web.refuse_or_salvage``).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from string import Template
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.identity import ConversationIds, conversation_ids
from bot.channels.limits import WebLimits, client_address, shared_limits
from bot.channels.validation import (
    MAX_WIDGET_BODY_BYTES,
    Rejection,
    TopLevel,
    read_message,
    sender_problem,
)
from bot.channels.web import Speaker, hand_over, refuse, refuse_or_salvage, too_many
from bot.conversation import resolve_context
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Sent with every response of the widget channels. The pages load only their own script and styles, send
# messages only to their own server, and cannot be framed, sniffed, or leak where the visitor came from.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # ICO Children's Code: geolocation (and camera, microphone) off by default.
    "Permissions-Policy": "geolocation=(), camera=(), microphone=()",
}
PAGE_HEADERS = {
    **COMMON_HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
}
# The widget is loaded by other sites' pages (the school's website), so scripts and styles must be usable
# cross-origin; they are public and contain no data.
ASSET_HEADERS = {
    **COMMON_HEADERS,
    "Cache-Control": "no-cache",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
ASSETS = {
    "widget.js": "application/javascript; charset=utf-8",
    "widget.css": "text/css; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
}


NEW_CONVERSATION = "new_conversation"


def render_template(name: str, **values: str) -> str:
    """Fill ``static/<name>`` ($placeholders); every value is HTML-escaped, so nothing is echoed raw."""
    template = Template((STATIC_DIR / name).read_text(encoding="utf-8"))
    return template.substitute({key: html.escape(value, quote=True) for key, value in values.items()})


def known_schools() -> Mapping[str, Any]:
    from bot.knowledge import get_knowledge

    return get_knowledge().schools


class WebsiteInput(RestInput):
    """Parent chat widget. Subclasses change ``AUDIENCE``, ``name()`` and the page they serve."""

    AUDIENCE = "parent"
    PAGE_TEMPLATE = "website.html"
    UNKNOWN_TEMPLATE = "website-unknown.html"

    @classmethod
    def name(cls) -> str:
        return "website"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> WebsiteInput:
        return cls(**(credentials or {}))

    def __init__(self, **config: Any) -> None:
        self.config = config
        # Set in tests; otherwise the deployment's signer and the process-wide limits.
        self.ids: ConversationIds | None = None
        self.limits: WebLimits | None = None

    def _ids(self) -> ConversationIds:
        return self.ids or conversation_ids(get_settings())

    def _limits(self) -> WebLimits:
        return self.limits or shared_limits(get_settings())

    # --- who is talking: decided here, never by the client -------------------------------------------

    def school_for(self, requested: Any) -> str:
        """``requested`` if it is a known school slug, else the deployment's default school."""
        return resolve_context(get_settings(), known_schools(), {"school": requested}).school

    def metadata_for(self, body: Mapping[str, Any]) -> dict[str, Any]:
        client = body.get("metadata")
        requested = client.get("school") if isinstance(client, dict) else None
        # Only these three keys reach the tracker: anything else the client sends is dropped.
        return {"school": self.school_for(requested), "audience": self.AUDIENCE, "channel": self.name()}

    def refused_speaker(self, scanned: TopLevel) -> Speaker | None:
        """Who sent a refused body: only a conversation this server issued for this channel (as in the normal
        path), with the school and audience the server decides."""
        sender = scanned.fields.get("sender")
        if sender is None or sender_problem(sender):
            return None
        conversation = self._ids().verify(self.name(), sender)
        if conversation is None:
            return None
        requested = scanned.metadata.get("school")
        school = self.school_for(requested if isinstance(requested, str) else None)
        return Speaker(f"{self.name()}-{conversation}", school, self.AUDIENCE)

    # --- pages ---------------------------------------------------------------------------------------

    def page_values(self, school: str) -> dict[str, str]:
        """The values ``PAGE_TEMPLATE`` needs (plain text; :func:`render_template` escapes them)."""
        return {
            "prefix": f"/webhooks/{self.name()}",
            "school": school,
            "school_name": known_schools()[school].name,
        }

    def unknown_page_values(self) -> dict[str, str]:
        """The values ``UNKNOWN_TEMPLATE`` needs: nothing about any school."""
        return {"prefix": f"/webhooks/{self.name()}"}

    def page_school(self, requested: str | None) -> str | None:
        """The school a page is for: the default when the link names none (a single-school deployment), the
        named one when it is known, and None when the link names a school we do not know."""
        if requested is None or not requested.strip():
            return self.school_for(None)
        slug = requested.strip().lower()
        return slug if slug in known_schools() else None

    def page(self, request: Request) -> HTTPResponse:
        school = self.page_school(request.args.get("school"))
        if school is None:
            # Never another school's page (its name, its DSL): a wrong link says so. The slug is not echoed.
            body = render_template(self.UNKNOWN_TEMPLATE, **self.unknown_page_values())
            return response.html(body, status=404, headers=PAGE_HEADERS)
        body = render_template(self.PAGE_TEMPLATE, **self.page_values(school))
        return response.html(body, headers=PAGE_HEADERS)

    # --- the blueprint ---------------------------------------------------------------------------------

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[None]]) -> Blueprint:
        blueprint = Blueprint(f"schoolguide_{self.name()}_widget", __name__)

        @blueprint.route("/", methods=["GET"])
        async def page(request: Request) -> HTTPResponse:
            return self.page(request)

        def serve(asset: str) -> Callable[[Request], Awaitable[HTTPResponse]]:
            async def handler(request: Request) -> HTTPResponse:
                # Read on each request: a few kB, and an edited file shows without a restart.
                body = (STATIC_DIR / asset).read_bytes()
                return response.raw(body, content_type=ASSETS[asset], headers=ASSET_HEADERS)

            return handler

        for asset in ASSETS:
            blueprint.add_route(serve(asset), f"/{asset}", methods=["GET"], name=asset.replace(".", "_"))

        @blueprint.route("/health", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"}, headers=COMMON_HEADERS)

        @blueprint.route("/conversation", methods=["POST"])
        async def new_conversation(request: Request) -> HTTPResponse:
            retry_after = self._limits().new_conversation(client_address(request))
            if retry_after:
                return too_many(retry_after, PAGE_HEADERS)
            return response.json({"sender": self._ids().issue(self.name())}, headers=PAGE_HEADERS)

        @blueprint.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            body = read_message(request.body, MAX_WIDGET_BODY_BYTES)
            if isinstance(body, Rejection):
                return await refuse_or_salvage(
                    body,
                    request.body,
                    PAGE_HEADERS,
                    channel=self.name(),
                    identify=self.refused_speaker,
                    limit=lambda sender, text: self._limits().message(sender, client_address(request), text),
                )
            if body.get("sender") is None:  # else every visitor would share one conversation
                return refuse(400, "'sender' is required", PAGE_HEADERS)
            conversation = self._ids().verify(self.name(), body["sender"])
            if conversation is None:
                return refuse(
                    400,
                    f"'sender' must be a conversation id from POST /webhooks/{self.name()}/conversation",
                    PAGE_HEADERS,
                    code=NEW_CONVERSATION,
                )
            sender = f"{self.name()}-{conversation}"
            retry_after = self._limits().message(sender, client_address(request), body["message"])
            if retry_after:
                return too_many(retry_after, PAGE_HEADERS)
            collector = CollectingOutputChannel()
            message = UserMessage(
                body["message"],
                collector,
                sender,
                input_channel=self.name(),
                metadata=self.metadata_for(body),
            )
            await hand_over(on_new_message, message, self.name())
            return response.json(collector.messages, headers=PAGE_HEADERS)

        return blueprint


def credentials_entry(settings: Settings) -> tuple[str, dict | None]:
    """Always on: the parent widget needs no secrets."""
    return f"{__name__}.{WebsiteInput.__name__}", None
