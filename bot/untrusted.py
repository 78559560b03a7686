"""Untrusted input made safe for the NLU pipeline: text spaCy can encode, metadata no copy can overflow on.

A lone surrogate (half of a broken emoji, valid in JSON) makes spaCy's tokenizer raise, and so do Fernet and
PostgreSQL; metadata nested a few hundred deep overflows the stack in Rasa's recursive copies. Both used to
end a message in silence. ``bot.rasa_server`` applies these to every message before NLU; the NLU components
apply ``clean_text`` again so they are safe wherever they run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# Deeper than any channel's own metadata (Slack's and Teams' are two or three levels): anything below this is
# client noise.
MAX_METADATA_DEPTH = 16
# C0/C1 controls and DEL; tab, newline and carriage return are kept because people type them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_text(text: Any) -> Any:
    """``text`` with lone surrogates replaced by U+FFFD and control characters by spaces; non-str unchanged.

    A surrogate pair split into two code points is joined back into its character (an emoji stays an emoji).
    """
    if not isinstance(text, str):
        return text
    if any("\ud800" <= char <= "\udfff" for char in text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return _CONTROL.sub(" ", text)


def bounded_metadata(metadata: Any, max_depth: int = MAX_METADATA_DEPTH) -> dict[str, Any] | None:
    """A copy of ``metadata`` (None unless a mapping) with every container deeper than ``max_depth``
    replaced by None and every string cleaned. Walks with an explicit stack: no nesting can raise
    RecursionError here."""
    if not isinstance(metadata, Mapping):
        return None
    root: dict[str, Any] = {}
    stack: list[tuple[Any, Any, int]] = [(metadata, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        items: Iterable[tuple[Any, Any]] = (
            source.items() if isinstance(source, Mapping) else enumerate(source)
        )
        for key, value in items:
            if isinstance(value, (Mapping, list, tuple)):
                if depth >= max_depth:
                    copied: Any = None
                else:
                    copied = {} if isinstance(value, Mapping) else []
                    stack.append((value, copied, depth + 1))
            else:
                copied = clean_text(value)
            if isinstance(target, dict):
                target[clean_text(key)] = copied
            else:
                target.append(copied)
    return root
