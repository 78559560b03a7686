"""Who is asking and about which school: resolved from message metadata, slots and the settings.

Metadata comes from the client (the widget or a channel), so it is untrusted: anything that is not a known
school slug or audience falls back to the deployment's defaults rather than failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.settings import AUDIENCES, Settings


@dataclass(frozen=True)
class Context:
    school: str
    audience: str


def _clean(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 64:
        return value.strip().lower()
    return None


def resolve_context(
    settings: Settings,
    schools: Iterable[str],
    *sources: Mapping[str, Any] | None,
) -> Context:
    """The first valid school and audience found in ``sources`` (metadata, slots...), else the defaults."""
    known = set(schools)
    school = audience = None
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        if school is None and _clean(source.get("school")) in known:
            school = _clean(source.get("school"))
        if audience is None and _clean(source.get("audience")) in AUDIENCES:
            audience = _clean(source.get("audience"))
    default_school = settings.default_school if settings.default_school in known else sorted(known)[0]
    return Context(school=school or default_school, audience=audience or settings.default_audience)
