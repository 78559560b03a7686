"""The loaded clause base and the small API the Rasa actions use: ``answer`` and ``citation_text``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from bot.knowledge import answering, checks
from bot.knowledge.models import Answer, Clause, Helpline, School, Topic, TopicAnswer
from bot.knowledge.problems import Problem
from bot.settings import AUDIENCES


class KnowledgeBase:
    """Topics, schools, clauses and answers, as loaded by :func:`bot.knowledge.load_knowledge`.

    ``slugs`` lists every school folder, including any whose school.yml failed to load (so that
    ``check()`` can still report on it); ``schools`` holds the ones that loaded.
    """

    def __init__(
        self,
        root: Path,
        topics: Iterable[Topic] = (),
        slugs: Iterable[str] = (),
        schools: Mapping[str, School] | None = None,
        policy_texts: Mapping[str, str] | None = None,
        clauses: Mapping[str, tuple[Clause, ...]] | None = None,
        answers: Mapping[str, Mapping[str, TopicAnswer]] | None = None,
        helplines: Iterable[Helpline] = (),
        entities: Mapping[str, frozenset[str]] | None = None,
    ):
        self.root = root
        self.topic_list: tuple[Topic, ...] = tuple(topics)
        topic_map: dict[str, Topic] = {}
        for topic in self.topic_list:
            topic_map.setdefault(topic.id, topic)  # duplicates are reported by check()
        self.topics: Mapping[str, Topic] = MappingProxyType(topic_map)
        self.slugs: tuple[str, ...] = tuple(slugs)
        self.schools: Mapping[str, School] = MappingProxyType(dict(schools or {}))
        self.policy_texts: Mapping[str, str] = MappingProxyType(dict(policy_texts or {}))
        self.clauses: Mapping[str, tuple[Clause, ...]] = MappingProxyType(dict(clauses or {}))
        self.answers: Mapping[str, Mapping[str, TopicAnswer]] = MappingProxyType(
            {slug: MappingProxyType(dict(entries)) for slug, entries in (answers or {}).items()}
        )
        self.helplines: tuple[Helpline, ...] = tuple(helplines)
        self.entities: Mapping[str, frozenset[str]] = MappingProxyType(dict(entities or {}))
        self._clause_index = {
            (slug, clause.id): clause for slug, items in self.clauses.items() for clause in items
        }

    def __repr__(self) -> str:
        return f"KnowledgeBase({self.root}, {len(self.schools)} schools, {len(self.topics)} topics)"

    def clause(self, school: str, clause_id: str) -> Clause | None:
        """``school``'s clause with this id; None if that school has no such clause (even if another does)."""
        return self._clause_index.get((school, clause_id))

    def answer(self, school: str, topic: str, audience: str, variant: str | None = None) -> Answer:
        """The answer for one school, topic and audience.

        ``variant`` (an entity value such as ``"whatsapp"``) picks a more specific answer when the topic
        has one; otherwise the general answer is given. Raises ValueError for an unknown school, topic or
        audience, or when the school has no answer for the topic yet.
        """
        slug = _known(school, self.schools, "school")
        topic_id = _known(topic, self.topics, "topic")
        audience = _known(audience, AUDIENCES, "audience")
        if variant is not None and not isinstance(variant, str):
            raise ValueError(f"variant must be text or None, got {type(variant).__name__}")
        facts = self.schools[slug]
        entry = self.answers.get(slug, {}).get(topic_id)
        if entry is None:
            raise ValueError(f"{facts.name} has no answer for topic {topic_id!r} yet")
        contact = answering.contact_for(facts, entry.ask)
        if not entry.covered:
            text = answering.not_covered_text(facts, contact, audience)
            return Answer(
                school=slug,
                topic=topic_id,
                audience=audience,
                covered=False,
                text=text,
                clauses=(),
                contact=contact,
            )
        chosen = entry.variants.get(variant.strip().lower()) if variant else None
        source = chosen or entry
        return Answer(
            school=slug,
            topic=topic_id,
            audience=audience,
            covered=True,
            text=source.texts[audience],
            clauses=tuple(self._cited(slug, source.clauses)),
            contact=contact,
            variant=chosen.key if chosen else None,
        )

    def _cited(self, slug: str, clause_ids: Iterable[str]) -> Iterable[Clause]:
        for clause_id in clause_ids:
            clause = self.clause(slug, clause_id)
            if clause is None:
                # Never answer without the citation (and never borrow another school's clause).
                raise ValueError(f"{slug} answer cites {clause_id!r}, which is not one of {slug}'s clauses")
            yield clause

    def citation_text(self, answer: Answer, max_quote_chars: int = 100, max_clauses: int = 3) -> str:
        """One line such as ``Source: <policy>, 4.2 <heading> — "<quote>"``; "" when nothing is cited."""
        return answering.citation_text(self.schools[answer.school], answer, max_quote_chars, max_clauses)

    def check(self) -> list[Problem]:
        """Content problems: quotes, citations, coverage of every topic, readability (see ``checks``)."""
        return checks.check(self)


def _known(value: object, known: Iterable[str], what: str) -> str:
    key = value.strip().lower() if isinstance(value, str) else None
    known = tuple(known)
    if key not in known:
        hint = f" (known: {', '.join(known)})" if len(known) <= 10 else ""
        raise ValueError(f"unknown {what} {value!r}{hint}")
    return key
