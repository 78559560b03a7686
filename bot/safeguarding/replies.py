"""The safe reply to a disclosure, per audience (texts and the rules they follow: ``replies.yml``).

``safe_reply(audience)`` returns the same static text the domain's ``utter_disclosure_safe`` response carries;
with ``school_facts`` (a school.yml mapping) the staff and parent texts also name the school's DSL. For
pupils, ``kind`` (``bot.safeguarding.categories.reply_kind``) picks the reply that fits what was said, as the
``disclosure_kind`` slot does in the domain; without it, or for adults, the audience's generic text.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bot.safeguarding.categories import GENERIC_KIND, REPLY_KINDS, STAFF_REPLY_KINDS
from bot.settings import AUDIENCES

REPLIES_PATH = Path(__file__).with_name("replies.yml")
DSL_PHRASE = "Designated Safeguarding Lead"
# When we do not know who is writing, answer as if it may be a child: that text is safe for anyone.
FALLBACK_AUDIENCE = "pupil"


@lru_cache(maxsize=4)
def load_replies(path: Path = REPLIES_PATH) -> dict[str, str]:
    """The reply text for every audience; raises ValueError when one is missing or empty."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    replies = data.get("replies") or {}
    missing = [audience for audience in AUDIENCES if not str(replies.get(audience) or "").strip()]
    if missing:
        raise ValueError(f"{path}: no safe reply for {', '.join(missing)}")
    return {audience: str(replies[audience]).strip() for audience in AUDIENCES}


@lru_cache(maxsize=4)
def load_pupil_replies(path: Path = REPLIES_PATH) -> dict[str, str]:
    """The pupil's reply for every kind ("generic" is ``replies.pupil``); ValueError when one is missing."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    kinds = dict(data.get("pupil_kinds") or {})
    kinds[GENERIC_KIND] = load_replies(path)["pupil"]
    missing = [kind for kind in REPLY_KINDS if not str(kinds.get(kind) or "").strip()]
    unknown = sorted(set(kinds) - set(REPLY_KINDS))
    if missing or unknown:
        raise ValueError(f"{path}: pupil_kinds missing {missing}, unknown {unknown}")
    return {kind: str(kinds[kind]).strip() for kind in REPLY_KINDS}


@lru_cache(maxsize=4)
def load_staff_replies(path: Path = REPLIES_PATH) -> dict[str, str]:
    """The staff reply for every kind besides generic (``staff_kinds``); ValueError when one is missing."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    kinds = dict(data.get("staff_kinds") or {})
    missing = [kind for kind in STAFF_REPLY_KINDS if not str(kinds.get(kind) or "").strip()]
    unknown = sorted(set(kinds) - set(STAFF_REPLY_KINDS))
    if missing or unknown:
        raise ValueError(f"{path}: staff_kinds missing {missing}, unknown {unknown}")
    return {kind: str(kinds[kind]).strip() for kind in STAFF_REPLY_KINDS}


def all_safe_replies() -> tuple[str, ...]:
    """Every text ``safe_reply`` can return (without a school's DSL names)."""
    return (*load_replies().values(), *load_pupil_replies().values(), *load_staff_replies().values())


def safe_reply(
    audience: str | None, school_facts: Mapping[str, Any] | None = None, kind: str | None = None
) -> str:
    """The reply for ``audience`` (unknown: the generic pupil text), naming the DSL for adults when known.

    ``kind`` applies to pupils (their kinds) and staff (``allegation``), as in the domain (an unknown audience
    gets the generic text there too).
    """
    replies = load_replies()
    if audience == "pupil" and kind in REPLY_KINDS:
        return load_pupil_replies()[kind]
    audience = audience if audience in replies else FALLBACK_AUDIENCE
    text = replies[audience]
    if audience == "staff" and kind in STAFF_REPLY_KINDS:
        text = load_staff_replies()[kind]
    return name_the_dsl(text, audience, school_facts)


def name_the_dsl(text: str, audience: str, school_facts: Mapping[str, Any] | None) -> str:
    """``text`` with the school's DSL named after the first "Designated Safeguarding Lead", for adults only:
    pupils keep the plain wording (reading age); adults benefit from knowing who will call."""
    names = dsl_names(school_facts)
    if names and audience != "pupil" and DSL_PHRASE in text:
        return text.replace(DSL_PHRASE, f"{DSL_PHRASE} ({names})", 1)
    return text


def dsl_names(school_facts: Mapping[str, Any] | None) -> str:
    if not isinstance(school_facts, Mapping):
        return ""
    people = school_facts.get("dsl") or []
    names = [str(p.get("name")).strip() for p in people if isinstance(p, Mapping) and p.get("name")]
    return " or ".join(names)
