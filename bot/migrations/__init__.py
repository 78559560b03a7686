"""The database schema as Alembic migrations, run by ``store.init_db`` (no ``alembic.ini`` needed).

``0001`` is the schema of the first release exactly as it created it; later revisions change it. A database
made by that release (tables, no ``alembic_version``) is brought to the 0001 shape in place and stamped; see
``bot.safeguarding.store.init_db``. A new revision is a new file in ``versions/`` (next number,
``down_revision`` = the previous one); it never edits an older one. See docs/desk-operations.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MIGRATIONS_DIR = Path(__file__).resolve().parent
BASELINE = "0001"


def alembic_config(connection: Any = None) -> Any:
    """An Alembic ``Config`` for this package; ``connection`` (if given) is the one migrations run on."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision in ``versions/``."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
