"""Entity vocabulary from ``knowledge/entities.yml``: platforms, roles and audiences.

The entity ruler reports the text as typed ("snap"); answers and variants use the canonical key
("snapchat"), so :func:`canonical` maps one to the other.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from bot.settings import get_settings

ENTITY_LABELS = ("platform", "role", "audience")


class EntityVocabularyError(ValueError):
    """``entities.yml`` is malformed; the message names the file and the field."""


@lru_cache(maxsize=4)
def load_vocabulary(path: Path | None = None) -> dict[str, dict[str, tuple[str, ...]]]:
    """``{label: {canonical: (surface forms, ...)}}`` read and validated from entities.yml."""
    path = path or get_settings().knowledge_dir / "entities.yml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise EntityVocabularyError(f"{path}: expected a mapping of entity labels")
    vocabulary: dict[str, dict[str, tuple[str, ...]]] = {}
    for label, values in raw.items():
        if label not in ENTITY_LABELS:
            raise EntityVocabularyError(
                f"{path}: {label}: unknown entity label (expected one of {ENTITY_LABELS})"
            )
        if not isinstance(values, dict):
            raise EntityVocabularyError(
                f"{path}: {label}: expected a mapping of canonical value to spellings"
            )
        vocabulary[label] = {}
        for key, forms in values.items():
            if not isinstance(forms, list) or not all(isinstance(f, str) and f.strip() for f in forms):
                raise EntityVocabularyError(f"{path}: {label}.{key}: expected a list of non-empty strings")
            vocabulary[label][str(key)] = tuple(f.strip().lower() for f in forms)
    return vocabulary


def canonical(label: str, text: str | None, path: Path | None = None) -> str | None:
    """The canonical key for an entity as typed (``canonical("platform", "Snap") == "snapchat"``)."""
    if not text:
        return None
    folded = " ".join(str(text).lower().replace("-", " ").split())
    for key, forms in load_vocabulary(path).get(label, {}).items():
        if folded == key or folded in {" ".join(f.replace("-", " ").split()) for f in forms}:
            return key
    return None
