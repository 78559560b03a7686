"""Loading the clause base: a valid tree loads as frozen values; bad files fail naming file and field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.knowledge import KnowledgeError, Person, get_knowledge, load_knowledge, read_knowledge


def _error(path: Path) -> str:
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(path)
    return str(caught.value)


def test_valid_tree_loads_every_file(knowledge_dir):
    kb = load_knowledge(knowledge_dir)

    assert list(kb.topics) == ["staff-befriend-pupils", "minimum-age", "who-to-contact"]
    assert kb.slugs == ("birchwood", "oakfield")
    oakfield = kb.schools["oakfield"]
    assert oakfield.name == "Oakfield Primary School"
    assert oakfield.dsl == (Person(name="Priya Shah", role="Designated Safeguarding Lead"),)
    assert oakfield.headteacher == Person(name="Tom Reed", role="Headteacher")
    assert oakfield.review.next_review == "September 2025"
    assert "Priya Shah" in oakfield.policy_text
    assert [clause.id for clause in kb.clauses["oakfield"]][:2] == [
        "oakfield.2.no-friends",
        "oakfield.2.no-whatsapp",
    ]
    entry = kb.answers["oakfield"]["staff-befriend-pupils"]
    assert entry.covered and entry.clauses == ("oakfield.2.no-friends",)
    assert set(entry.texts) == {"staff", "parent", "pupil"}
    assert set(entry.variants) == {"whatsapp"}
    assert kb.answers["birchwood"]["minimum-age"].covered is False
    assert [helpline.id for helpline in kb.helplines] == ["emergency", "childline", "nspcc"]
    assert "whatsapp" in kb.entities["platform"]


def test_loaded_values_are_frozen(knowledge_dir):
    kb = load_knowledge(knowledge_dir)
    with pytest.raises(dataclasses.FrozenInstanceError):
        kb.schools["oakfield"].name = "Elsewhere"  # type: ignore[misc]
    with pytest.raises(TypeError):
        kb.answers["oakfield"]["staff-befriend-pupils"].texts["pupil"] = "changed"  # type: ignore[index]


def test_default_path_comes_from_settings(knowledge_env):
    kb = get_knowledge()
    assert kb.root == knowledge_env
    assert get_knowledge() is kb  # loaded once per process


@pytest.mark.parametrize(
    ("relative", "change", "field"),
    [
        (
            "oakfield/answers.yml",
            lambda d: d["answers"]["staff-befriend-pupils"].update(pupill="typo"),
            "answers.staff-befriend-pupils.pupill: unknown key",
        ),
        (
            "oakfield/answers.yml",
            lambda d: d["answers"]["minimum-age"].update(aks="dsl"),
            "answers.minimum-age.aks: unknown key",
        ),
        (
            "oakfield/answers.yml",
            lambda d: d["answers"]["staff-befriend-pupils"]["variants"]["whatsapp"].update(note="x"),
            "answers.staff-befriend-pupils.variants.whatsapp.note: unknown key",
        ),
        (
            "oakfield/clauses.yml",
            lambda d: d["clauses"][0].update(qoute="typo"),
            "clauses[oakfield.2.no-friends].qoute: unknown key",
        ),
        ("oakfield/school.yml", lambda d: d.update(dsl_name="Priya"), "dsl_name: unknown key"),
        ("oakfield/school.yml", lambda d: d["dsl"][0].update(phone="01234"), "dsl[0].phone: unknown key"),
        (
            "topics.yml",
            lambda d: d["topics"][0].update(tilte="x"),
            "topics[staff-befriend-pupils].tilte: unknown key",
        ),
        (
            "helplines.yml",
            lambda d: d["helplines"][0].update(email="x@y.z"),
            "helplines[emergency].email: unknown key",
        ),
    ],
)
def test_unknown_key_is_an_error_naming_file_and_field(knowledge_dir, edit_yaml, relative, change, field):
    edit_yaml(relative, change)
    assert f"knowledge/{relative}: {field}" in _error(knowledge_dir)


def test_missing_pupil_text_is_an_error_naming_file_and_field(knowledge_dir, edit_yaml):
    edit_yaml("oakfield/answers.yml", lambda d: d["answers"]["who-to-contact"].pop("pupil"))
    assert _error(knowledge_dir) == "knowledge/oakfield/answers.yml: answers.who-to-contact.pupil: missing"


def test_missing_variant_text_is_an_error(knowledge_dir, edit_yaml):
    edit_yaml(
        "oakfield/answers.yml",
        lambda d: d["answers"]["staff-befriend-pupils"]["variants"]["whatsapp"].pop("parent"),
    )
    assert "answers.staff-befriend-pupils.variants.whatsapp.parent: missing" in _error(knowledge_dir)


def test_covered_answer_must_cite_at_least_one_clause(knowledge_dir, edit_yaml):
    edit_yaml("oakfield/answers.yml", lambda d: d["answers"]["who-to-contact"].update(clauses=[]))
    assert "answers.who-to-contact.clauses: must list at least one value" in _error(knowledge_dir)


def test_not_covered_answer_cannot_carry_texts(knowledge_dir, edit_yaml):
    edit_yaml("birchwood/answers.yml", lambda d: d["answers"]["minimum-age"].update(pupil="You must be 13."))
    assert "knowledge/birchwood/answers.yml: answers.minimum-age.pupil: not allowed with covered: false" in (
        _error(knowledge_dir)
    )


def test_duplicate_yaml_key_is_an_error(knowledge_dir):
    path = knowledge_dir / "birchwood" / "answers.yml"
    path.write_text(path.read_text() + "  minimum-age:\n    covered: false\n")
    message = _error(knowledge_dir)
    assert "knowledge/birchwood/answers.yml: not valid YAML: duplicate key 'minimum-age'" in message


def test_invalid_yaml_and_missing_files_are_reported_not_raised_raw(knowledge_dir):
    (knowledge_dir / "oakfield" / "clauses.yml").write_text("school: oakfield\nclauses: [unclosed\n")
    (knowledge_dir / "birchwood" / "policy.txt").unlink()
    message = _error(knowledge_dir)
    assert "knowledge/oakfield/clauses.yml: not valid YAML" in message
    assert "knowledge/birchwood/policy.txt: file missing" in message


@pytest.mark.parametrize(
    ("relative", "change", "expected"),
    [
        ("oakfield/school.yml", lambda d: d.update(slug="elsewhere"), "school.yml: slug: is 'elsewhere'"),
        (
            "oakfield/clauses.yml",
            lambda d: d.update(school="birchwood"),
            "clauses.yml: school: is 'birchwood'",
        ),
        ("oakfield/school.yml", lambda d: d.update(kind="college"), "kind: 'college' is not one of"),
        (
            "oakfield/school.yml",
            lambda d: d.update(default_contact="caretaker"),
            "default_contact: 'caretaker'",
        ),
        ("oakfield/school.yml", lambda d: d.pop("esafety_lead"), "school.yml: esafety_lead: missing"),
        ("oakfield/school.yml", lambda d: d.update(dsl="Priya Shah"), "school.yml: dsl: must be a list"),
        (
            "oakfield/clauses.yml",
            lambda d: d["clauses"][1].update(quote=""),
            "no-whatsapp].quote: must not be",
        ),
        (
            "oakfield/answers.yml",
            lambda d: d["answers"]["minimum-age"].update(covered="no"),
            "covered: must be",
        ),
        ("topics.yml", lambda d: d["topics"][0].update(related="x"), "related: must be a list"),
    ],
)
def test_wrong_shapes_are_errors(knowledge_dir, edit_yaml, relative, change, expected):
    edit_yaml(relative, change)
    assert expected in _error(knowledge_dir)


def test_every_structural_problem_is_reported_in_one_go(knowledge_dir, edit_yaml):
    edit_yaml("oakfield/answers.yml", lambda d: d["answers"]["who-to-contact"].pop("pupil"))
    edit_yaml("birchwood/clauses.yml", lambda d: d["clauses"][0].pop("section"))
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(knowledge_dir)
    assert [(p.file, p.field) for p in caught.value.problems] == [
        ("knowledge/birchwood/clauses.yml", "clauses[birchwood.1.1.no-friend-requests].section"),
        ("knowledge/oakfield/answers.yml", "answers.who-to-contact.pupil"),
    ]


def test_read_knowledge_never_raises_and_keeps_what_it_can(knowledge_dir, edit_yaml):
    edit_yaml("oakfield/answers.yml", lambda d: d["answers"]["who-to-contact"].pop("pupil"))
    (knowledge_dir / "birchwood" / "clauses.yml").write_text("clauses: {")
    kb, problems = read_knowledge(knowledge_dir)
    assert [(p.file, p.field) for p in problems] == [
        ("knowledge/birchwood/clauses.yml", ""),
        ("knowledge/oakfield/answers.yml", "answers.who-to-contact.pupil"),
    ]
    # The faulty entry is kept (so the checks do not also call it missing); the rest loads as usual.
    assert kb.answers["oakfield"]["who-to-contact"].texts["pupil"] == ""
    assert kb.answers["oakfield"]["staff-befriend-pupils"].texts["pupil"].startswith("No.")
    assert kb.clauses["birchwood"] == ()


def test_missing_directory_is_a_knowledge_error(tmp_path):
    assert "knowledge directory not found" in _error(tmp_path / "nowhere")
