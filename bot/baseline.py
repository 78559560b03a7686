"""The baseline the assistant must beat: plain BM25 keyword search over a school's policy sentences.

Given a question, BM25 returns the best-matching sentence of the school's policy.txt. It is judged as the
assistant is: right topic, and grounded (the sentence is part of a clause the correct answer cites). It can
never say "the policy does not cover this", which is exactly where it goes wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from rank_bm25 import BM25Okapi

from bot.knowledge.text import normalise

_TOKEN = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Function words carry no topic; without this list BM25 matches "the" and "to" as eagerly as "photos".
_STOP = frozenset(
    "a an and are as at be by can do does for from has have how i if in is it its me my of on or our should"
    " so that the their them they this to u was we what when where which who will with you your".split()
)


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def policy_sentences(policy_text: str) -> list[str]:
    """The policy split into sentences and bullet lines, normalised the way clause quotes are."""
    parts = (normalise(p).strip(" -*#") for p in _SENTENCE_END.split(policy_text))
    return [p for p in parts if len(tokens(p)) >= 3]


@dataclass
class PolicySearch:
    """BM25 over one school's policy sentences."""

    policy_text: str

    @cached_property
    def sentences(self) -> list[str]:
        return policy_sentences(self.policy_text)

    @cached_property
    def _index(self) -> BM25Okapi:
        return BM25Okapi([tokens(s) for s in self.sentences])

    def best(self, question: str) -> str | None:
        """The highest-scoring policy sentence, or None if no word of the question occurs in the policy."""
        query = tokens(question)
        if not query:
            return None
        scores = self._index.get_scores(query)
        best = max(range(len(scores)), key=scores.__getitem__)
        return self.sentences[best] if scores[best] > 0 else None
