"""Checks on what a client posts before Rasa sees it: clear 4xx errors instead of server errors."""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_CHARS = 10_000
MAX_SENDER_CHARS = 128
MAX_METADATA_KEYS = 20


def message_body_problem(body: Any) -> str | None:
    """Why ``body`` is not a valid ``{"sender", "message", "metadata"?}`` object, or None if it is."""
    if not isinstance(body, dict):
        return "the body must be a JSON object with 'sender' and 'message'"
    sender = body.get("sender")
    if sender is not None and (not isinstance(sender, str) or not 0 < len(sender) <= MAX_SENDER_CHARS):
        return f"'sender' must be a string of 1 to {MAX_SENDER_CHARS} characters"
    message = body.get("message")
    if not isinstance(message, str):
        return "'message' must be a string"
    if len(message) > MAX_MESSAGE_CHARS:
        return f"'message' is too long (at most {MAX_MESSAGE_CHARS} characters)"
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS):
        return f"'metadata' must be a JSON object with at most {MAX_METADATA_KEYS} keys"
    return None
