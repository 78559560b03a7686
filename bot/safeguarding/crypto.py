"""Encryption at rest for the child's words (Fernet: AES-128-CBC with HMAC-SHA256).

``SCHOOLGUIDE_ENCRYPTION_KEY`` holds one Fernet key, or several separated by commas to rotate keys: the first
encrypts, all of them decrypt. With no key configured a key is generated once and kept in ``var/secret.key``
(mode 0600, in a 0700 folder) so a fresh clone works. Its production home is the environment or a secret store
(systemd credentials, Vault, the platform's secret manager), never a file beside the databases it protects: a
copy of ``var/`` would otherwise carry both the ciphertext and its key. Losing the key makes every stored
disclosure unreadable.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.settings import Settings

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"
_warned_key_files: set[Path] = set()


class EncryptionKeyError(RuntimeError):
    """The configured key is malformed, or the generated key file cannot be read or written."""


class DecryptionError(RuntimeError):
    """Stored text could not be decrypted: almost always a different key from the one it was stored with."""


@dataclass(frozen=True)
class DisclosureCipher:
    """Encrypts and decrypts disclosure text with the school's key(s)."""

    fernet: MultiFernet

    def encrypt(self, plaintext: str) -> str:
        # surrogatepass keeps even malformed unicode from a client verbatim instead of failing.
        token = self.fernet.encrypt(plaintext.encode("utf-8", "surrogatepass"))
        return token.decode("ascii")

    def decrypt(self, token: str, *, what: str = "stored text") -> str:
        try:
            return self.fernet.decrypt(token.encode("ascii")).decode("utf-8", "surrogatepass")
        except (InvalidToken, UnicodeEncodeError, ValueError, AttributeError) as exc:
            raise DecryptionError(
                f"cannot decrypt {what}: it was encrypted with a different key. Check that "
                "SCHOOLGUIDE_ENCRYPTION_KEY (or var/secret.key) is the key in use when it was stored."
            ) from exc


def _fernets_from(raw: str, origin: str) -> MultiFernet:
    keys = [part.strip() for part in raw.split(",") if part.strip()]
    if not keys:
        raise EncryptionKeyError(f"{origin} holds no key")
    try:
        return MultiFernet([Fernet(key.encode("ascii")) for key in keys])
    except (ValueError, UnicodeEncodeError) as exc:
        raise EncryptionKeyError(
            f"{origin} is not a valid Fernet key (32 url-safe base64 bytes); generate one with "
            '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`'
        ) from exc


def _generated_key(key_file: Path) -> str:
    """Read var/secret.key, creating it (0600, exclusively, so two processes agree) if it is missing."""
    try:
        # Owner-only: the runtime folder holds the key, the databases and the spool.
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(Fernet.generate_key().decode("ascii"))
                handle.flush()
                os.fsync(handle.fileno())
        raw = key_file.read_text(encoding="ascii").strip()
        if key_file.stat().st_mode & 0o077:  # made by an older release, or copied in by hand
            key_file.chmod(0o600)
    except OSError as exc:
        raise EncryptionKeyError(f"cannot read or create the encryption key file {key_file}: {exc}") from exc
    if not raw:
        # Another process created the file and has not written the key yet.
        raise EncryptionKeyError(f"the encryption key file {key_file} is empty")
    if key_file not in _warned_key_files:
        _warned_key_files.add(key_file)
        logger.warning(
            "SCHOOLGUIDE_ENCRYPTION_KEY is not set: disclosures are encrypted with the generated key in %s. "
            "Production must set SCHOOLGUIDE_ENCRYPTION_KEY (and keep it safe) instead.",
            key_file,
        )
    return raw


def load_cipher(settings: Settings) -> DisclosureCipher:
    """The cipher for ``settings``: the configured key, or the generated one under ``var_dir``."""
    if settings.encryption_key:
        return DisclosureCipher(_fernets_from(settings.encryption_key, "SCHOOLGUIDE_ENCRYPTION_KEY"))
    key_file = settings.var_dir / KEY_FILE_NAME
    return DisclosureCipher(_fernets_from(_generated_key(key_file), str(key_file)))
