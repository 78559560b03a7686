"""The turns straight after a disclosure: "ok", "what happens now?", "will I get in trouble?".

Right after someone has told the assistant something worrying, the next few messages are usually about that:
what happens now, who will be told, whether they are in trouble, whether their family will find out, whether
it can be taken back. They get replies written for this moment, per audience (``replies.yml``,
``after_disclosure``), never a policy clause, a "you're welcome" or topic buttons.

What a follow-up is about is read from its words (``aftercare.yml``), whatever the classifier made of
it: "will I get in trouble?" reads like a question about the consequences of breaking the policy, and "what
happens now?" like a goodbye. Only within :data:`WINDOW_MESSAGES` messages of the latest disclosure, so the
same words later in a conversation are ordinary questions again. A new policy question in the window matches
none of the patterns and is answered as usual; a new disclosure is always handled as a disclosure first.

No Rasa imports: the actions pass the tracker's event dicts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bot.safeguarding.replies import REPLIES_PATH, name_the_dsl
from bot.settings import AUDIENCES

PATTERNS_PATH = Path(__file__).with_name("aftercare.yml")
LOG_ACTION = "action_log_disclosure"
# The disclosure's own message is not counted: the next three messages are "straight after".
WINDOW_MESSAGES = 3
KINDS = ("acknowledge", "what_happens_next", "who_will_know", "in_trouble", "family_told", "delete")
UNCLEAR = "unclear"
# Intents that are an acknowledgement unless the words say more ("thanks, what now?").
ACKNOWLEDGING_INTENTS = frozenset({"thank", "affirm", "deny", "goodbye"})


@lru_cache(maxsize=2)
def load_patterns(path: Path = PATTERNS_PATH) -> tuple[tuple[str, tuple[re.Pattern[str], ...]], ...]:
    """Each kind with its compiled patterns, in the order they are tried; ValueError names a bad entry."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    kinds = data.get("kinds") or {}
    unknown = sorted(set(kinds) - set(KINDS))
    missing = [kind for kind in KINDS if not kinds.get(kind)]
    if unknown or missing:
        raise ValueError(f"{path}: kinds missing {missing}, unknown {unknown}")
    compiled = []
    for kind in data.get("order") or KINDS:
        try:
            compiled.append((kind, tuple(re.compile(p, re.IGNORECASE) for p in kinds[kind])))
        except (re.error, KeyError, TypeError) as error:
            raise ValueError(f"{path}: kinds.{kind}: {error}") from error
    return tuple(compiled)


@lru_cache(maxsize=2)
def load_texts(path: Path = REPLIES_PATH) -> dict[str, dict[str, str]]:
    """``after_disclosure`` from replies.yml: every kind (and ``unclear``) for every audience."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    texts = data.get("after_disclosure") or {}
    problems = [
        f"{kind}.{audience}"
        for kind in (*KINDS, UNCLEAR)
        for audience in AUDIENCES
        if not str((texts.get(kind) or {}).get(audience) or "").strip()
    ]
    if problems:
        raise ValueError(f"{path}: after_disclosure needs texts for {', '.join(problems)}")
    return {
        kind: {audience: str(texts[kind][audience]).strip() for audience in AUDIENCES}
        for kind in (*KINDS, UNCLEAR)
    }


def _normalise(text: str) -> str:
    text = re.sub(r"[\u2018\u2019`]", "'", text or "")
    return re.sub(r"\s+", " ", text).strip().lower()


def follow_up_kind(text: str, intent: str | None = None) -> str | None:
    """What a message straight after a disclosure is about (one of :data:`KINDS`), or None for anything
    else (a new question, more about what happened)."""
    words = _normalise(text)
    if not words:
        return None
    for kind, patterns in load_patterns():
        if any(p.search(words) for p in patterns):
            return kind
    if intent in ACKNOWLEDGING_INTENTS:
        return "acknowledge"
    return None


def messages_since_disclosure(events: Iterable[Mapping[str, Any]]) -> int | None:
    """User messages after the latest recorded disclosure (this one included); None if there was none in
    this session."""
    count: int | None = None
    for event in events:
        kind = event.get("event")
        if kind == "action" and event.get("name") == LOG_ACTION:
            count = 0
        elif kind == "action" and event.get("name") == "action_session_start":
            count = None
        elif kind == "user" and count is not None:
            count += 1
    return count


def just_after_a_disclosure(events: Iterable[Mapping[str, Any]]) -> bool:
    """The latest message is one of the few straight after a disclosure."""
    count = messages_since_disclosure(events)
    return count is not None and 1 <= count <= WINDOW_MESSAGES


def reply_text(kind: str, audience: str | None, school_facts: Mapping[str, Any] | None = None) -> str:
    """The text for ``kind`` (or ``unclear``) and ``audience`` (unknown: the pupil's, safe for anyone);
    adults' texts name the school's DSL when known."""
    texts = load_texts()
    kind = kind if kind in texts else UNCLEAR
    audience = audience if audience in AUDIENCES else "pupil"
    return name_the_dsl(texts[kind][audience], audience, school_facts)


@lru_cache(maxsize=2)
def load_telling(path: Path = REPLIES_PATH) -> dict[str, str]:
    """``telling`` from replies.yml: what happens if you tell, per audience."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    texts = data.get("telling") or {}
    missing = [audience for audience in AUDIENCES if not str(texts.get(audience) or "").strip()]
    if missing:
        raise ValueError(f"{path}: telling needs texts for {', '.join(missing)}")
    return {audience: str(texts[audience]).strip() for audience in AUDIENCES}


def telling_text(audience: str | None, school_facts: Mapping[str, Any] | None = None) -> str:
    """What happens if you tell (asked when nothing was disclosed); adults' text names the DSL when known."""
    audience = audience if audience in AUDIENCES else "pupil"
    return name_the_dsl(load_telling()[audience], audience, school_facts)


def all_texts() -> tuple[str, ...]:
    """Every text this module can return (without DSL names), for the checks on wording."""
    after = tuple(text for by_audience in load_texts().values() for text in by_audience.values())
    return after + tuple(load_telling().values())
