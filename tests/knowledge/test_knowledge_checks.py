"""``check_knowledge`` (``kb.check()``): each broken rule is reported naming the file, field and fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.knowledge import Problem, check_knowledge

OAK_ANSWERS = "knowledge/oakfield/answers.yml"
OAK_CLAUSES = "knowledge/oakfield/clauses.yml"
BIRCH_ANSWERS = "knowledge/birchwood/answers.yml"


def problems(path: Path) -> list[Problem]:
    return check_knowledge(path)[1]


def only_problem(path: Path) -> Problem:
    found = problems(path)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def set_text(edit_yaml, topic: str, audience: str, text: str, school: str = "oakfield") -> None:
    edit_yaml(f"{school}/answers.yml", lambda d: d["answers"][topic].update({audience: text}))


def test_the_valid_tree_has_no_problems(knowledge_dir):
    assert problems(knowledge_dir) == []


# --- quotes ------------------------------------------------------------------------------------------------


def test_quote_check_sees_through_typography_but_the_fixture_really_has_it(knowledge_dir):
    # The fixture passes only because of folding: prove the policy text differs from the quotes as written.
    policy = (knowledge_dir / "oakfield" / "policy.txt").read_text(encoding="utf-8")
    for raw in (
        "**not**",
        "\u201cfriends\u201d",
        "families;\tschool",
        "DSL \u2013 Priya",
        "Pupils\u00a0should",
    ):
        assert raw in policy
    assert problems(knowledge_dir) == []


def test_broken_quote_names_the_clause_and_where_it_differs(knowledge_dir, edit_yaml):
    edit_yaml(
        "oakfield/clauses.yml",
        lambda d: d["clauses"][3].update(quote="Pupils should never give their passwords to anyone."),
    )
    problem = only_problem(knowledge_dir)
    assert (problem.file, problem.field) == (OAK_CLAUSES, "clauses[oakfield.3.passwords].quote")
    assert "not found verbatim in policy.txt" in problem.message
    assert 'matches up to "...Pupils should never " then differs at "give their passwords' in problem.message


def test_quotes_compare_character_for_character_beyond_the_folding(knowledge_dir, edit_yaml):
    # Single quotes are not double quotes, and a lower-case letter is not a capital.
    edit_yaml(
        "oakfield/clauses.yml",
        lambda d: d["clauses"][0].update(
            quote="Staff will not add current pupils as 'friends' on personal social media accounts."
        ),
    )
    edit_yaml(
        "oakfield/clauses.yml",
        lambda d: d["clauses"][3].update(quote="pupils should never share their passwords with anyone."),
    )
    assert [p.field for p in problems(knowledge_dir)] == [
        "clauses[oakfield.2.no-friends].quote",
        "clauses[oakfield.3.passwords].quote",
    ]


# --- clauses -----------------------------------------------------------------------------------------------


def test_clause_ids_kinds_and_audiences_are_checked(knowledge_dir, edit_yaml):
    def break_clauses(data):
        data["clauses"][1]["id"] = "oakfield.2.no-friends"  # duplicate
        data["clauses"][2]["id"] = "oak.3.tell-dsl"  # wrong prefix
        data["clauses"][2]["kind"] = "guideline"
        data["clauses"][3]["applies_to"] = ["pupil"]

    edit_yaml("oakfield/clauses.yml", break_clauses)
    edit_yaml(
        "oakfield/answers.yml",
        lambda d: (
            d["answers"]["staff-befriend-pupils"]["variants"]["whatsapp"].update(
                clauses=["oakfield.2.no-friends"]
            ),
            d["answers"]["who-to-contact"].update(clauses=["oak.3.tell-dsl"]),
        ),
    )
    found = {(p.file, p.field, p.message) for p in problems(knowledge_dir)}
    assert (OAK_CLAUSES, "clauses[oakfield.2.no-friends].id", "duplicate id (2 clauses use it)") in found
    assert (
        OAK_CLAUSES,
        "clauses[oak.3.tell-dsl].id",
        "must start with the school slug: 'oakfield.'",
    ) in found
    fields = {(file, field) for file, field, _ in found}
    assert (OAK_CLAUSES, "clauses[oak.3.tell-dsl].kind") in fields
    assert (OAK_CLAUSES, "clauses[oakfield.3.passwords].applies_to") in fields
    assert len(found) == 4


# --- citations ---------------------------------------------------------------------------------------------


def test_unknown_cited_clause_is_reported(knowledge_dir, edit_yaml):
    edit_yaml(
        "oakfield/answers.yml", lambda d: d["answers"]["who-to-contact"]["clauses"].append("oakfield.9.nope")
    )
    problem = only_problem(knowledge_dir)
    assert (problem.file, problem.field) == (OAK_ANSWERS, "answers.who-to-contact.clauses")
    assert problem.message == "'oakfield.9.nope' is not a clause id in oakfield/clauses.yml"


def test_citing_another_schools_clause_is_reported(knowledge_dir, edit_yaml):
    edit_yaml(
        "birchwood/answers.yml",
        lambda d: d["answers"]["staff-befriend-pupils"]["clauses"].append("oakfield.2.no-friends"),
    )
    problem = only_problem(knowledge_dir)
    assert (problem.file, problem.field) == (BIRCH_ANSWERS, "answers.staff-befriend-pupils.clauses")
    assert "oakfield's clause: never borrow another school's rule" in problem.message


def test_citing_another_schools_clause_in_a_variant_is_reported(knowledge_dir, edit_yaml):
    edit_yaml(
        "oakfield/answers.yml",
        lambda d: d["answers"]["staff-befriend-pupils"]["variants"]["whatsapp"].update(
            clauses=["birchwood.1.1.no-friend-requests"]
        ),
    )
    problem = only_problem(knowledge_dir)
    assert problem.field == "answers.staff-befriend-pupils.variants.whatsapp.clauses"
    assert "birchwood's clause" in problem.message


# --- topic coverage ----------------------------------------------------------------------------------------


def test_missing_topic_entry_is_reported(knowledge_dir, edit_yaml):
    edit_yaml("birchwood/answers.yml", lambda d: d["answers"].pop("minimum-age"))
    problem = only_problem(knowledge_dir)
    assert (problem.file, problem.field) == (BIRCH_ANSWERS, "answers.minimum-age")
    assert problem.message.startswith("missing")


def test_answer_for_unknown_topic_is_reported(knowledge_dir, edit_yaml):
    edit_yaml("birchwood/answers.yml", lambda d: d["answers"].update({"age-limits": {"covered": False}}))
    problem = only_problem(knowledge_dir)
    assert (problem.file, problem.field, problem.message) == (
        BIRCH_ANSWERS,
        "answers.age-limits",
        "not a topic in topics.yml",
    )


def test_missing_pupil_text_is_reported_once_by_the_check(knowledge_dir, edit_yaml):
    edit_yaml("oakfield/answers.yml", lambda d: d["answers"]["who-to-contact"].pop("pupil"))
    # The dropped entry must not also be reported as a missing topic: one fault, one message.
    assert [str(p) for p in problems(knowledge_dir)] == [
        f"{OAK_ANSWERS}: answers.who-to-contact.pupil: missing"
    ]


def test_ask_must_name_a_contact_key(knowledge_dir, edit_yaml):
    edit_yaml("oakfield/answers.yml", lambda d: d["answers"]["minimum-age"].update(ask="caretaker"))
    problem = only_problem(knowledge_dir)
    assert (problem.file, problem.field) == (OAK_ANSWERS, "answers.minimum-age.ask")
    assert "'caretaker' is not one of dsl, deputy_dsls, esafety_lead, headteacher, office" in problem.message


def test_variant_key_must_be_an_entity_value(knowledge_dir, edit_yaml):
    def rename(data):
        variants = data["answers"]["staff-befriend-pupils"]["variants"]
        variants["whatsap"] = variants.pop("whatsapp")

    edit_yaml("oakfield/answers.yml", rename)
    problem = only_problem(knowledge_dir)
    assert problem.field == "answers.staff-befriend-pupils.variants.whatsap"
    assert "not an entity value in entities.yml" in problem.message


# --- topics.yml --------------------------------------------------------------------------------------------


def test_topic_ids_unique_and_related_ids_exist(knowledge_dir, edit_yaml):
    def break_topics(data):
        data["topics"][1]["related"] = ["who-to-contact", "age-limits"]
        data["topics"][2]["id"] = "minimum-age"
        data["topics"][0]["asked_by"] = ["staff", "governor"]

    edit_yaml("topics.yml", break_topics)
    found = {(p.file, p.field) for p in problems(knowledge_dir)}
    assert ("knowledge/topics.yml", "topics[minimum-age].related") in found
    assert ("knowledge/topics.yml", "topics[minimum-age].id") in found
    assert ("knowledge/topics.yml", "topics[staff-befriend-pupils].asked_by") in found


# --- pupil texts -------------------------------------------------------------------------------------------


def test_hard_pupil_text_fails_the_reading_grade(knowledge_dir, edit_yaml):
    set_text(
        edit_yaml,
        "staff-befriend-pupils",
        "pupil",
        "Unauthorised communication constitutes professional misconduct. "
        "Educators maintain appropriate boundaries.",
    )
    problem = only_problem(knowledge_dir)
    assert (problem.file, problem.field) == (OAK_ANSWERS, "answers.staff-befriend-pupils.pupil")
    assert problem.message.startswith("reading grade ")
    assert "at most 5.0" in problem.message


def test_long_pupil_sentence_is_reported(knowledge_dir, edit_yaml):
    long_sentence = (
        "If you see a post that makes you sad or scared you can show it to a grown-up you trust at school."
    )
    set_text(edit_yaml, "who-to-contact", "pupil", f"Tell us. {long_sentence}")
    messages = [p.message for p in problems(knowledge_dir) if p.field == "answers.who-to-contact.pupil"]
    assert any(message.startswith("sentence 2 has 22 words (at most 15)") for message in messages)


def test_too_many_pupil_words_is_reported(knowledge_dir, edit_yaml):
    set_text(edit_yaml, "who-to-contact", "pupil", "Be kind to your friends online. " * 11)
    messages = [p.message for p in problems(knowledge_dir)]
    assert "66 words (at most 60 for pupils)" in messages


@pytest.mark.parametrize(
    ("text", "contact"),
    [
        ("Look at www.example.com for help.", "www.example.com"),
        ("Look at https://kids-help.org/chat for help.", "https://kids-help.org/chat"),
        ("Email help@oakfield.sch.uk if you are sad.", "help@oakfield.sch.uk"),
        ("Ring 020 7946 0000 if you are sad.", "020 7946 0000"),
        ("Ring 0808 800 5000 if you are sad.", "0808 800 5000"),  # the NSPCC line is for adults
    ],
)
def test_pupil_text_with_a_non_helpline_contact_is_reported(knowledge_dir, edit_yaml, text, contact):
    set_text(edit_yaml, "who-to-contact", "pupil", text)
    problem = only_problem(knowledge_dir)
    assert (problem.file, problem.field) == (OAK_ANSWERS, "answers.who-to-contact.pupil")
    assert problem.message == f"mentions {contact!r}: pupil texts may only give contacts in helplines.yml"


def test_pupil_text_may_give_the_helplines(knowledge_dir, edit_yaml):
    set_text(
        edit_yaml,
        "who-to-contact",
        "pupil",
        "Tell a grown-up. Call 999 if you are in danger. Call Childline on 0800 1111. "
        "Or go to www.childline.org.uk.",
    )
    assert problems(knowledge_dir) == []


def test_variant_pupil_text_is_checked_too(knowledge_dir, edit_yaml):
    edit_yaml(
        "oakfield/answers.yml",
        lambda d: d["answers"]["staff-befriend-pupils"]["variants"]["whatsapp"].update(
            pupil="Visit www.example.com."
        ),
    )
    found = [(p.field, p.message) for p in problems(knowledge_dir)]
    assert (
        "answers.staff-befriend-pupils.variants.whatsapp.pupil",
        "mentions 'www.example.com': pupil texts may only give contacts in helplines.yml",
    ) in found


# --- staff and parent texts --------------------------------------------------------------------------------


def test_long_adult_text_is_reported(knowledge_dir, edit_yaml):
    set_text(edit_yaml, "who-to-contact", "parent", "Tell the DSL. " * 5)
    set_text(
        edit_yaml, "who-to-contact", "staff", "Tell the Designated Safeguarding Lead as soon as you can " * 9
    )
    found = [(p.field, p.message) for p in problems(knowledge_dir)]
    assert found == [
        ("answers.who-to-contact.staff", "90 words (at most 80)"),
        ("answers.who-to-contact.parent", "5 sentences (at most 4): keep answers short"),
    ]


def test_html_in_a_text_is_reported(knowledge_dir, edit_yaml):
    set_text(edit_yaml, "who-to-contact", "staff", "Tell the <b>DSL</b>, Priya Shah.")
    found = [(p.field, p.message) for p in problems(knowledge_dir)]
    assert found == [
        ("answers.who-to-contact.staff", "contains HTML '<b>': texts are plain"),
        ("answers.who-to-contact.staff", "contains HTML '</b>': texts are plain"),
    ]


# --- one fault, one message --------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", ["topics.yml", "oakfield/clauses.yml", "oakfield/answers.yml"])
def test_an_unreadable_file_is_reported_once_not_for_every_answer(knowledge_dir, relative):
    (knowledge_dir / relative).write_text("key: [unclosed\n")
    found = problems(knowledge_dir)
    assert [(p.file, p.field) for p in found] == [(f"knowledge/{relative}", "")]
    assert found[0].message.startswith("not valid YAML")
