"""Slack for staff: Rasa's Slack connector, made safe to put in front of a school's staff workspace.

Staff talk to SchoolGuide by direct message or by @-mentioning it in a channel. Compared with the stock
``rasa.core.channels.slack`` connector this one:

* posts replies to a configurable Web API base URL (``SCHOOLGUIDE_SLACK_API_BASE_URL``; tests point it at a
  local server standing in for Slack);
* checks Slack's request signature on every request before reading the body, with slack_sdk's
  ``SignatureVerifier`` (HMAC-SHA256 over ``v0:<timestamp>:<body>`` with the signing secret, timestamp within
  five minutes of now either way) and answers a missing, forged or stale signature, or a body that is not
  UTF-8 and so cannot be checked, with **401**; a signing secret is required to start at all;
* answers every event exactly once: Slack re-sends an event (with ``X-Slack-Retry-Num``) when it did not see
  our 200 in time, and the stock connector only ignores retries whose reason is ``http_timeout``. Here every
  event's ``event_id`` (and the message's channel + ``ts``, since one message can arrive as two events) is
  remembered, first in a bounded in-memory LRU (:class:`RecentKeys`, 10,000 entries), then, when the channel
  is given ``dedupe_database_url`` (``schoolguide run`` gives it the tracker store's), for an hour in a table
  shared by every Rasa process and kept across restarts (:mod:`bot.channels.dedupe`). A repeat is
  acknowledged with 200 and ``X-Slack-No-Retry: 1`` and not processed. A retry for an event no process saw
  (the first delivery was lost) is processed, once;
* marks every message as coming from staff: metadata ``{"audience": "staff", "school": <default school>,
  "channel": "slack"}`` (a Slack workspace is the school's staff);
* treats the text like the web channels do (:mod:`bot.channels.validation`): lone surrogates and control
  characters cleaned, cut to 10,000 characters (cut, not refused: a long disclosure still reaches the
  detector);
* limits each person to ``SCHOOLGUIDE_RATE_LIMIT_PER_SENDER`` messages a minute, with the web channels'
  limiter (:mod:`bot.channels.limits`), whose disclosure exemption lets a message that may be a disclosure
  through (once per person per minute). A refused message is acknowledged (200, ``X-Slack-No-Retry``) and
  the first one in a minute gets a reply saying to send it again shortly;
* answers ``url_verification`` with the challenge, ignores bots (including itself), edits, deletions and
  joins, and answers a body that is not valid JSON (or not an object) with 400 instead of a server error.

Replies: each bot message is one Slack message (the paragraphs, e.g. the answer and its "Source:" citation
line, stay together), sent as plain text (``mrkdwn: false``) so policy quotes appear verbatim; the
``policy_answer`` payload becomes a small context line listing the cited clauses. A Slack API error is
logged, never raised into the dialogue engine.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from cachetools import TTLCache
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.slack import SlackBot, SlackInput
from rasa.shared.exceptions import InvalidConfigException
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.dedupe import RECENT_EVENTS, EventDeduplicator, RecentKeys
from bot.channels.limits import PERIOD_SECONDS, WebLimits, platform_too_many_reply, shared_limits
from bot.channels.validation import cut_message
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://slack.com/api/"
# Slack's rule, which slack_sdk's SignatureVerifier applies (fixed): a request whose timestamp is more than
# five minutes from now is refused (a replay). Here only to say why in the log.
SIGNATURE_MAX_AGE_SECONDS = 5 * 60
SENDER_PREFIX = "slack:"
# Slack truncates a message's text at 40,000 characters and advises keeping it under 4,000.
MAX_POST_CHARS = 3_000
MAX_BUTTONS = 25
MAX_BUTTON_TITLE = 75
# Message subtypes that are still a person writing to us; the rest (edits, deletions, joins, bot posts...)
# are ignored.
USER_SUBTYPES = (None, "file_share", "thread_broadcast")


def normalise_base_url(url: str | None) -> str:
    """The Web API base URL as slack_sdk wants it: ending in exactly one "/"."""
    return (url or DEFAULT_API_BASE_URL).rstrip("/") + "/"


# --- Request signatures --------------------------------------------------------------------------------


def signature_problem(
    verifier: SignatureVerifier,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
) -> str | None:
    """Why a request is not authentically from Slack, or None when ``verifier`` (slack_sdk's) accepts it.

    slack_sdk decides (HMAC-SHA256 over ``v0:<timestamp>:<body>``, constant-time comparison, timestamp
    within five minutes either way). The checks before it turn what would make it raise into a refusal: a
    timestamp that is not a number (``int()`` raises), a body that is not UTF-8 (it decodes ``bytes``
    strictly; Slack only sends UTF-8, so such a body cannot be verified) and a non-ASCII signature
    (``hmac.compare_digest`` raises on non-ASCII ``str``). The reasons after it are only for the log.
    """
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "X-Slack-Request-Timestamp is not a number"
    if not signature.isascii():
        return "X-Slack-Signature is not a v0 signature"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8, so its signature cannot be checked"
    if verifier.is_valid(body, timestamp, signature):
        return None
    if abs(verifier.clock.now() - sent_at) > SIGNATURE_MAX_AGE_SECONDS:
        return "X-Slack-Request-Timestamp is more than five minutes from now (possible replay)"
    return "X-Slack-Signature does not match the body"


# --- Output ---------------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Slack's required escaping of the three control characters in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _chunks(text: str, limit: int = MAX_POST_CHARS) -> list[str]:
    """``text`` as few messages as possible, split only between paragraphs (or hard, for a huge one)."""
    chunks: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in text.strip().split("\n\n")):
        if not paragraph:
            continue
        while len(paragraph) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(paragraph[:limit])
            paragraph = paragraph[limit:]
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if len(candidate) > limit:
            chunks.append(current)
            current = paragraph
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def policy_context_line(payload: Mapping[str, Any]) -> str | None:
    """A one-line list of the clauses a ``policy_answer`` cites, or None if it cites none."""
    parts = []
    for clause in payload.get("clauses") or []:
        if isinstance(clause, Mapping) and clause.get("id"):
            section = clause.get("section")
            parts.append(f"{clause['id']} ({section})" if section else str(clause["id"]))
    if not parts:
        return None
    return ("Clauses cited: " + "; ".join(parts))[:MAX_POST_CHARS]


class SchoolGuideSlackBot(SlackBot):
    """Slack output: posts to the configured Web API, once per bot message, never raising on API errors."""

    def __init__(
        self,
        token: str,
        slack_channel: str | None = None,
        thread_id: str | None = None,
        proxy: str | None = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
    ) -> None:
        super().__init__(token, slack_channel, thread_id, proxy)
        self.client = AsyncWebClient(
            token,
            base_url=normalise_base_url(api_base_url),
            proxy=proxy,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(),
                AsyncRateLimitErrorRetryHandler(max_retry_count=2),
            ],
        )

    def _recipient(self, recipient_id: str) -> str:
        # Messages Rasa sends outside a Slack request (e.g. reminders) come with the sender id, which is the
        # prefixed Slack user id; posting to a user id opens the app's DM with them.
        return self.slack_channel or recipient_id.removeprefix(SENDER_PREFIX)

    async def _post_message(self, channel: str, **kwargs: Any) -> None:
        # No `as_user`: Slack apps with granular bot scopes get "invalid_arguments" for it.
        if self.thread_id:
            kwargs["thread_ts"] = self.thread_id
        try:
            await self.client.chat_postMessage(channel=channel, **kwargs)
        except SlackApiError as exc:
            logger.error("Slack chat.postMessage to %s failed: %s", channel, exc.response.get("error"))
        except (SlackClientError, OSError, asyncio.TimeoutError) as exc:
            logger.error("Slack chat.postMessage to %s failed: %r", channel, exc)

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        for chunk in _chunks(text):
            await self._post_message(self._recipient(recipient_id), text=escape(chunk), mrkdwn=False)

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        usable = [b for b in buttons if isinstance(b, Mapping) and b.get("title") and b.get("payload")]
        if not usable or len(usable) > MAX_BUTTONS or len(text) > MAX_POST_CHARS:
            return await self.send_text_message(recipient_id, text)
        blocks = [
            {"type": "section", "text": {"type": "plain_text", "text": text}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": str(b["title"])[:MAX_BUTTON_TITLE]},
                        "value": str(b["payload"])[:2000],
                    }
                    for b in usable
                ],
            },
        ]
        await self._post_message(self._recipient(recipient_id), text=escape(text), blocks=blocks)

    async def send_custom_json(self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any) -> None:
        if json_message.get("type") == "policy_answer":
            line = policy_context_line(json_message)
            if line:
                block = {"type": "context", "elements": [{"type": "plain_text", "text": line}]}
                await self._post_message(self._recipient(recipient_id), text=escape(line), blocks=[block])
            return
        if any(key in json_message for key in ("text", "blocks", "attachments")):
            message = {k: v for k, v in json_message.items() if k not in ("channel", "as_user", "thread_ts")}
            await self._post_message(self._recipient(recipient_id), **message)
            return
        logger.debug(
            "Slack: custom payload %r has nothing Slack can show; not sent", json_message.get("type")
        )

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        block = {"type": "image", "image_url": image, "alt_text": image}
        await self._post_message(self._recipient(recipient_id), text=escape(image), blocks=[block])

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        await self._post_message(self._recipient(recipient_id), attachments=[attachment])


# --- Input ----------------------------------------------------------------------------------------------


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value if isinstance(value, str) else None


def _id(value: Any) -> str | None:
    """``value["id"]`` when ``value`` is an object with a string id."""
    return value.get("id") if isinstance(value, Mapping) and isinstance(value.get("id"), str) else None


def _no_retry(text: str = "") -> HTTPResponse:
    return response.text(text, status=HTTPStatus.OK, headers={"X-Slack-No-Retry": "1"})


def message_text(text: str) -> str:
    """What the dialogue engine gets (see ``cut_message``)."""
    return cut_message(text, "Slack")


class SchoolGuideSlackInput(SlackInput):
    """The ``slack`` channel (``/webhooks/slack/webhook``) for staff."""

    @classmethod
    def name(cls) -> str:
        return "slack"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        if not credentials or not credentials.get("slack_token"):
            cls.raise_missing_credentials_exception()
        return cls(
            slack_token=credentials["slack_token"],
            slack_signing_secret=credentials.get("slack_signing_secret") or "",
            api_base_url=credentials.get("api_base_url") or DEFAULT_API_BASE_URL,
            default_school=credentials.get("default_school"),
            proxy=credentials.get("proxy"),
            dedupe_database_url=credentials.get("dedupe_database_url"),
        )

    def __init__(
        self,
        slack_token: str,
        slack_signing_secret: str,
        api_base_url: str = DEFAULT_API_BASE_URL,
        default_school: str | None = None,
        proxy: str | None = None,
        recent_events: int = RECENT_EVENTS,
        dedupe_database_url: str | None = None,
        limits: WebLimits | None = None,
    ) -> None:
        # The parent refuses to start without a signing secret (InvalidConfigException).
        super().__init__(slack_token, proxy=proxy, slack_signing_secret=slack_signing_secret)
        try:
            self.verifier = SignatureVerifier(slack_signing_secret)
        except ValueError as exc:  # a secret of spaces only
            raise InvalidConfigException(f"the Slack signing secret is not usable: {exc}") from None
        self.api_base_url = normalise_base_url(api_base_url)
        # None: the process-wide per-sender limit the web channels use (SCHOOLGUIDE_RATE_LIMIT_PER_SENDER).
        self.limits = limits
        self._told_to_wait: TTLCache = TTLCache(maxsize=RECENT_EVENTS, ttl=PERIOD_SECONDS)
        self.default_school = default_school
        # Without a database URL, only this process remembers what it answered.
        self.dedupe = EventDeduplicator("slack", dedupe_database_url, capacity=recent_events)
        self.recent: RecentKeys = self.dedupe.recent

    # Replies ------------------------------------------------------------------------------------------

    def get_output_channel(self, channel: str | None = None, thread_id: str | None = None) -> OutputChannel:
        return SchoolGuideSlackBot(
            self.slack_token, channel or self.slack_channel, thread_id, self.proxy, self.api_base_url
        )

    # Requests -----------------------------------------------------------------------------------------

    def is_request_from_slack_authentic(self, request: Request) -> bool:
        return self._signature_problem(request) is None

    def _signature_problem(self, request: Request) -> str | None:
        return signature_problem(
            self.verifier,
            _header(request, "X-Slack-Request-Timestamp"),
            _header(request, "X-Slack-Signature"),
            request.body or b"",
        )

    def _metadata(self, channel: str, thread_id: str | None, users: list[str]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"audience": "staff", "channel": "slack"}
        if self.default_school:
            metadata["school"] = self.default_school
        return metadata | {"out_channel": channel, "thread_id": thread_id, "users": users}

    def _dispatch(
        self,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
        text: str,
        user: str,
        channel: str,
        thread_id: str | None,
        users: list[str],
    ) -> None:
        """Hand the message to Rasa in the background (Slack wants its 200 within three seconds)."""
        message = UserMessage(
            text,
            self.get_output_channel(channel, thread_id),
            SENDER_PREFIX + user,
            input_channel=self.name(),
            metadata=self._metadata(channel, thread_id, users),
        )
        self._background(on_new_message(message))

    def _background(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background_tasks.add(task)
        task.add_done_callback(self._task_done)

    def _over_limit(self, user: str, text: str, channel: str, thread_id: str | None) -> bool:
        """Whether the sender is over the per-sender limit, as on the web channels (bot/channels/limits.py:
        a message that may be a disclosure still goes through, once per sender per minute). The first
        refused message in a minute gets a reply saying so; later ones are only acknowledged."""
        sender = SENDER_PREFIX + user
        limits = self.limits or shared_limits(get_settings())
        retry_after = limits.message(sender, None, text)
        if not retry_after:
            return False
        logger.warning("Slack: %s is over the message rate limit; not handled", sender)
        if sender not in self._told_to_wait:
            self._told_to_wait[sender] = True
            out = self.get_output_channel(channel, thread_id)
            self._background(out.send_text_message(sender, platform_too_many_reply(retry_after)))
        return True

    def _task_done(self, task: asyncio.Task) -> None:
        self._background_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Slack: handling a message failed", exc_info=task.exception())

    @staticmethod
    def _bot_users(body: Mapping[str, Any]) -> list[str]:
        """SchoolGuide's own Slack user id(s), from the event's ``authorizations``.

        Not ``authed_users`` (which the stock connector uses): those are people who can see the event.
        """
        authorizations = body.get("authorizations")
        if not isinstance(authorizations, list):
            return []
        return [
            auth["user_id"]
            for auth in authorizations
            if isinstance(auth, Mapping) and auth.get("is_bot") and isinstance(auth.get("user_id"), str)
        ]

    async def _handle_event(
        self,
        request: Request,
        body: Mapping[str, Any],
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
    ) -> HTTPResponse:
        event = body.get("event")
        if not isinstance(event, Mapping):
            return response.text("event_callback without an event", status=HTTPStatus.BAD_REQUEST)
        kind, user, channel = event.get("type"), event.get("user"), event.get("channel")
        text, ts = event.get("text"), event.get("ts")
        bot_users = self._bot_users(body)
        if (
            kind not in ("message", "app_mention")
            or event.get("bot_id")
            or event.get("subtype") not in USER_SUBTYPES
            or not isinstance(user, str)
            or user in bot_users
            or not isinstance(channel, str)
            or not isinstance(text, str)
        ):
            return response.text("Not a message from a person; ignored.")
        # Direct messages and @-mentions only: plain channel chatter is not addressed to SchoolGuide.
        if kind == "message" and event.get("channel_type") != "im":
            return response.text("Not addressed to SchoolGuide; ignored.")

        event_id = body.get("event_id")
        keys = [f"event:{event_id}" if isinstance(event_id, str) else None]
        keys.append(f"message:{channel}:{ts}" if isinstance(ts, str) else None)
        if await self.dedupe.is_repeat(keys):
            logger.info(
                "Slack: event %s (retry %s, %s) already handled; not answering again",
                event_id,
                _header(request, "X-Slack-Retry-Num"),
                _header(request, "X-Slack-Retry-Reason"),
            )
            return _no_retry("Already handled.")

        text = message_text(self._sanitize_user_message(text, bot_users))
        if not text:
            return response.text("Empty message; ignored.")
        thread_ts = event.get("thread_ts")
        if not isinstance(thread_ts, str):
            # Answer a channel @-mention in a thread under it; a direct message in the DM itself.
            thread_ts = ts if kind == "app_mention" and event.get("channel_type") != "im" else None
        if self._over_limit(user, text, channel, thread_ts):
            return _no_retry("Too many messages; not handled.")
        self._dispatch(on_new_message, text, user, channel, thread_ts, bot_users)
        return response.text("")

    async def _handle_interaction(
        self, payload: Mapping[str, Any], on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> HTTPResponse:
        """A button click (the fallback's "did you mean..." topics)."""
        user, channel = _id(payload.get("user")), _id(payload.get("channel"))
        actions = payload.get("actions")
        if not (isinstance(user, str) and isinstance(channel, str) and isinstance(actions, list) and actions):
            return response.text("Not an interaction SchoolGuide handles; ignored.")
        if not isinstance(actions[0], Mapping) or not self._is_interactive_message(dict(payload)):
            return response.text("Not an interaction SchoolGuide handles; ignored.")
        text = self._get_interactive_response(actions[0])
        if not isinstance(text, str) or not text:
            return response.text("")
        trigger = payload.get("trigger_id")
        if await self.dedupe.is_repeat([f"action:{trigger}" if isinstance(trigger, str) else None]):
            return _no_retry("Already handled.")
        message = payload.get("message") if isinstance(payload.get("message"), Mapping) else {}
        thread_ts = message.get("thread_ts") if isinstance(message.get("thread_ts"), str) else None
        text = message_text(text)
        if not text:
            return response.text("")
        if self._over_limit(user, text, channel, thread_ts):
            return _no_retry("Too many messages; not handled.")
        self._dispatch(on_new_message, text, user, channel, thread_ts, [])
        return response.text("")

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        slack_webhook = Blueprint("schoolguide_slack_webhook", __name__)

        @slack_webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @slack_webhook.route("/webhook", methods=["POST"])
        async def webhook(request: Request) -> HTTPResponse:
            problem = self._signature_problem(request)
            if problem:
                logger.warning(
                    "Slack: rejected a request from %s: %s", request.remote_addr or request.ip, problem
                )
                return response.text(f"Not a signed Slack request: {problem}", status=HTTPStatus.UNAUTHORIZED)

            content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
            if content_type == "application/x-www-form-urlencoded":
                try:
                    form = parse_qs(request.body.decode("utf-8"))
                    payload = json.loads(form["payload"][0])
                except (UnicodeDecodeError, KeyError, IndexError, ValueError):
                    return response.text(
                        "expected a form with a JSON 'payload'", status=HTTPStatus.BAD_REQUEST
                    )
                if not isinstance(payload, Mapping):
                    return response.text("'payload' must be a JSON object", status=HTTPStatus.BAD_REQUEST)
                return await self._handle_interaction(payload, on_new_message)

            try:
                body = json.loads(request.body or b"")
            except (UnicodeDecodeError, ValueError):
                return response.text("the body is not valid JSON", status=HTTPStatus.BAD_REQUEST)
            if not isinstance(body, Mapping):
                return response.text("the body must be a JSON object", status=HTTPStatus.BAD_REQUEST)
            if body.get("type") == "url_verification":
                challenge = body.get("challenge")
                if not isinstance(challenge, str):
                    return response.text(
                        "url_verification without a challenge", status=HTTPStatus.BAD_REQUEST
                    )
                return response.text(challenge)
            if body.get("type") != "event_callback":
                return response.text("Not an event SchoolGuide handles; ignored.")
            return await self._handle_event(request, body, on_new_message)

        return slack_webhook


def credentials_entry(settings: Settings) -> tuple[str, dict[str, Any]] | None:
    """On when both the bot token and the signing secret are set (never without signature checks)."""
    if not (settings.slack_token and settings.slack_signing_secret):
        if settings.slack_token or settings.slack_signing_secret:
            logger.warning(
                "Slack is off: it needs both SCHOOLGUIDE_SLACK_TOKEN and SCHOOLGUIDE_SLACK_SIGNING_SECRET"
            )
        return None
    return f"{__name__}.{SchoolGuideSlackInput.__name__}", {
        "slack_token": settings.slack_token,
        "slack_signing_secret": settings.slack_signing_secret,
        "api_base_url": normalise_base_url(settings.slack_api_base_url),
        "default_school": settings.default_school,
        # Retries are remembered across processes in the tracker store's database (bot/channels/dedupe.py).
        "dedupe_database_url": settings.tracker_database_url,
    }
