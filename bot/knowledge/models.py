"""The clause base as frozen values: topics, schools, clauses, each school's answers, helplines, and answers.

Everything here is built by :mod:`bot.knowledge.loader` after the YAML has been validated, so the types can be
trusted by the rest of the bot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

SCHOOL_KINDS = ("school", "trust", "template")
CLAUSE_KINDS = ("rule", "permission", "prohibition", "procedure", "contact", "age-limit", "definition")
APPLIES_TO = ("staff", "parents", "pupils", "everyone")
# The applies_to values that make a clause about an audience (audiences are those of bot.settings.AUDIENCES).
AUDIENCE_APPLIES_TO = {
    "staff": ("staff", "everyone"),
    "parent": ("parents", "everyone"),
    "pupil": ("pupils", "everyone"),
}
# Who an answer can send people to: the school.yml contact fields, plus the school office.
CONTACT_KEYS = ("dsl", "deputy_dsls", "esafety_lead", "headteacher", "office")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Topic:
    """A question people ask about a social media policy, shared by every school."""

    id: str
    title: str
    question: str
    asked_by: tuple[str, ...]
    related: tuple[str, ...]


@dataclass(frozen=True)
class Clause:
    """One rule (or permission, procedure, ...) quoted verbatim from a school's policy.txt."""

    id: str
    school: str
    section: str
    kind: str
    applies_to: tuple[str, ...]
    quote: str

    def applies_to_audience(self, audience: str) -> bool:
        """Whether this clause is about ``audience`` (``staff``, ``parent``, ``pupil``) or about everyone."""
        return any(who in self.applies_to for who in AUDIENCE_APPLIES_TO.get(audience, ()))


@dataclass(frozen=True)
class Person:
    """Someone the policy gives a job to; ``name`` is None when the policy gives the role but no name."""

    name: str | None
    role: str | None


@dataclass(frozen=True)
class OfficialAccount:
    platform: str
    handle: str | None
    managed_by: str | None


@dataclass(frozen=True)
class ContactRoute:
    kind: str
    value: str | None
    purpose: str | None


@dataclass(frozen=True)
class Review:
    written: str | None = None
    approved: str | None = None
    next_review: str | None = None
    cycle: str | None = None


@dataclass(frozen=True)
class School:
    """A school's facts from school.yml (only what its policy states) and its policy text."""

    slug: str
    name: str
    kind: str
    dsl: tuple[Person, ...]
    deputy_dsls: tuple[Person, ...]
    esafety_lead: Person | None
    headteacher: Person | None
    other_contacts: tuple[Person, ...]
    official_accounts: tuple[OfficialAccount, ...]
    contact_routes: tuple[ContactRoute, ...]
    review: Review
    default_contact: str
    policy_text: str = field(repr=False, compare=False)

    @property
    def policy_title(self) -> str:
        """How citations name the policy, e.g. "Lunsford Primary School Social Media Policy"."""
        title = self.name if "policy" in self.name.lower() else f"{self.name} Social Media Policy"
        return f"{title} (model template)" if self.kind == "template" else title

    def people(self, contact_key: str) -> tuple[Person, ...]:
        """The people school.yml lists for a contact key (``dsl``, ``headteacher``, ...); none for office."""
        if contact_key == "dsl":
            return self.dsl
        if contact_key == "deputy_dsls":
            return self.deputy_dsls
        if contact_key == "esafety_lead":
            return (self.esafety_lead,) if self.esafety_lead else ()
        if contact_key == "headteacher":
            return (self.headteacher,) if self.headteacher else ()
        return ()


@dataclass(frozen=True)
class Contact:
    """Who to ask: a contact key from school.yml, its title, and the names the policy gives (maybe none)."""

    key: str
    title: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Variant:
    """A more specific answer for one entity value (e.g. a platform such as ``whatsapp``)."""

    key: str
    clauses: tuple[str, ...]
    texts: Mapping[str, str]


@dataclass(frozen=True)
class TopicAnswer:
    """One school's entry for one topic in answers.yml: cited texts per audience, or "not covered"."""

    school: str
    topic: str
    covered: bool
    clauses: tuple[str, ...] = ()
    texts: Mapping[str, str] = _EMPTY
    ask: str | None = None
    variants: Mapping[str, Variant] = _EMPTY


@dataclass(frozen=True)
class Helpline:
    """An external contact pupil-facing text may mention (helplines.yml)."""

    id: str
    name: str
    detail: str | None
    numbers: tuple[str, ...]
    urls: tuple[str, ...]
    audiences: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    """What the bot says for one school, topic and audience, with the clauses it cites."""

    school: str
    topic: str
    audience: str
    covered: bool
    text: str
    clauses: tuple[Clause, ...]
    contact: Contact
    variant: str | None = None

    @property
    def lead_clause(self) -> Clause | None:
        """The clause a one-line citation names: the first that applies to this answer's audience, else the
        first cited (answers.yml orders clauses for the adult texts, which may lead with a staff rule)."""
        for clause in self.clauses:
            if clause.applies_to_audience(self.audience):
                return clause
        return self.clauses[0] if self.clauses else None

    def payload(self) -> dict[str, Any]:
        """The JSON custom payload the channels render (citations as data, not prose)."""
        return {
            "type": "policy_answer",
            "school": self.school,
            "topic": self.topic,
            "covered": self.covered,
            "clauses": [
                {"id": clause.id, "section": clause.section, "quote": clause.quote} for clause in self.clauses
            ],
        }
