"""Widget conversation ids, issued and signed by the server: a page cannot pick another person's.

A widget asks ``POST /webhooks/<channel>/conversation`` for an id (``<32 hex>.<signature>``) and sends it as
``sender`` with each message. The signature is an HMAC-SHA256 over the channel name and the random part, so an
id is only good on the channel that issued it and cannot be made up or guessed. The conversation is stored as
``<channel>-<random part>``: the signature never reaches the tracker store or a disclosure record.

The key is ``SCHOOLGUIDE_WIDGET_SECRET``, or one generated once into ``var/widget.key`` (mode 0600). Changing
it starts every open widget on a new conversation (the widget asks for a new id and sends the message again).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from functools import lru_cache
from pathlib import Path

from bot.settings import Settings

KEY_FILE_NAME = "widget.key"
_RANDOM_PART = re.compile(r"[0-9a-f]{32}")
_SIGNATURE_CHARS = 32


class ConversationIds:
    """Issues and checks signed widget conversation ids."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the widget secret must be at least 16 bytes")
        self._key = key

    def _sign(self, channel: str, random_part: str) -> str:
        mac = hmac.new(self._key, f"{channel}:{random_part}".encode("ascii"), hashlib.sha256)
        return mac.hexdigest()[:_SIGNATURE_CHARS]

    def issue(self, channel: str) -> str:
        """A new id for ``channel``: what the widget sends as ``sender``."""
        random_part = secrets.token_hex(16)
        return f"{random_part}.{self._sign(channel, random_part)}"

    def verify(self, channel: str, token: object) -> str | None:
        """The random part of ``token`` if this server issued it for ``channel``, else None."""
        if not isinstance(token, str) or token.count(".") != 1:
            return None
        random_part, signature = token.split(".")
        if not _RANDOM_PART.fullmatch(random_part) or len(signature) != _SIGNATURE_CHARS:
            return None
        if not hmac.compare_digest(
            signature.encode("ascii", "replace"), self._sign(channel, random_part).encode()
        ):
            return None
        return random_part


def _generated_key(key_file: Path) -> bytes:
    """Read ``key_file``, creating it first if missing; link() publishes it whole, so two processes agree."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        staging = key_file.with_name(f".{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(staging, key_file)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            staging.unlink()
    return key_file.read_text(encoding="ascii").strip().encode("ascii")


@lru_cache(maxsize=4)
def _ids_for(secret: str | None, var_dir: Path) -> ConversationIds:
    key = secret.encode("utf-8") if secret else _generated_key(var_dir / KEY_FILE_NAME)
    return ConversationIds(key)


def conversation_ids(settings: Settings) -> ConversationIds:
    """The deployment's signer: ``SCHOOLGUIDE_WIDGET_SECRET``, else the generated ``var/widget.key``."""
    return _ids_for(settings.widget_secret, settings.var_dir)
