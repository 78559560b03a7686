"""Every clause names the section of its school's policy that it is in, so each citation names the right one.

The policy texts (``knowledge/<school>/policy.txt``) are the ground truth: for each clause the test finds
where its verbatim quote is in the policy and the nearest heading before it, and checks that the clause's
``section`` is that heading. A section written ``"Personal use > Staff"`` names a heading ("Staff") and the
headings it sits under ("Personal use"), which must come before it in that order.

What counts as a heading, as people read these documents:

* a markdown heading (``## 6. Children use of social media``), and a short numbered title line
  (``4. Unacceptable Content``, ``9 Trust-maintained social media sites``; not a numbered paragraph);
* in a document with neither (the ones converted from Word without styles), a short line standing alone
  between blank lines that does not end like a sentence (``Social media incidents``); in a numbered document
  such lines are sub-titles inside a numbered section (the Acts listed under "11 Legislation");
* a document's title line (``Title: Social Media Policy``);
* a line whose text is one that the clause base cites as a section (``VERSION CONTROL:``, the role bullets
  ``- SLT`` under "Roles & Responsibilities"). This only adds headings: a clause citing the wrong heading is
  still caught, because the nearest heading before its quote is another one.

Text before the first heading is cited as ``"... (untitled)"`` (e.g. ``"Introduction (untitled)"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from bot.knowledge import check_knowledge
from bot.knowledge.models import Clause
from bot.knowledge.text import normalise
from bot.settings import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "knowledge"
UNTITLED = "(untitled)"

_MARKDOWN = re.compile(r"^#{1,6}\s")
_NUMBERED = re.compile(r"^\d+(?:\.\d+)*\.?\s+[A-Z][^\t]{0,70}$")
_TITLE = re.compile(r"^Title:\s+(?P<title>\S.*)$")
_SENTENCE_END = (".", ",", ";", ":")


def _text(line: str) -> str:
    """A line as a heading's name: without markdown (#, **), bullet dash, spaces or a final colon."""
    text = re.sub(r"^#+\s*", "", line.strip()).replace("*", "").strip()
    text = re.sub(r"^-\s+", "", text)
    return normalise(text).rstrip(":").strip()


@dataclass(frozen=True)
class Heading:
    line: int  # 0-based line number in policy.txt
    name: str


def headings(policy: str, cited: set[str]) -> list[Heading]:
    """The headings of ``policy`` in order (see the module docstring for what counts as one)."""
    lines = policy.split("\n")
    structured = any(
        _MARKDOWN.match(line.strip())
        or (_NUMBERED.match(line.strip()) and not line.strip().endswith(_SENTENCE_END))
        for line in lines
    )
    found = []
    for number, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        name = _text(line)
        # Markdown off, but the bullet dash and final colon kept: "- 4.2 ... content that is:" is a list item.
        bare = re.sub(r"^#+\s*", "", line).replace("*", "").strip()
        title = _TITLE.match(line)
        alone = (number == 0 or not lines[number - 1].strip()) and (
            number + 1 == len(lines) or not lines[number + 1].strip()
        )
        if (
            _MARKDOWN.match(line)
            or (_NUMBERED.match(bare) and not bare.endswith(_SENTENCE_END))
            or name in cited
            or (
                not structured
                and alone
                and len(name) <= 60
                and name[:1].isupper()
                and not line.startswith(("-", "*"))
                and not line.endswith(_SENTENCE_END)
                and "@" not in line
                and "\t" not in line
            )
        ):
            found.append(Heading(number, name))
        elif title:
            found.append(Heading(number, _text(title.group("title"))))
    return found


def section_parts(section: str) -> list[str]:
    return [normalise(part).rstrip(":").strip() for part in section.split(">")]


def sections_containing(quote: str, policy: str, marks: list[Heading]) -> list[list[Heading]]:
    """For each place ``quote`` occurs in ``policy`` (between two headings), the headings before that place
    (nearest last)."""
    lines = policy.split("\n")
    starts = [0] + [h.line + 1 for h in marks]
    ends = [h.line for h in marks] + [len(lines)]
    wanted = normalise(quote)
    places = []
    for index, (start, end) in enumerate(zip(starts, ends, strict=True)):
        if wanted in normalise("\n".join(lines[start:end])):
            places.append(marks[:index])
    return places


def problem(clause: Clause, policy: str, marks: list[Heading]) -> str | None:
    """Why ``clause.section`` is not the section its quote is in, or None when it is."""
    places = sections_containing(clause.quote, policy, marks)
    if not places:
        return f"{clause.id}: quote not found within one section of policy.txt"
    parts = section_parts(clause.section)
    for before in places:
        if not before:
            if parts[-1].endswith(UNTITLED):
                return None
            continue
        # The nearest heading is the section's last part; the parts before it are headings further up.
        if before[-1].name != parts[-1]:
            continue
        names = [h.name for h in before[:-1]]
        if _in_order(parts[:-1], names):
            return None
    where = [before[-1].name if before else "(before the first heading)" for before in places]
    return f"{clause.id}: cites {clause.section!r}, but the quote is under {' / '.join(map(repr, where))}"


def _in_order(wanted: list[str], names: list[str]) -> bool:
    rest = iter(reversed(names))
    return all(any(name == part for name in rest) for part in reversed(wanted))


@pytest.fixture(scope="module")
def kb():
    kb, _ = check_knowledge(SHIPPED)
    return kb


def cited_names(clauses: tuple[Clause, ...]) -> set[str]:
    return {part for clause in clauses for part in section_parts(clause.section)}


@pytest.mark.shipped_data
def test_every_clause_names_the_section_its_quote_is_in(kb):
    problems = []
    checked = 0
    for school, clauses in kb.clauses.items():
        policy = kb.policy_texts[school]
        marks = headings(policy, cited_names(clauses))
        for clause in clauses:
            checked += 1
            found = problem(clause, policy, marks)
            if found:
                problems.append(found)
    assert checked == sum(len(c) for c in kb.clauses.values()) > 400
    assert not problems, f"{len(problems)} clauses cite the wrong section:\n" + "\n".join(problems)


# --- The check itself, on small policies ------------------------------------------------------------------

LUNSFORD_LIKE = """
### **4. Staff use of social media**

- The use of social media during school hours for personal use is only permitted for staff during breaks.

## 6. Children use of social media

- The use of social media during school hours for personal use is not permitted for children.
"""

PLAIN = """Title:\t\tSocial Media Policy
Review Cycle Frequency: 1 year

Personal use

Staff

- Staff may use social media at break.

Pupil/Students

- Staff are not permitted to follow learners.
"""


def clause(section: str, quote: str) -> Clause:
    return Clause(id="x.1", school="x", section=section, kind="rule", applies_to=("everyone",), quote=quote)


CASES = {
    "section 6 rule cited as 6": (
        LUNSFORD_LIKE,
        "6. Children use of social media",
        "not permitted for children.",
        True,
    ),
    # The slip from issue #15: a section-6 rule cited as section 4.
    "section 6 rule cited as 4": (
        LUNSFORD_LIKE,
        "4. Staff use of social media",
        "not permitted for children.",
        False,
    ),
    "section 4 rule cited as 4": (
        LUNSFORD_LIKE,
        "4. Staff use of social media",
        "only permitted for staff",
        True,
    ),
    "cited as a heading not in the text": (
        LUNSFORD_LIKE,
        "5. Official use",
        "only permitted for staff",
        False,
    ),
    "nested heading": (PLAIN, "Personal use > Staff", "Staff may use social media at break.", True),
    "nested heading, last part only": (PLAIN, "Staff", "Staff may use social media at break.", True),
    "the next heading's clause": (
        PLAIN,
        "Personal use > Staff",
        "Staff are not permitted to follow learners.",
        False,
    ),
    "parts in the wrong order": (
        PLAIN,
        "Pupil/Students > Staff",
        "Staff may use social media at break.",
        False,
    ),
    "under the title line": (PLAIN, "Social Media Policy", "Review Cycle Frequency: 1 year", True),
    "a later heading": (PLAIN, "Personal use", "Review Cycle Frequency: 1 year", False),
    "a quote not in the policy": (PLAIN, "Staff", "a sentence that is not in the policy", False),
}


@pytest.mark.parametrize(("policy", "section", "quote", "right"), list(CASES.values()), ids=list(CASES))
def test_the_check_finds_the_section_a_quote_is_in(policy, section, quote, right):
    c = clause(section, quote)
    marks = headings(policy, cited_names((c,)))
    assert (problem(c, policy, marks) is None) == right


def test_numbered_paragraphs_and_list_items_are_not_headings():
    policy = (
        "3. Scope\n\n3.2 Social media sites have a varied age limit on creating a user account.\n\n- SLT\n"
    )
    assert [h.name for h in headings(policy, set())] == ["3. Scope"]
    assert [h.name for h in headings(policy, {"SLT"})] == ["3. Scope", "SLT"]


@pytest.mark.shipped_data
def test_the_check_catches_any_clause_citing_another_section_of_its_policy(kb):
    """The check can fail on the real data: every clause, given the next other section of its school, is
    reported (unless its words are also in that section)."""
    missed = []
    for school, clauses in kb.clauses.items():
        policy = kb.policy_texts[school]
        sections = list(dict.fromkeys(c.section for c in clauses))
        marks = headings(policy, cited_names(clauses))
        for c in clauses:
            other = sections[(sections.index(c.section) + 1) % len(sections)]
            wrong = clause(other, c.quote)
            places = [before[-1].name for before in sections_containing(c.quote, policy, marks) if before]
            if problem(wrong, policy, marks) is None and section_parts(other)[-1] not in places:
                missed.append(f"{c.id} as {other!r}")
    assert not missed, missed


@pytest.mark.shipped_data
def test_the_pupil_citation_names_the_section_of_the_rule_the_pupil_answer_gives(kb):
    """issue #15: for school-day-use the first clause is the staff rule in section 4; the pupil text gives
    the section-6 rule, and the pupil line must name that section."""
    from bot.answering import citation_line

    answer = kb.answer("lunsford", "school-day-use", "pupil")
    assert answer.clauses[0].section == "4. Staff use of social media"  # the case stays a real test
    assert citation_line(kb, answer) == "This is from our school's rules (6. Children use of social media)."


@pytest.mark.shipped_data
def test_every_pupil_citation_names_a_clause_about_pupils_when_the_answer_has_one(kb):
    """Every school, topic and variant: the pupil line names the section of a clause that applies to pupils
    (or everyone) whenever the answer cites one, else the first clause's; no line when nothing is cited."""
    from bot.answering import PUPIL_CITATION, citation_line

    wrong, checked = [], 0
    for school, entries in kb.answers.items():
        for topic, entry in entries.items():
            for variant in (None, *entry.variants):
                answer = kb.answer(school, topic, "pupil", variant=variant)
                line = citation_line(kb, answer)
                if not answer.clauses:
                    if line is not None:
                        wrong.append(f"{school}/{topic}: {line!r} with nothing cited")
                    continue
                checked += 1
                about_pupils = [c for c in answer.clauses if set(c.applies_to) & {"pupils", "everyone"}]
                allowed = {c.section for c in about_pupils} if about_pupils else {answer.clauses[0].section}
                if line not in {PUPIL_CITATION.format(section=section) for section in allowed}:
                    wrong.append(
                        f"{school}/{topic}/{variant or '-'}: {line!r}, expected one of {sorted(allowed)}"
                    )
    assert checked > 100, checked
    assert not wrong, "\n".join(wrong)
