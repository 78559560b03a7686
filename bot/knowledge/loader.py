"""Reading the clause base (knowledge/) into a :class:`KnowledgeBase`, validating its structure as it goes.

Structure means: each file parses, has exactly the keys knowledge/README.md documents (an unknown key is a
typo, not an extension), and each value has the right shape. Every such problem is collected, naming the file
and the field, so one run shows them all. Cross-file and content rules (quotes, citations, readability) are
:mod:`bot.knowledge.checks`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from bot.knowledge import checks
from bot.knowledge.base import KnowledgeBase
from bot.knowledge.models import (
    SCHOOL_KINDS,
    Clause,
    ContactRoute,
    Helpline,
    OfficialAccount,
    Person,
    Review,
    School,
    Topic,
    TopicAnswer,
    Variant,
)
from bot.knowledge.problems import KnowledgeError, Problem
from bot.settings import AUDIENCES, get_settings

# school.yml's default_contact must be a person or place an answer can actually send someone to.
DEFAULT_CONTACTS = ("dsl", "esafety_lead", "headteacher", "office")


def load_knowledge(path: Path | None = None) -> KnowledgeBase:
    """Load and structurally validate the clause base (default: ``settings.knowledge_dir``).

    Raises :class:`KnowledgeError` listing every structural problem. Content rules are ``kb.check()``.
    """
    kb, problems = read_knowledge(path)
    if problems:
        raise KnowledgeError(problems)
    return kb


@lru_cache(maxsize=1)
def get_knowledge() -> KnowledgeBase:
    """The clause base from ``settings.knowledge_dir``, loaded once per process (for the action server)."""
    return load_knowledge()


def check_knowledge(path: Path | None = None) -> tuple[KnowledgeBase, list[Problem]]:
    """Every problem in the clause base: structural ones first, then content ones from ``kb.check()``.

    Content problems inside a field that already has a structural problem are left out: they are echoes of it.
    """
    kb, structural = read_knowledge(path)
    unreadable = {problem.file for problem in structural if not problem.field}
    semantic = [p for p in checks.check(kb, unreadable) if not any(s.covers(p) for s in structural)]
    return kb, structural + semantic


def read_knowledge(path: Path | None = None) -> tuple[KnowledgeBase, list[Problem]]:
    """The clause base as far as it can be read, with its structural problems (never raises on bad data).

    An item with a problem is still kept when it has an id (missing values become empty), so that the content
    checks do not report its absence a second time. Only :func:`load_knowledge` is fit for answering.
    """
    root = Path(path) if path is not None else get_settings().knowledge_dir
    problems: list[Problem] = []
    if not root.is_dir():
        problems.append(Problem(str(root), "", "knowledge directory not found"))
        return KnowledgeBase(root=root), problems

    def reader(relative: str) -> _Reader:
        return _Reader(root / relative, f"{root.name}/{relative}", problems)

    topics = _load_topics(reader("topics.yml"))
    helplines = _load_helplines(reader("helplines.yml"))
    entities = _load_entities(reader("entities.yml"))

    slugs: list[str] = []
    schools: dict[str, School] = {}
    policy_texts: dict[str, str] = {}
    clauses: dict[str, tuple[Clause, ...]] = {}
    answers: dict[str, dict[str, TopicAnswer]] = {}
    for school_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        slug = school_dir.name
        slugs.append(slug)
        policy = _read_policy(reader(f"{slug}/policy.txt"))
        if policy is not None:
            policy_texts[slug] = policy
        school = _load_school(reader(f"{slug}/school.yml"), slug, policy or "")
        if school is not None:
            schools[slug] = school
        clauses[slug] = _load_clauses(reader(f"{slug}/clauses.yml"), slug)
        answers[slug] = _load_answers(reader(f"{slug}/answers.yml"), slug)

    kb = KnowledgeBase(
        root=root,
        topics=topics,
        slugs=slugs,
        schools=schools,
        policy_texts=policy_texts,
        clauses=clauses,
        answers=answers,
        helplines=helplines,
        entities=entities,
    )
    return kb, problems


# libyaml's parser when installed: the clause base is a few thousand lines and the pure-Python parser is slow.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):
    """PyYAML keeps the last of two equal keys; in answers.yml that silently drops an answer, so refuse it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _join(field: str, key: object) -> str:
    return f"{field}.{key}" if field else str(key)


class _Reader:
    """One file of the clause base: reads it and records problems that name it and the field."""

    def __init__(self, path: Path, label: str, problems: list[Problem]):
        self.path = path
        self.label = label
        self.problems = problems

    def problem(self, field: str, message: str) -> None:
        self.problems.append(Problem(self.label, field, message))

    def read_text(self) -> str | None:
        if not self.path.is_file():
            self.problem("", "file missing")
            return None
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problem("", f"cannot be read as UTF-8 text ({exc})")
            return None

    def load_yaml(self) -> Any | None:
        text = self.read_text()
        if text is None:
            return None
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: builds plain data only
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            detail = getattr(exc, "problem", None) or str(exc)
            self.problem("", f"not valid YAML: {detail}{where}")
            return None
        if data is None:
            self.problem("", "file is empty")
        return data

    def load_mapping(self, required: Iterable[str]) -> dict[str, Any] | None:
        """The file as a top-level mapping with exactly ``required`` keys; None if it cannot be read."""
        data = self.load_yaml()
        return None if data is None else self.mapping(data, "", required=required)

    def mapping(
        self, value: Any, field: str, required: Iterable[str] = (), optional: Iterable[str] = ()
    ) -> dict[str, Any] | None:
        """``value`` as a mapping with only the allowed keys; None (and a problem) if it is not a mapping."""
        required = tuple(required)
        allowed = required + tuple(optional)
        if not isinstance(value, dict):
            self.problem(field, f"must be a mapping with keys {', '.join(allowed)}, got {_describe(value)}")
            return None
        for key in value:
            if not isinstance(key, str):
                self.problem(_join(field, key), f"key {key!r} must be text (put it in quotes)")
            elif key not in allowed:
                self.problem(_join(field, key), f"unknown key (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in value:
                self.problem(_join(field, key), "missing")
        return value

    def text(self, data: dict[str, Any], key: str, field: str, *, nullable: bool = False) -> str | None:
        """A required, non-empty string (or None where ``nullable`` and the YAML says null)."""
        if key not in data:
            return None  # reported by mapping()
        value = data[key]
        where = _join(field, key)
        if value is None:
            if not nullable:
                self.problem(where, "must not be empty")
            return None
        if isinstance(value, (int, float, datetime.date)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.problem(where, f"must be text, got {_describe(value)}")
            return None
        if not value.strip():
            self.problem(where, "must not be empty")
            return None
        return value.strip()

    def text_list(
        self, data: dict[str, Any], key: str, field: str, *, non_empty: bool = False
    ) -> tuple[str, ...]:
        """A list of non-empty strings (a missing or null list is empty)."""
        value = data.get(key)
        where = _join(field, key)
        if value is None:
            if non_empty and key in data:
                self.problem(where, "must list at least one value")
            return ()
        if not isinstance(value, list):
            self.problem(where, f"must be a list, got {_describe(value)}")
            return ()
        items: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                item = str(item)
            if not isinstance(item, str) or not item.strip():
                self.problem(f"{where}[{index}]", f"must be non-empty text, got {_describe(item)}")
                continue
            items.append(item.strip())
        if non_empty and not value:
            self.problem(where, "must list at least one value")
        return tuple(items)

    def choice(self, data: dict[str, Any], key: str, field: str, choices: Iterable[str]) -> str | None:
        choices = tuple(choices)
        value = self.text(data, key, field)
        if value is not None and value not in choices:
            self.problem(_join(field, key), f"{value!r} is not one of {', '.join(choices)}")
            return None
        return value

    def items(self, data: dict[str, Any], key: str, field: str) -> list[tuple[str, Any]]:
        """The entries of a list of mappings, each with a field name: ``key[<id>]`` or ``key[<n>]``."""
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(_join(field, key), f"must be a list, got {_describe(value)}")
            return []
        named = []
        for index, item in enumerate(value):
            ident = item.get("id") if isinstance(item, dict) else None
            label = ident if isinstance(ident, str) and ident.strip() else index
            named.append((f"{_join(field, key)}[{label}]", item))
        return named


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _load_topics(reader: _Reader) -> tuple[Topic, ...]:
    data = reader.load_mapping(required=("topics",))
    if data is None:
        return ()
    topics = []
    for field, raw in reader.items(data, "topics", ""):
        item = reader.mapping(raw, field, required=("id", "title", "question", "asked_by", "related"))
        if item is None:
            continue
        topic = Topic(
            id=reader.text(item, "id", field) or "",
            title=reader.text(item, "title", field) or "",
            question=reader.text(item, "question", field) or "",
            asked_by=reader.text_list(item, "asked_by", field),
            related=reader.text_list(item, "related", field),
        )
        if topic.id:
            topics.append(topic)
    return tuple(topics)


def _load_helplines(reader: _Reader) -> tuple[Helpline, ...]:
    data = reader.load_mapping(required=("helplines",))
    if data is None:
        return ()
    helplines = []
    for field, raw in reader.items(data, "helplines", ""):
        item = reader.mapping(
            raw, field, required=("id", "name"), optional=("detail", "numbers", "urls", "audiences")
        )
        if item is None:
            continue
        helpline = Helpline(
            id=reader.text(item, "id", field) or "",
            name=reader.text(item, "name", field) or "",
            detail=reader.text(item, "detail", field, nullable=True),
            numbers=reader.text_list(item, "numbers", field),
            urls=reader.text_list(item, "urls", field),
            audiences=reader.text_list(item, "audiences", field) or AUDIENCES,
        )
        if helpline.id:
            helplines.append(helpline)
    return tuple(helplines)


def _load_entities(reader: _Reader) -> MappingProxyType[str, frozenset[str]]:
    """Entity type -> canonical values (the keys that answers.yml variants may use)."""
    data = reader.load_yaml()
    if data is None:
        return MappingProxyType({})
    if not isinstance(data, dict):
        reader.problem("", f"must be a mapping of entity types, got {_describe(data)}")
        return MappingProxyType({})
    entities = {}
    for entity, values in data.items():
        if not isinstance(values, dict):
            reader.problem(str(entity), f"must map each value to its spellings, got {_describe(values)}")
            continue
        entities[str(entity)] = frozenset(str(value) for value in values)
    return MappingProxyType(entities)


def _read_policy(reader: _Reader) -> str | None:
    text = reader.read_text()
    if text is not None and not text.strip():
        reader.problem("", "file is empty")
        return None
    return text


_SCHOOL_KEYS = (
    "slug",
    "name",
    "kind",
    "dsl",
    "deputy_dsls",
    "esafety_lead",
    "headteacher",
    "other_contacts",
    "official_accounts",
    "contact_routes",
    "review",
    "default_contact",
)


def _load_school(reader: _Reader, slug: str, policy_text: str) -> School | None:
    data = reader.load_mapping(required=_SCHOOL_KEYS)
    if data is None:
        return None
    stated_slug = reader.text(data, "slug", "")
    if stated_slug is not None and stated_slug != slug:
        reader.problem("slug", f"is {stated_slug!r} but the folder is {slug!r}")
    school = School(
        slug=slug,
        name=reader.text(data, "name", "") or slug,
        kind=reader.choice(data, "kind", "", SCHOOL_KINDS) or "school",
        dsl=_people(reader, data, "dsl"),
        deputy_dsls=_people(reader, data, "deputy_dsls"),
        esafety_lead=_person(reader, data.get("esafety_lead"), "esafety_lead", nullable=True),
        headteacher=_person(reader, data.get("headteacher"), "headteacher", nullable=True),
        other_contacts=_people(reader, data, "other_contacts"),
        official_accounts=tuple(_official_accounts(reader, data)),
        contact_routes=tuple(_contact_routes(reader, data)),
        review=_review(reader, data.get("review")),
        default_contact=reader.choice(data, "default_contact", "", DEFAULT_CONTACTS) or "dsl",
        policy_text=policy_text,
    )
    return school


def _person(reader: _Reader, raw: Any, field: str, *, nullable: bool = False) -> Person | None:
    if raw is None:
        if not nullable:
            reader.problem(field, "must be {name:, role:}")
        return None
    item = reader.mapping(raw, field, optional=("name", "role"))
    if item is None:
        return None
    person = Person(
        name=reader.text(item, "name", field, nullable=True),
        role=reader.text(item, "role", field, nullable=True),
    )
    if person.name is None and person.role is None:
        reader.problem(field, "needs a name or a role")
        return None
    return person


def _people(reader: _Reader, data: dict[str, Any], key: str) -> tuple[Person, ...]:
    raw = data.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        message = f"must be a list of {{name:, role:}} ([] when the policy names none), got {_describe(raw)}"
        reader.problem(key, message)
        return ()
    people = (_person(reader, item, f"{key}[{index}]") for index, item in enumerate(raw))
    return tuple(person for person in people if person is not None)


def _official_accounts(reader: _Reader, data: dict[str, Any]) -> Iterable[OfficialAccount]:
    for field, raw in reader.items(data, "official_accounts", ""):
        item = reader.mapping(raw, field, required=("platform",), optional=("handle", "managed_by"))
        if item is not None:
            yield OfficialAccount(
                platform=reader.text(item, "platform", field) or "",
                handle=reader.text(item, "handle", field, nullable=True),
                managed_by=reader.text(item, "managed_by", field, nullable=True),
            )


def _contact_routes(reader: _Reader, data: dict[str, Any]) -> Iterable[ContactRoute]:
    for field, raw in reader.items(data, "contact_routes", ""):
        item = reader.mapping(raw, field, required=("kind",), optional=("value", "purpose"))
        if item is not None:
            yield ContactRoute(
                kind=reader.text(item, "kind", field) or "",
                value=reader.text(item, "value", field, nullable=True),
                purpose=reader.text(item, "purpose", field, nullable=True),
            )


def _review(reader: _Reader, raw: Any) -> Review:
    if raw is None:
        return Review()
    item = reader.mapping(raw, "review", optional=("written", "approved", "next_review", "cycle"))
    if item is None:
        return Review()
    return Review(
        written=reader.text(item, "written", "review", nullable=True),
        approved=reader.text(item, "approved", "review", nullable=True),
        next_review=reader.text(item, "next_review", "review", nullable=True),
        cycle=reader.text(item, "cycle", "review", nullable=True),
    )


def _load_clauses(reader: _Reader, slug: str) -> tuple[Clause, ...]:
    data = reader.load_mapping(required=("school", "clauses"))
    if data is None:
        return ()
    _check_school_key(reader, data, slug)
    if data.get("clauses") is None and "clauses" in data:
        reader.problem("clauses", "must list the school's clauses")
    clauses = []
    for field, raw in reader.items(data, "clauses", ""):
        item = reader.mapping(raw, field, required=("id", "section", "kind", "applies_to", "quote"))
        if item is None:
            continue
        clause = Clause(
            id=reader.text(item, "id", field) or "",
            school=slug,
            section=reader.text(item, "section", field) or "",
            kind=reader.text(item, "kind", field) or "",
            applies_to=reader.text_list(item, "applies_to", field, non_empty=True),
            quote=reader.text(item, "quote", field) or "",
        )
        if clause.id:
            clauses.append(clause)
    return tuple(clauses)


def _check_school_key(reader: _Reader, data: dict[str, Any], slug: str) -> None:
    stated = reader.text(data, "school", "")
    if stated is not None and stated != slug:
        reader.problem("school", f"is {stated!r} but the folder is {slug!r}")


_TEXT_KEYS = ("clauses", *AUDIENCES)


def _load_answers(reader: _Reader, slug: str) -> dict[str, TopicAnswer]:
    data = reader.load_mapping(required=("school", "answers"))
    if data is None:
        return {}
    _check_school_key(reader, data, slug)
    raw_answers = data.get("answers")
    if raw_answers is None:
        if "answers" in data:
            reader.problem("answers", "must map every topic id to its answer")
        return {}
    if not isinstance(raw_answers, dict):
        reader.problem("answers", f"must map every topic id to its answer, got {_describe(raw_answers)}")
        return {}
    answers = {}
    for topic, raw in raw_answers.items():
        field = f"answers.{topic}"
        if not isinstance(topic, str):
            reader.problem(field, f"topic id {topic!r} must be text")
            continue
        answer = _answer(reader, slug, topic, raw, field)
        if answer is not None:
            answers[topic] = answer
    return answers


def _answer(reader: _Reader, slug: str, topic: str, raw: Any, field: str) -> TopicAnswer | None:
    if not isinstance(raw, dict):
        reader.problem(field, "must be a mapping: clauses with staff/parent/pupil texts, or covered: false")
        return None
    covered = raw.get("covered", True)
    if not isinstance(covered, bool):
        reader.problem(f"{field}.covered", f"must be true or false, got {_describe(covered)}")
        return None
    if not covered:
        answer_keys = (*_TEXT_KEYS, "variants")
        for key in raw:
            if key in answer_keys:
                reader.problem(f"{field}.{key}", "not allowed with covered: false (silent means no text)")
        rest = {key: value for key, value in raw.items() if key not in answer_keys}
        reader.mapping(rest, field, optional=("covered", "ask"))
        ask = reader.text(raw, "ask", field, nullable=True)
        return TopicAnswer(school=slug, topic=topic, covered=False, ask=ask)
    item = reader.mapping(raw, field, required=_TEXT_KEYS, optional=("covered", "ask", "variants"))
    if item is None:
        return None
    clauses, texts = _cited_texts(reader, item, field)
    return TopicAnswer(
        school=slug,
        topic=topic,
        covered=True,
        clauses=clauses,
        texts=texts,
        ask=reader.text(item, "ask", field, nullable=True),
        variants=_variants(reader, item.get("variants"), f"{field}.variants"),
    )


def _cited_texts(
    reader: _Reader, item: dict[str, Any], field: str
) -> tuple[tuple[str, ...], MappingProxyType[str, str]]:
    clauses = reader.text_list(item, "clauses", field, non_empty=True)
    texts = {audience: reader.text(item, audience, field) or "" for audience in AUDIENCES}
    return clauses, MappingProxyType(texts)


def _variants(reader: _Reader, raw: Any, field: str) -> MappingProxyType[str, Variant]:
    if raw is None:
        return MappingProxyType({})
    if not isinstance(raw, dict):
        reader.problem(field, f"must map entity values (e.g. whatsapp) to answers, got {_describe(raw)}")
        return MappingProxyType({})
    variants = {}
    for key, value in raw.items():
        where = f"{field}.{key}"
        if not isinstance(key, str):
            reader.problem(where, f"variant key {key!r} must be text (put it in quotes)")
            continue
        item = reader.mapping(value, where, required=_TEXT_KEYS)
        if item is None:
            continue
        clauses, texts = _cited_texts(reader, item, where)
        variants[key] = Variant(key=key, clauses=clauses, texts=texts)
    return MappingProxyType(variants)
