"""Owner-only file modes for the runtime folder: 0700 for it, 0600 for the databases, spool and secret files.

Another account on the server must not read a disclosure's metadata, a conversation in Rasa's tracker store,
a key or a secret. SQLite creates its ``-journal``/``-wal``/``-shm`` files with the mode of the database file,
so a database file created 0600 *before* SQLite opens it keeps its journals private too. The secret files
(:data:`SECRET_FILE_NAMES`) are created 0600 by their writers (:func:`write_private` for the generated
configuration). Files that already exist (from an older release, or copied in by hand) are narrowed by
:func:`secure_runtime_files`, which the worker runs on every pass.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.action_auth import SECRET_FILE_NAME as ACTION_SECRET_FILE_NAME
from bot.channels.identity import KEY_FILE_NAME as WIDGET_KEY_FILE_NAME
from bot.safeguarding.crypto import KEY_FILE_NAME as ENCRYPTION_KEY_FILE_NAME
from bot.settings import Settings

logger = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_COMPANIONS = ("-journal", "-wal", "-shm")

# Written by `schoolguide run` (bot/runner.py): the action server secret and any tracker database password,
# and the channel secrets and REST token.
ENDPOINTS_FILE_NAME = "endpoints.yml"
CREDENTIALS_FILE_NAME = "credentials.yml"
# Every secret file SchoolGuide writes into the runtime folder (databases and spool are handled apart).
# A new one goes here, so that the worker keeps it 0600.
SECRET_FILE_NAMES = (
    ENCRYPTION_KEY_FILE_NAME,  # secret.key (bot/safeguarding/crypto.py)
    WIDGET_KEY_FILE_NAME,  # widget.key (bot/channels/identity.py)
    ACTION_SECRET_FILE_NAME,  # action-server.secret (bot/action_auth.py)
    ENDPOINTS_FILE_NAME,
    CREDENTIALS_FILE_NAME,
)


def private_dir(path: Path | str) -> Path:
    """Create ``path`` (and missing parents) owner-only; an existing folder keeps its mode."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    return path


def private_file(path: Path | str) -> Path:
    """Create ``path`` empty and owner-only if it is missing; narrow it to 0600 if it exists."""
    path = Path(path)
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        _narrow(path, FILE_MODE)
    return path


def write_private(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path``, owner-only from its first byte, whatever the umask or an older file's mode.

    The text goes into a new file created 0600 (``O_EXCL``: never an existing file or a symlink) beside
    ``path``, which is then renamed over it: there is no moment when the secret sits in a wider file (no
    write-then-chmod window, no ``O_TRUNC`` of an older world-readable file), and a reader sees the old file
    or the new one, never half of one."""
    path = Path(path)
    private_dir(path.parent)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)  # exactly 0600 (a strict umask could leave it 0400)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path


def private_sqlite_database(database: Path | str) -> Path:
    """The SQLite file (an empty file is a valid database) and any journals it has, all 0600."""
    path = private_file(Path(database).expanduser())
    for suffix in SQLITE_COMPANIONS:
        _narrow(path.with_name(path.name + suffix), FILE_MODE)
    return path


def sqlite_path(url: str) -> Path | None:
    """The file behind an SQLite URL, None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database).expanduser()


def secure_runtime_files(settings: Settings) -> None:
    """Narrow the runtime folder, both SQLite databases, the spool and every secret file to owner-only."""
    if settings.var_dir.exists():
        _narrow(settings.var_dir, DIR_MODE)
    for url in (settings.database_url, settings.tracker_database_url):
        path = sqlite_path(url)
        if path is not None and path.exists():
            private_sqlite_database(path)
    if settings.spool_dir.exists():
        _narrow(settings.spool_dir, DIR_MODE)
        for child in settings.spool_dir.iterdir():
            if child.is_file():
                _narrow(child, FILE_MODE)
    for name in SECRET_FILE_NAMES:
        _narrow(settings.var_dir / name, FILE_MODE)  # a missing file is skipped


def _narrow(path: Path, mode: int) -> None:
    try:
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except FileNotFoundError:
        pass
    except OSError as exc:  # not ours to change (another owner): say so, never stop the caller
        logger.warning("could not make %s owner-only: %s", path, exc)
