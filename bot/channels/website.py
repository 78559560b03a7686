"""The ``website`` channel: an embeddable chat widget for parents, and the machinery the pupil page reuses.

URLs (Rasa mounts every channel under ``/webhooks/<name>/``):

* ``GET  /webhooks/website/``            a demo page with the widget open (``?school=<slug>`` picks a school)
* ``GET  /webhooks/website/widget.js``   the widget: one dependency-free file, see ``static/widget.js``
* ``GET  /webhooks/website/widget.css``  its styles (the script adds the stylesheet itself)
* ``POST /webhooks/website/webhook``     ``{"sender", "message", "metadata": {"school"}}`` -> Rasa's messages

A school embeds the widget with one tag (the page then needs nothing else)::

    <script src="https://bot.school.example/webhooks/website/widget.js" data-school="lunsford" defer></script>

Who is talking is decided here, not by the client: the AUDIENCE is fixed by the channel (parent on the
website, pupil on the pupil page), whatever the request says, and the SCHOOL is the embedding page's
``data-school`` when it names a known school, else the deployment's default. Sender ids are prefixed with
the channel name, so a widget conversation can never continue a conversation from another channel.
"""

from __future__ import annotations

import html
import json
import logging
from asyncio import CancelledError
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from string import Template
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.validation import message_body_problem
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


def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None


def widget_body_problem(body: Any) -> str | None:
    """Like the REST channel's checks, and the widgets must name a sender (else everyone shares a tracker)."""
    problem = message_body_problem(body)
    if problem:
        return problem
    if body.get("sender") is None:
        return "'sender' is required"
    return None


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

    @classmethod
    def name(cls) -> str:
        return "website"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> WebsiteInput:
        return cls(**(credentials or {}))

    def __init__(self, **config: Any) -> None:
        self.config = config

    # --- who is talking: decided here, never by the client -------------------------------------------

    def school_for(self, requested: Any) -> str:
        """``requested`` if it is a known school slug, else the deployment's default school."""
        return resolve_context(get_settings(), known_schools(), {"school": requested}).school

    def get_metadata(self, request: Request) -> dict[str, Any]:
        body = _json_body(request)
        client = body.get("metadata") if isinstance(body, dict) else None
        requested = client.get("school") if isinstance(client, dict) else None
        # Only these three keys reach the tracker: anything else the client sends is dropped.
        return {"school": self.school_for(requested), "audience": self.AUDIENCE, "channel": self.name()}

    async def _extract_sender(self, request: Request) -> str:
        return f"{self.name()}-{_json_body(request)['sender']}"

    def _extract_input_channel(self, request: Request) -> str:
        return self.name()

    # --- pages ---------------------------------------------------------------------------------------

    def page_values(self, school: str) -> dict[str, str]:
        """The values ``PAGE_TEMPLATE`` needs (plain text; :func:`render_template` escapes them)."""
        return {
            "prefix": f"/webhooks/{self.name()}",
            "school": school,
            "school_name": known_schools()[school].name,
        }

    def page(self, request: Request) -> HTTPResponse:
        school = self.school_for(request.args.get("school"))
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

        @blueprint.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            problem = widget_body_problem(_json_body(request))
            if problem:
                return response.json({"error": problem}, status=400, headers=PAGE_HEADERS)
            text = _json_body(request)["message"]
            collector = CollectingOutputChannel()
            try:
                await on_new_message(
                    UserMessage(
                        text,
                        collector,
                        await self._extract_sender(request),
                        input_channel=self._extract_input_channel(request),
                        metadata=self.get_metadata(request),
                    )
                )
            except CancelledError:
                logger.error("%s: handling a message timed out", self.name())
            except Exception:
                logger.exception("%s: handling a message failed", self.name())
            return response.json(collector.messages, headers=PAGE_HEADERS)

        return blueprint


def credentials_entry(settings: Settings) -> tuple[str, dict | None]:
    """Always on: the parent widget needs no secrets."""
    return f"{__name__}.{WebsiteInput.__name__}", None
