"""Words built from a school's facts rather than from answers.yml: "not covered" replies and citations.

Nothing here invents a fact. A role the policy does not name a person for is referred to by its role only.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.knowledge.models import CONTACT_KEYS, Answer, Contact, School
from bot.knowledge.text import shorten

# (singular, plural) for the sentence "Please ask X, the <title>."
_TITLES = {
    "dsl": ("Designated Safeguarding Lead", "Designated Safeguarding Leads"),
    "deputy_dsls": ("Deputy Designated Safeguarding Lead", "Deputy Designated Safeguarding Leads"),
    "esafety_lead": ("E-Safety Lead", "E-Safety Leads"),
    "headteacher": ("headteacher", "headteachers"),
    "office": ("school office", "school office"),
}


def contact_for(school: School, key: str | None) -> Contact:
    """Who to ask at ``school``: the answers.yml ``ask`` key if valid, else the school's default contact."""
    if key not in CONTACT_KEYS:
        key = school.default_contact
    names = tuple(person.name for person in school.people(key) if person.name)
    singular, plural = _TITLES[key]
    return Contact(key=key, title=plural if len(names) > 1 else singular, names=names)


def not_covered_text(school: School, contact: Contact, audience: str) -> str:
    """The reply when ``school``'s policy is silent on a topic, pointing to the right person."""
    if audience == "pupil":
        who = join_names(contact.names) if contact.names else "a teacher"
        return f"Our school rules do not say. Ask {who} or another grown-up you trust at school."
    return f"{_policy_subject(school)} does not cover this. {_ask_sentence(school, contact)}"


def _policy_subject(school: School) -> str:
    if "policy" in school.name.lower():
        return school.name if school.name.lower().startswith("the ") else f"The {school.name}"
    return f"{school.name}'s social media policy"


def _ask_sentence(school: School, contact: Contact) -> str:
    if contact.key == "office":
        return "Please contact the school office."
    if contact.names:
        return f"Please ask {join_names(contact.names)}, the {contact.title}."
    if school.kind == "template":
        # A template names nobody; the reader's own school fills the role.
        return f"Please ask your school's {contact.title}."
    return f"Please ask the {contact.title}."


def join_names(names: Sequence[str]) -> str:
    """Names joined for a sentence: "A", "A or B", "A, B or C"."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} or {names[-1]}"


def citation_text(school: School, answer: Answer, max_quote_chars: int = 100, max_clauses: int = 3) -> str:
    """One line naming the policy, then each section with its (shortened) quotes; "" if nothing is cited.

    At most ``max_clauses`` quotes are shown (the payload carries them all), followed by "(and N more)".
    """
    if not answer.clauses:
        return ""
    shown = answer.clauses[:max_clauses]
    by_section: dict[str, list[str]] = {}
    for clause in shown:
        by_section.setdefault(clause.section, []).append(f'"{shorten(clause.quote, max_quote_chars)}"')
    cited = "; ".join(f"{section} \u2014 {', '.join(quotes)}" for section, quotes in by_section.items())
    hidden = len(answer.clauses) - len(shown)
    more = f" (and {hidden} more)" if hidden else ""
    return f"Source: {school.policy_title}, {cited}{more}"
