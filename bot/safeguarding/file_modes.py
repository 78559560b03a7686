"""Owner-only file modes for the runtime folder: 0700 for it, 0600 for the databases, spool and key.

Another account on the server must not read a disclosure's metadata, a conversation in Rasa's tracker store
or the key. SQLite creates its ``-journal``/``-wal``/``-shm`` files with the mode of the database file, so a
database file created 0600 *before* SQLite opens it keeps its journals private too; files that already exist
(from an older release) are narrowed by :func:`secure_runtime_files`, which the worker runs on every pass.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.safeguarding.crypto import KEY_FILE_NAME
from bot.settings import Settings

logger = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_COMPANIONS = ("-journal", "-wal", "-shm")


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
    """Narrow the runtime folder, both SQLite databases, the spool and the key file to owner-only."""
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
    key_file = settings.var_dir / KEY_FILE_NAME
    if key_file.exists():
        _narrow(key_file, FILE_MODE)


def _narrow(path: Path, mode: int) -> None:
    try:
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except FileNotFoundError:
        pass
    except OSError as exc:  # not ours to change (another owner): say so, never stop the caller
        logger.warning("could not make %s owner-only: %s", path, exc)
