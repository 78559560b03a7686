"""Start Rasa's own CLI (``python -m bot.rasa_server run ...``) after applying SchoolGuide's speed fixes.

Each fix replaces one Rasa 3.6 function with one that gives the same result faster; each has a test in
tests/test_rasa_server.py proving the behaviour is unchanged. ``schoolguide run``, the tests' stack and
``make bench`` all start the Rasa server through here.

* ``RemoteAction._validate_action_result``: Rasa calls ``jsonschema.validate`` on every action server reply,
  and that function first re-checks the (constant) schema against the JSON-Schema meta-schema. Profiling put
  that check at ~40% of the server's time per message (tens of milliseconds on 2 cores). The fix checks the
  schema once and reuses one validator; replies are validated exactly as before, with the same error text.
* ``Event.resolve_by_type``: loading a tracker from the SQL tracker store turns each stored event back into an
  object, and for every event Rasa walks the whole ``Event`` class tree (~30 recursive calls) to find the
  class for its type name: ~15 ms per message, growing with the conversation. The fix remembers the class
  found for each type name (the first match, as before); unknown names still take Rasa's own path.

It also installs the safety net (``apply_safety_net``), which is not a speed fix: ``Agent.handle_message``
cleans every message before NLU (lone surrogates, control characters, metadata nested too deep; see
``bot.untrusted``) and, when handling still raises, hands the message to the failure path
instead of letting Rasa's channel log it and answer ``[]``: a possible disclosure gets an encrypted record
and the safe reply, anything else an apology. A disclosure that arrives before the model has loaded is
recorded and answered too; other messages then keep Rasa's empty answer, which start-up probes wait on.

And it bounds request bodies (``bound_request_size``): Sanic reads a whole body, up to its default 100 MB,
before any handler (and so any channel's own size check) runs. The server's ``REQUEST_MAX_SIZE`` is set
just above the largest body an enabled channel accepts, so a bigger one gets 413 from Sanic, on its
``Content-Length``, without being read. ``SANIC_REQUEST_MAX_SIZE`` in the environment overrides it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from bot.logging_filters import install_log_redaction

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _action_result_validator() -> Any:
    from jsonschema.validators import validator_for
    from rasa.core.actions.action import RemoteAction

    schema = RemoteAction.action_response_format_spec()
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _validate_action_result(self: Any, result: dict[str, Any]) -> bool:
    from jsonschema import ValidationError, exceptions
    from rasa.shared.constants import DOCS_BASE_URL

    error = exceptions.best_match(_action_result_validator().iter_errors(result))
    if error is None:
        return True
    if not isinstance(error, ValidationError):  # pragma: no cover - best_match only yields ValidationErrors
        raise error
    error.message += (
        ". Failed to validate Action server response from API, "
        "make sure your response from the Action endpoint is valid. "
        "For more information about the format visit "
        f"{DOCS_BASE_URL}/custom-actions"
    )
    raise error


_EVENT_CLASSES: dict[str, Any] = {}


def _resolve_by_type(type_name: str, default: Any = None) -> Any:
    found = _EVENT_CLASSES.get(type_name)
    if found is None:
        found = _ORIGINAL_RESOLVE(type_name, default)
        if found is not None and found is not default:
            _EVENT_CLASSES[type_name] = found
    return found


_ORIGINAL_RESOLVE: Any = None


def apply_speedups() -> None:
    """Install the fixes (idempotent)."""
    global _ORIGINAL_RESOLVE
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.core.events import Event

    RemoteAction._validate_action_result = _validate_action_result
    if Event.resolve_by_type is not _resolve_by_type:
        _ORIGINAL_RESOLVE = Event.resolve_by_type
        Event.resolve_by_type = staticmethod(_resolve_by_type)


# --- the safety net: no message ends in silence -------------------------------------------------------------

_ORIGINAL_HANDLE_MESSAGE: Any = None
# Bounds on the failure path's own look-ups, so a hung database cannot hold the reply back for long.
_LOOKUP_TIMEOUT_SECONDS = 10


def _clean_message(message: Any) -> None:
    from bot.untrusted import bounded_metadata, clean_text

    message.text = clean_text(message.text)
    if message.metadata is not None:
        message.metadata = bounded_metadata(message.metadata)


async def _handle_message_safely(self: Any, message: Any) -> Any:
    """``Agent.handle_message`` on cleaned input; a failure goes to the failure path, never to ``[]``."""
    try:
        _clean_message(message)
    except Exception:  # pragma: no cover - cleaning is total; if it ever is not, handle the message as sent
        logger.exception("could not clean a message before NLU")
    try:
        result = await _ORIGINAL_HANDLE_MESSAGE(self, message)
    except Exception as exc:  # CancelledError is not an Exception: a cancelled request stays cancelled
        logger.error(
            "handling a message of conversation %r failed (%s); using the failure path\n%s",
            message.sender_id,
            type(exc).__name__,
            # Frames only: an exception's message can quote the words, which never go in a log.
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        return await _recover(self, message, only_disclosures=False)
    if result is None and not self.is_ready():
        return await _recover(self, message, only_disclosures=True)
    return result


async def _classifier_says_disclose(agent: Any, message: Any) -> bool:
    """The trained layer's opinion, on the text alone (the metadata may be what broke the first parse)."""
    from rasa.core.channels.channel import UserMessage

    from bot.safeguarding.detector import DISCLOSE_INTENT

    if not agent.is_ready() or not isinstance(message.text, str):
        return False
    try:
        probe = UserMessage(message.text, sender_id=message.sender_id)
        parsed = await asyncio.wait_for(agent.processor.parse_message(probe), _LOOKUP_TIMEOUT_SECONDS)
        return (parsed.get("intent") or {}).get("name") == DISCLOSE_INTENT
    except Exception:
        return False


async def _slots(agent: Any, sender_id: str) -> Mapping[str, Any] | None:
    """The conversation's slots (school, audience), if its tracker can still be read."""
    try:
        tracker = await asyncio.wait_for(agent.tracker_store.retrieve(sender_id), _LOOKUP_TIMEOUT_SECONDS)
        return tracker.current_slot_values() if tracker is not None else None
    except Exception:
        return None


async def _recover(agent: Any, message: Any, *, only_disclosures: bool) -> Any:
    """Record a possible disclosure and send its safe reply (or an apology) through the message's channel."""
    from rasa.core.channels.channel import CollectingOutputChannel

    from bot.safeguarding import failsafe
    from bot.settings import get_settings

    output = message.output_channel
    try:
        verdict = await asyncio.to_thread(failsafe.assess_failed_message, message.text)
        if not verdict.may_disclose and await _classifier_says_disclose(agent, message):
            verdict = failsafe.BY_CLASSIFIER
        if only_disclosures and not verdict.may_disclose:
            return None
        slots = await _slots(agent, message.sender_id) if agent.tracker_store is not None else None
        school, audience = failsafe.conversation_context(slots, message.metadata)
        channel = message.input_channel or (output.name() if output is not None else None)
        replies = await asyncio.to_thread(
            failsafe.recover,
            get_settings(),
            verdict,
            text=message.text,
            sender_id=message.sender_id,
            channel=channel,
            message_id=message.message_id,
            school=school,
            audience=audience,
        )
    except Exception as exc:
        # Nothing decided and nothing stored: recall first, so the reply that is safe for anyone.
        logger.critical(
            "the failure path itself failed for conversation %r (%s); sending the safe reply unrecorded\n%s",
            message.sender_id,
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        replies = [failsafe.safe_reply(None)]
    collected = isinstance(output, CollectingOutputChannel)
    if collected and failsafe.safe_reply_sent(m.get("text") for m in output.messages):
        # The normal path got as far as the safe reply: do not repeat it.
        replies = [text for text in replies if text not in failsafe.safe_reply_texts()]
    for text in replies:
        try:
            await output.send_text_message(message.sender_id, text)
        except Exception:
            logger.error("could not send the failure path's reply to %r", message.sender_id, exc_info=True)
    return output.messages if collected else None


def apply_safety_net() -> None:
    """Wrap ``Agent.handle_message`` (idempotent)."""
    global _ORIGINAL_HANDLE_MESSAGE
    from rasa.core.agent import Agent

    if Agent.handle_message is not _handle_message_safely:
        _ORIGINAL_HANDLE_MESSAGE = Agent.handle_message
        Agent.handle_message = _handle_message_safely


# --- request size: nothing bigger than a channel accepts is read ------------------------------------------

# Slack and Teams bodies are signed by the platform and have no limit of their own in SchoolGuide (Slack cuts
# the text to 10,000 characters after reading it). A Slack message holds up to 40,000 characters, sent twice
# (text and rich-text blocks) and JSON-escaped at worst (\uXXXX, 6 bytes): about 480 KB; a Teams message is
# capped near 28 KB. 1 MiB covers both with room for the rest of the event.
PLATFORM_BODY_BYTES = 1024 * 1024
# "Just above": a body a little over a channel's own limit still gets that channel's clearer 413.
BODY_MARGIN_BYTES = 4 * 1024
_ORIGINAL_CONFIGURE_APP: Any = None


def channel_body_limits() -> dict[str, int]:
    """The largest body each channel accepts, by channel name (bot/channels/validation.py)."""
    from bot.channels.validation import MAX_REST_BODY_BYTES, MAX_WIDGET_BODY_BYTES

    return {
        "rest": MAX_REST_BODY_BYTES,
        "website": MAX_WIDGET_BODY_BYTES,
        "pupil": MAX_WIDGET_BODY_BYTES,
        "slack": PLATFORM_BODY_BYTES,
        "teams": PLATFORM_BODY_BYTES,
    }


def request_max_size(channel_names: Iterable[str]) -> int:
    """Sanic's ``REQUEST_MAX_SIZE`` for a server with these channels: just above the largest body any of them
    accepts (an unknown channel counts as a platform one). With no channel only small requests remain."""
    limits = channel_body_limits()
    largest = max((limits.get(name, PLATFORM_BODY_BYTES) for name in channel_names), default=0)
    return max(largest, limits["rest"]) + BODY_MARGIN_BYTES


def _configure_app_bounded(input_channels: Any = None, *args: Any, **kwargs: Any) -> Any:
    app = _ORIGINAL_CONFIGURE_APP(input_channels, *args, **kwargs)
    if os.environ.get("SANIC_REQUEST_MAX_SIZE"):  # an operator's explicit choice (Sanic has read it)
        return app
    app.config.REQUEST_MAX_SIZE = request_max_size(channel.name() for channel in input_channels or ())
    logger.info("request bodies are read up to %d bytes", app.config.REQUEST_MAX_SIZE)
    _answer_too_large_as_json(app)
    return app


def _answer_too_large_as_json(app: Any) -> None:
    """Sanic's own 413 in the channels' error shape (``{"error": ...}``)."""
    from sanic import response
    from sanic.exceptions import PayloadTooLarge

    @app.exception(PayloadTooLarge)
    async def _too_large(request: Any, exception: Any) -> Any:  # noqa: ARG001
        limit_kb = app.config.REQUEST_MAX_SIZE // 1024
        return response.json(
            {"error": f"the body is too large (at most {limit_kb} KB)"},
            status=413,
        )


def bound_request_size() -> None:
    """Set the Rasa server's Sanic ``REQUEST_MAX_SIZE`` from the channels it serves (idempotent).

    ``rasa.core.run.serve_application`` builds the app with ``configure_app`` (which knows the channels from
    the credentials file) and then runs it; Sanic reads the limit per connection, so setting it here holds."""
    global _ORIGINAL_CONFIGURE_APP
    import rasa.core.run

    if rasa.core.run.configure_app is not _configure_app_bounded:
        _ORIGINAL_CONFIGURE_APP = rasa.core.run.configure_app
        rasa.core.run.configure_app = _configure_app_bounded


def main(argv: list[str] | None = None) -> None:
    install_log_redaction("rasa")  # no message text in any log (bot/logging_filters.py)
    apply_speedups()
    apply_safety_net()
    bound_request_size()
    from rasa.__main__ import main as rasa_main

    sys.argv = ["rasa", *(sys.argv[1:] if argv is None else argv)]
    rasa_main()


if __name__ == "__main__":
    main()
