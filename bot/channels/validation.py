"""Checks on what a client posts before Rasa sees it: clear 4xx errors instead of server errors.

Order matters: the size is checked before anything is parsed, the nesting depth before ``json.loads`` (which
recurses, so a deep enough document raises RecursionError), and the message text is cleaned of what breaks
the NLU pipeline (lone surrogates, control characters) before it reaches the dialogue engine.

A refusal caused only by the metadata or the nesting (not by the body's size, the message or the sender) is
marked ``salvageable``: the channel may still read the top-level ``message`` and ``sender`` with
:func:`scan_top_level`, which never recurses and never calls ``json.loads`` on the whole document, so a
disclosure sent with broken metadata is not lost (see :func:`bot.channels.web.refuse_or_salvage`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

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
    # Refused only because of the metadata or the nesting: the top-level message may still be read.
    salvageable: bool = field(default=False, compare=False)


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


# --- Reading the top-level fields of a body too deep to parse -----------------------------------------------

# One JSON token after optional whitespace: a string (checked as JSON checks it), a bracket or punctuation, or
# a scalar (a number, true/false/null, and NaN/Infinity which Python's json accepts too).
_TOKEN = re.compile(
    r"""[ \t\n\r]*(?:
        (?P<string>"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*")
      | (?P<punct>[{}\[\]:,])
      | (?P<scalar>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null|NaN|-?Infinity)
    )""",
    re.X,
)
_TRAILING_SPACE = re.compile(r"[ \t\n\r]*\Z")


class _NotAString:
    """A field whose value is a number, boolean, array or object."""

    def __repr__(self) -> str:
        return "NOT_A_STRING"


NOT_A_STRING: Any = _NotAString()

# What the parser expects next.
_VALUE, _VALUE_OR_END, _KEY, _KEY_OR_END, _COLON, _COMMA_OR_END, _DONE = range(7)


@dataclass(frozen=True)
class TopLevel:
    """What :func:`scan_top_level` read: each wanted field as a str, None (JSON null) or ``NOT_A_STRING``;
    absent fields are missing. ``metadata`` holds the wanted string members of a top-level ``metadata``
    object (empty when it is absent or not an object)."""

    fields: dict[str, Any]
    metadata: dict[str, Any]


def scan_top_level(
    raw: bytes | str,
    fields: tuple[str, ...] = ("message", "sender"),
    metadata_fields: tuple[str, ...] = ("school", "audience"),
) -> TopLevel | None:
    """The top-level ``fields`` of the JSON object ``raw`` (and ``metadata_fields`` of its ``metadata``
    object), or None unless ``raw`` is a well-formed JSON object.

    Never recurses, whatever the nesting: one pass over the tokens (as :func:`nesting_too_deep`, strings
    first, then brackets) with a stack of open brackets; only the wanted strings are decoded, each on its own
    with ``json.loads``. A duplicated key counts with its last value, as with ``json.loads``. Values are not
    cleaned (see :func:`clean_text`).
    """
    try:
        text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        return None
    found: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    stack: list[str] = []  # the open brackets, "{" or "["
    expect = _VALUE
    key: str | None = None  # the key whose value comes next, at the levels read (1, and metadata at 2)
    in_metadata = False  # the open object at level 2 is the top-level "metadata"
    position = 0
    while True:
        if _TRAILING_SPACE.match(text, position):
            return TopLevel(found, metadata) if expect == _DONE else None
        token = _TOKEN.match(text, position)
        if token is None:
            return None
        position = token.end()
        kind, value = token.lastgroup, token.group(token.lastgroup)
        depth = len(stack)
        read_here = depth == 1 or (depth == 2 and in_metadata)
        if expect in (_KEY, _KEY_OR_END) and kind == "string":
            key = json.loads(value) if read_here else None
            expect = _COLON
            continue
        if expect == _COLON and value == ":":
            expect = _VALUE
            continue
        closing = value in ("}", "]") and depth > 0 and stack[-1] == ("{" if value == "}" else "[")
        if expect == _COMMA_OR_END and value == ",":
            expect = _KEY if stack[-1] == "{" else _VALUE
            continue
        if closing and expect in (_COMMA_OR_END, _KEY_OR_END if value == "}" else _VALUE_OR_END):
            stack.pop()
            if depth == 2:
                in_metadata = False
            expect = _COMMA_OR_END if stack else _DONE
            continue
        if expect not in (_VALUE, _VALUE_OR_END) or kind == "punct" and value not in ("{", "["):
            return None
        # A value: a string or scalar ends it here; a bracket opens a level.
        if depth == 0 and value != "{":
            return None  # the body must be an object
        if read_here and key is not None:
            target = found if depth == 1 else metadata
            wanted = fields if depth == 1 else metadata_fields
            if key in wanted:
                if kind == "string":
                    target[key] = json.loads(value)
                else:
                    target[key] = None if value == "null" else NOT_A_STRING
            if depth == 1 and key == "metadata":
                metadata = {}  # a repeated "metadata" replaces the earlier one
        if kind == "punct":
            if depth == 1:
                in_metadata = key == "metadata" and value == "{"
            stack.append(value)
            expect = _KEY_OR_END if value == "{" else _VALUE_OR_END
        else:
            expect = _COMMA_OR_END if stack else _DONE


def parse_json(raw: bytes | None, max_bytes: int) -> Any | Rejection:
    """The parsed body, or a :class:`Rejection` (413 too large, 400 too deep or not JSON). Never raises."""
    raw = raw or b""
    if len(raw) > max_bytes:
        return Rejection(413, f"the body is too large (at most {max_bytes // 1024} KB)")
    if nesting_too_deep(raw):
        return Rejection(400, f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)", True)
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


def sender_problem(sender: Any) -> str | None:
    """Why ``sender`` (None: absent) is not acceptable, or None if it is."""
    if sender is not None and (not isinstance(sender, str) or not 0 < len(sender) <= MAX_SENDER_CHARS):
        return f"'sender' must be a string of 1 to {MAX_SENDER_CHARS} characters"
    if sender is not None and _ANY_CONTROL.search(sender):
        return "'sender' must not contain control characters or broken unicode"
    return None


def message_problem(message: Any) -> str | None:
    """Why ``message`` is not acceptable, or None if it is."""
    if not isinstance(message, str):
        return "'message' must be a string"
    if len(message) > MAX_MESSAGE_CHARS:
        return f"'message' is too long (at most {MAX_MESSAGE_CHARS} characters)"
    return None


def message_body_problem(body: Any) -> str | None:
    """Why ``body`` is not a valid ``{"sender", "message", "metadata"?}`` object, or None if it is."""
    if not isinstance(body, dict):
        return "the body must be a JSON object with 'sender' and 'message'"
    problem = sender_problem(body.get("sender")) or message_problem(body.get("message"))
    if problem:
        return problem
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
        # Only the metadata is wrong when the same body without it would pass.
        only_metadata = isinstance(body, dict) and not message_body_problem(
            {key: value for key, value in body.items() if key != "metadata"}
        )
        return Rejection(400, problem, only_metadata)
    metadata = body.get("metadata")
    if metadata is not None:
        size = len(json.dumps(metadata, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size > MAX_METADATA_BYTES:
            error = f"'metadata' is too large (at most {MAX_METADATA_BYTES // 1024} KB)"
            return Rejection(413, error, True)
    return body | {"message": clean_text(body["message"])}


def cut_message(text: str, channel: str) -> str:
    """A platform message (Slack, Teams) for the dialogue engine: cleaned like the web channels' text and
    cut to their MAX_MESSAGE_CHARS. Cut rather than refused, so that a long message that is a disclosure
    still reaches the detector (its first MAX_MESSAGE_CHARS characters)."""
    cleaned = clean_text(text).strip()
    if len(cleaned) > MAX_MESSAGE_CHARS:
        logger.info("%s: a message of %d characters cut to %d", channel, len(cleaned), MAX_MESSAGE_CHARS)
    return cleaned[:MAX_MESSAGE_CHARS]
