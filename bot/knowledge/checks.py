"""Content rules for the clause base, run by ``schoolguide knowledge check`` (structure is the loader's job).

The rules protect three promises: every answer is backed by a verbatim quote from *this* school's policy,
every topic has an answer (or an honest "not covered") for every school, and pupils get short, plain, kind
text with no contacts other than the approved helplines.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from bot.knowledge.models import APPLIES_TO, CLAUSE_KINDS, CONTACT_KEYS
from bot.knowledge.problems import Problem
from bot.knowledge.text import (
    canonical_url,
    emails,
    html_fragments,
    matching_prefix,
    normalise,
    only_digits,
    phone_numbers,
    reading_grade,
    sentences,
    urls,
    words,
)
from bot.settings import AUDIENCES

if TYPE_CHECKING:
    from bot.knowledge.base import KnowledgeBase

PUPIL_MAX_SENTENCE_WORDS = 15
PUPIL_MAX_WORDS = 60
PUPIL_MAX_GRADE = 5.0  # Flesch-Kincaid, textstat 0.7.3: a reading age of about 9
ADULT_MAX_SENTENCES = 4
ADULT_MAX_WORDS = 80

_TOPIC_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def check(kb: KnowledgeBase, unreadable: Collection[str] = ()) -> list[Problem]:
    """Every content problem in ``kb``, file by file.

    ``unreadable`` names files (as problems name them) that failed to load: rules that compare against them
    are skipped, since every answer would otherwise be reported for the one broken file.
    """
    problems = list(_check_topics(kb))
    for slug in kb.slugs:
        problems.extend(_check_clauses(kb, slug))
        problems.extend(_check_answers(kb, slug, unreadable))
    return problems


def _check_topics(kb: KnowledgeBase) -> Iterator[Problem]:
    label = f"{kb.root.name}/topics.yml"
    counts = Counter(topic.id for topic in kb.topic_list)
    for topic in kb.topic_list:
        field = f"topics[{topic.id}]"
        if counts[topic.id] > 1:
            yield Problem(label, f"{field}.id", f"duplicate id ({counts[topic.id]} topics use it)")
        if not _TOPIC_ID.match(topic.id):
            yield Problem(label, f"{field}.id", "must be kebab-case (lower-case words joined by '-')")
        for audience in topic.asked_by:
            if audience not in AUDIENCES:
                message = f"{audience!r} is not one of {', '.join(AUDIENCES)}"
                yield Problem(label, f"{field}.asked_by", message)
        for related in topic.related:
            if related == topic.id:
                yield Problem(label, f"{field}.related", "a topic cannot be related to itself")
            elif related not in kb.topics:
                yield Problem(label, f"{field}.related", f"{related!r} is not a topic id")
        for key in ("title", "question"):
            yield from _no_html(label, f"{field}.{key}", getattr(topic, key))


def _check_clauses(kb: KnowledgeBase, slug: str) -> Iterator[Problem]:
    label = f"{kb.root.name}/{slug}/clauses.yml"
    clauses = kb.clauses.get(slug, ())
    counts = Counter(clause.id for clause in clauses)
    policy = kb.policy_texts.get(slug)
    folded_policy = normalise(policy) if policy is not None else None
    for clause in clauses:
        field = f"clauses[{clause.id}]"
        if counts[clause.id] > 1:
            yield Problem(label, f"{field}.id", f"duplicate id ({counts[clause.id]} clauses use it)")
        if not clause.id.startswith(f"{slug}."):
            yield Problem(label, f"{field}.id", f"must start with the school slug: '{slug}.'")
        if clause.kind not in CLAUSE_KINDS:
            yield Problem(label, f"{field}.kind", f"{clause.kind!r} is not one of {', '.join(CLAUSE_KINDS)}")
        for who in clause.applies_to:
            if who not in APPLIES_TO:
                yield Problem(label, f"{field}.applies_to", f"{who!r} is not one of {', '.join(APPLIES_TO)}")
        if folded_policy is not None:
            problem = _quote_problem(normalise(clause.quote), folded_policy)
            if problem:
                yield Problem(label, f"{field}.quote", problem)


def _quote_problem(quote: str, policy: str) -> str | None:
    if quote in policy:
        return None
    found = matching_prefix(quote, policy)
    if len(found) < 12:
        return "not found in policy.txt (quotes must be copied verbatim)"
    return (
        f'not found verbatim in policy.txt: matches up to "...{found[-40:]}" '
        f'then differs at "{quote[len(found) :][:40]}..."'
    )


def _check_answers(kb: KnowledgeBase, slug: str, unreadable: Collection[str]) -> Iterator[Problem]:
    label = f"{kb.root.name}/{slug}/answers.yml"
    entries = kb.answers.get(slug, {})
    for topic_id in dict.fromkeys(topic.id for topic in kb.topic_list):
        if topic_id not in entries:
            message = "missing: every topic needs clauses and texts, or covered: false"
            yield Problem(label, f"answers.{topic_id}", message)
    topics_known = f"{kb.root.name}/topics.yml" not in unreadable
    clauses_known = f"{kb.root.name}/{slug}/clauses.yml" not in unreadable
    allowed = _pupil_contacts(kb)
    entity_values = frozenset().union(*kb.entities.values())
    for topic_id, entry in entries.items():
        field = f"answers.{topic_id}"
        if topics_known and topic_id not in kb.topics:
            yield Problem(label, field, "not a topic in topics.yml")
        if entry.ask is not None and entry.ask not in CONTACT_KEYS:
            yield Problem(label, f"{field}.ask", f"{entry.ask!r} is not one of {', '.join(CONTACT_KEYS)}")
        if not entry.covered:
            continue
        cited: list[tuple[str, tuple[str, ...], Mapping[str, str]]] = [(field, entry.clauses, entry.texts)]
        for key, variant in entry.variants.items():
            where = f"{field}.variants.{key}"
            if key not in entity_values:
                yield Problem(label, where, f"{key!r} is not an entity value in entities.yml (e.g. whatsapp)")
            cited.append((where, variant.clauses, variant.texts))
        for where, clause_ids, texts in cited:
            if clauses_known:
                yield from _citation_problems(kb, slug, label, where, clause_ids)
            yield from _text_problems(label, where, texts, allowed)


def _citation_problems(
    kb: KnowledgeBase, slug: str, label: str, field: str, clause_ids: tuple[str, ...]
) -> Iterator[Problem]:
    for clause_id, count in Counter(clause_ids).items():
        if count > 1:
            yield Problem(label, f"{field}.clauses", f"{clause_id!r} is cited {count} times")
    for clause_id in dict.fromkeys(clause_ids):
        if kb.clause(slug, clause_id) is not None:
            continue
        owners = [other for other in kb.slugs if other != slug and kb.clause(other, clause_id)]
        if owners:
            message = f"{clause_id!r} is {owners[0]}'s clause: never borrow another school's rule"
        else:
            message = f"{clause_id!r} is not a clause id in {slug}/clauses.yml"
        yield Problem(label, f"{field}.clauses", message)


def _text_problems(label: str, field: str, texts: Mapping[str, str], allowed: _Allowed) -> Iterator[Problem]:
    for audience in AUDIENCES:
        text = texts.get(audience, "")
        where = f"{field}.{audience}"
        yield from _no_html(label, where, text)
        if audience == "pupil":
            yield from _pupil_text_problems(label, where, text, allowed)
        else:
            yield from _adult_text_problems(label, where, text)


def _no_html(label: str, field: str, text: str) -> Iterator[Problem]:
    for fragment in html_fragments(text):
        yield Problem(label, field, f"contains HTML {fragment!r}: texts are plain")


def _adult_text_problems(label: str, field: str, text: str) -> Iterator[Problem]:
    count = len(sentences(text))
    if count > ADULT_MAX_SENTENCES:
        yield Problem(label, field, f"{count} sentences (at most {ADULT_MAX_SENTENCES}): keep answers short")
    total = len(words(text))
    if total > ADULT_MAX_WORDS:
        yield Problem(label, field, f"{total} words (at most {ADULT_MAX_WORDS})")


def _pupil_text_problems(label: str, field: str, text: str, allowed: _Allowed) -> Iterator[Problem]:
    for number, sentence in enumerate(sentences(text), start=1):
        count = len(words(sentence))
        if count > PUPIL_MAX_SENTENCE_WORDS:
            yield Problem(
                label,
                field,
                f"sentence {number} has {count} words (at most {PUPIL_MAX_SENTENCE_WORDS}): {sentence!r}",
            )
    total = len(words(text))
    if total > PUPIL_MAX_WORDS:
        yield Problem(label, field, f"{total} words (at most {PUPIL_MAX_WORDS} for pupils)")
    grade = reading_grade(text)
    if grade > PUPIL_MAX_GRADE:
        yield Problem(
            label,
            field,
            f"reading grade {grade:.1f} (Flesch-Kincaid, at most {PUPIL_MAX_GRADE:.1f} for a reading age of "
            "about 9): use shorter sentences and everyday words",
        )
    for contact in allowed.unapproved(text):
        message = f"mentions {contact!r}: pupil texts may only give contacts in helplines.yml"
        yield Problem(label, field, message)


class _Allowed:
    """The helpline numbers and addresses pupil-facing text may mention."""

    def __init__(self, numbers: Iterable[str], addresses: Iterable[str]):
        self.numbers = frozenset(only_digits(number) for number in numbers)
        self.addresses = frozenset(canonical_url(address) for address in addresses)

    def unapproved(self, text: str) -> list[str]:
        found = [address for address in emails(text) if canonical_url(address) not in self.addresses]
        found += [address for address in urls(text) if canonical_url(address) not in self.addresses]
        found += [number for number in phone_numbers(text) if only_digits(number) not in self.numbers]
        return found


def _pupil_contacts(kb: KnowledgeBase) -> _Allowed:
    for_pupils = [helpline for helpline in kb.helplines if "pupil" in helpline.audiences]
    return _Allowed(
        numbers=(number for helpline in for_pupils for number in helpline.numbers),
        addresses=(url for helpline in for_pupils for url in helpline.urls),
    )
