"""No message text in any log: the words people send are withheld from every log record of both servers.

Rasa logs the user's words at DEBUG in several places (the message, the parse data, slot values), a
traceback can quote them, and a handler added later by Rasa or Sanic would not carry a handler filter. So the
redaction sits in the log record factory, which every record passes through whatever handler prints it: each
server remembers the recent messages it received (Rasa: every ``UserMessage``; the action server: the
latest message and the text slots of every tracker it is sent) and replaces any of them found in a record's
message or traceback with ``[message text withheld]``. Texts shorter than ``MIN_CHARS`` are not remembered:
replacing "hi" or "ok" wherever they occur would garble every line, and they cannot carry a disclosure.

Installed by one call at the top of each server's ``main()`` (``install_log_redaction("rasa")`` or
``("actions")``).
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections import deque
from typing import Any

WITHHELD = "[message text withheld]"
MIN_CHARS = 4
REMEMBERED = 512

_recent: deque[str] = deque(maxlen=REMEMBERED)
_longest_first: tuple[str, ...] = ()
_lock = threading.Lock()
_installed: set[str] = set()
_previous_factory: Any = None


def remember(text: Any) -> None:
    """Withhold ``text`` (and its JSON-escaped form, as structured logs print it) from later log records."""
    global _longest_first
    if not isinstance(text, str) or len(text.strip()) < MIN_CHARS:
        return
    forms = {text, text.strip(), json.dumps(text.strip())[1:-1]}
    with _lock:
        for form in forms:
            if form in _recent:
                _recent.remove(form)
            _recent.append(form)
        # Longest first: a short message inside a longer one must not leave the rest of the longer one.
        _longest_first = tuple(sorted(set(_recent), key=len, reverse=True))


def forget_all() -> None:
    """Tests: start from nothing remembered."""
    global _longest_first
    with _lock:
        _recent.clear()
        _longest_first = ()


def redact(text: str) -> str:
    """``text`` with every remembered message replaced by ``WITHHELD``."""
    for words in _longest_first:
        if words in text:
            text = text.replace(words, WITHHELD)
    return text


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Withhold remembered messages from ``record``'s message and traceback (in place)."""
    if not _longest_first:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: leave it to logging's own error report
        return record
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        rendered = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = redact(rendered)  # formatters print exc_text when it is set
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    try:
        return scrub(record)
    except Exception:  # logging must never fail because of the redaction
        return record


def install_log_redaction(server: str) -> None:
    """Install the record factory and remember incoming messages for ``server`` ("rasa" or "actions")."""
    global _previous_factory
    current = logging.getLogRecordFactory()
    if current is not _factory:  # never wrap itself (installed twice, or restored by a test)
        _previous_factory = current
        logging.setLogRecordFactory(_factory)
    if server in _installed:
        return
    _installed.add(server)
    if server == "rasa":
        _remember_rasa_messages()
    elif server == "actions":
        _remember_action_trackers()
    else:
        raise ValueError(f"unknown server {server!r}; expected 'rasa' or 'actions'")


def _remember_rasa_messages() -> None:
    from rasa.core.channels.channel import UserMessage

    original = UserMessage.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        remember(getattr(self, "text", None))

    UserMessage.__init__ = __init__


def _remember_action_trackers() -> None:
    from rasa_sdk.interfaces import Tracker

    original = Tracker.from_dict.__func__  # type: ignore[attr-defined]

    def from_dict(cls: Any, state: Any) -> Any:
        tracker = original(cls, state)
        latest = tracker.latest_message if isinstance(tracker.latest_message, dict) else {}
        remember(latest.get("text"))
        for value in (tracker.slots or {}).values():
            remember(value)
        return tracker

    Tracker.from_dict = classmethod(from_dict)
