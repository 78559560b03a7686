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
EVERYDAY_KEY = "everyday_words"  # forms that are also ordinary words, with the context that decides
EVERYDAY_RULE_KEYS = ("not_before", "not_after", "only_after")


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
        if label == EVERYDAY_KEY:
            continue
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


@lru_cache(maxsize=4)
def load_everyday_words(path: Path | None = None) -> dict[str, dict[str, dict[str, list[str]]]]:
    """``{label: {form: {"not_before"|"not_after"|"only_after": [words]}}}`` from ``everyday_words``.

    Every form must be one of the label's spellings, so a typo here cannot silently do nothing.
    """
    path = path or get_settings().knowledge_dir / "entities.yml"
    raw = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(EVERYDAY_KEY) or {}
    vocabulary = load_vocabulary(path)
    if not isinstance(raw, dict):
        raise EntityVocabularyError(f"{path}: {EVERYDAY_KEY}: expected a mapping of entity labels")
    rules: dict[str, dict[str, dict[str, list[str]]]] = {}
    for label, forms in raw.items():
        if label not in vocabulary or not isinstance(forms, dict):
            raise EntityVocabularyError(f"{path}: {EVERYDAY_KEY}.{label}: expected a known label with forms")
        spellings = {f for values in vocabulary[label].values() for f in values} | set(vocabulary[label])
        for form, rule in forms.items():
            where = f"{path}: {EVERYDAY_KEY}.{label}.{form}"
            if str(form).lower() not in spellings:
                raise EntityVocabularyError(f"{where}: not one of the {label} spellings")
            if not isinstance(rule, dict) or not rule or set(rule) - set(EVERYDAY_RULE_KEYS):
                raise EntityVocabularyError(f"{where}: expected some of {EVERYDAY_RULE_KEYS}")
            for key, words in rule.items():
                if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
                    raise EntityVocabularyError(
                        f"{where}.{key}: expected a list of words "
                        "(quote on, off, yes and no: YAML reads them as true/false)"
                    )
            rules.setdefault(label, {})[str(form).lower()] = {
                key: sorted(w.strip().lower() for w in words) for key, words in rule.items()
            }
    return rules


def canonical(label: str, text: str | None, path: Path | None = None) -> str | None:
    """The canonical key for an entity as typed (``canonical("platform", "Snap") == "snapchat"``)."""
    if not text:
        return None
    folded = " ".join(str(text).lower().replace("-", " ").split())
    for key, forms in load_vocabulary(path).get(label, {}).items():
        if folded == key or folded in {" ".join(f.replace("-", " ").split()) for f in forms}:
            return key
    return None
