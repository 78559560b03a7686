"""Checks on what a client posts before Rasa sees it: clear 4xx errors instead of server errors.

Order matters: the size is checked before anything is parsed, the nesting depth before ``json.loads`` (which
recurses, so a deep enough document raises RecursionError), and the message text is cleaned of what breaks
the NLU pipeline (lone surrogates, control characters) before it reaches the dialogue engine.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE_CHARS = 10_000
MAX_SENDER_CHARS = 128
MAX_METADATA_KEYS = 20
MAX_METADATA_BYTES = 16 * 1024
# The body is an object (1) holding metadata (2); nothing we read is deeper.
MAX_JSON_DEPTH = 5
# A 10,000-character message, JSON-escaped at worst (\uXXXX), plus the metadata, fits in these.
MAX_REST_BODY_BYTES = 96 * 1024
MAX_WIDGET_BODY_BYTES = 80 * 1024

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(rb"[\[\]{}]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Unicode "Cc" controls except tab and newline (carriage returns become newlines first).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ANY_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class Rejection:
    """Why a request is refused: an HTTP status (400, 413...) and a message for the client."""

    status: int
    error: str


def nesting_too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON document ``raw`` nests arrays/objects deeper than ``limit`` (no recursion)."""
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub(b'""', raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_json(raw: bytes | None, max_bytes: int) -> Any | Rejection:
    """The parsed body, or a :class:`Rejection` (413 too large, 400 too deep or not JSON). Never raises."""
    raw = raw or b""
    if len(raw) > max_bytes:
        return Rejection(413, f"the body is too large (at most {max_bytes // 1024} KB)")
    if nesting_too_deep(raw):
        return Rejection(400, f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Rejection(400, "the body is not valid JSON")


def clean_text(text: str) -> str:
    """``text`` without what breaks the NLU pipeline: lone surrogates become U+FFFD, controls a space.

    Cleaning rather than rejecting keeps a disclosure typed with a broken emoji: its words still count.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub(" ", _LONE_SURROGATE.sub("\ufffd", text))


def message_body_problem(body: Any) -> str | None:
    """Why ``body`` is not a valid ``{"sender", "message", "metadata"?}`` object, or None if it is."""
    if not isinstance(body, dict):
        return "the body must be a JSON object with 'sender' and 'message'"
    sender = body.get("sender")
    if sender is not None and (not isinstance(sender, str) or not 0 < len(sender) <= MAX_SENDER_CHARS):
        return f"'sender' must be a string of 1 to {MAX_SENDER_CHARS} characters"
    if sender is not None and _ANY_CONTROL.search(sender):
        return "'sender' must not contain control characters or broken unicode"
    message = body.get("message")
    if not isinstance(message, str):
        return "'message' must be a string"
    if len(message) > MAX_MESSAGE_CHARS:
        return f"'message' is too long (at most {MAX_MESSAGE_CHARS} characters)"
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS):
        return f"'metadata' must be a JSON object with at most {MAX_METADATA_KEYS} keys"
    return None


def read_message(raw: bytes | None, max_bytes: int) -> dict[str, Any] | Rejection:
    """The checked message body with its text cleaned, or why it is refused (400/413)."""
    body = parse_json(raw, max_bytes)
    if isinstance(body, Rejection):
        return body
    problem = message_body_problem(body)
    if problem:
        return Rejection(400, problem)
    metadata = body.get("metadata")
    if metadata is not None:
        size = len(json.dumps(metadata, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size > MAX_METADATA_BYTES:
            return Rejection(413, f"'metadata' is too large (at most {MAX_METADATA_BYTES // 1024} KB)")
    return body | {"message": clean_text(body["message"])}
