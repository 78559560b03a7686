"""``Answer.lead_clause``: the clause a one-line citation names, chosen per audience (issue #15)."""

from __future__ import annotations

from bot.answering import citation_line
from bot.knowledge.models import Answer, Clause, Contact


def clause(clause_id: str, section: str, *applies_to: str) -> Clause:
    return Clause(
        id=clause_id, school="x", section=section, kind="rule", applies_to=applies_to, quote=f"{clause_id}."
    )


STAFF = clause("x.4.staff", "4. Staff use", "staff")
PARENTS = clause("x.5.parents", "5. Parents", "parents")
PUPILS = clause("x.6.pupils", "6. Children use", "pupils")
EVERYONE = clause("x.3.everyone", "3. Expectations", "everyone")


def answer(audience: str, *clauses: Clause) -> Answer:
    return Answer(
        school="x",
        topic="t",
        audience=audience,
        covered=True,
        text="Text.",
        clauses=clauses,
        contact=Contact(key="dsl", title="Designated Safeguarding Lead", names=()),
    )


def test_the_lead_is_the_first_clause_about_the_audience():
    assert answer("pupil", STAFF, PARENTS, PUPILS, EVERYONE).lead_clause == PUPILS
    assert answer("parent", STAFF, PUPILS, PARENTS).lead_clause == PARENTS
    assert answer("staff", PUPILS, STAFF).lead_clause == STAFF


def test_a_clause_for_everyone_is_about_every_audience():
    for audience in ("staff", "parent", "pupil"):
        assert answer(audience, EVERYONE, STAFF, PARENTS, PUPILS).lead_clause == EVERYONE
    assert answer("pupil", STAFF, EVERYONE, PUPILS).lead_clause == EVERYONE


def test_without_a_clause_about_the_audience_the_lead_is_the_first_clause():
    assert answer("pupil", STAFF, PARENTS).lead_clause == STAFF
    assert answer("pupil").lead_clause is None


def test_the_pupil_line_names_the_lead_and_the_payload_keeps_every_clause_in_order():
    pupil = answer("pupil", STAFF, PUPILS)
    assert citation_line(None, pupil) == "This is from our school's rules (6. Children use)."
    assert citation_line(None, answer("pupil")) is None
    # The clause set and order are unchanged: the payload (and the grounding evaluation) see every clause.
    assert [c["id"] for c in pupil.payload()["clauses"]] == ["x.4.staff", "x.6.pupils"]
