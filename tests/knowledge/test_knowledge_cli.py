"""``schoolguide knowledge check`` and ``schoolguide knowledge coverage`` through ``bot.cli.main``."""

from __future__ import annotations

import csv
import io

import pytest

import bot.cli


@pytest.fixture
def schoolguide(monkeypatch):
    """``bot.cli.main`` with only the knowledge commands registered (other areas have their own tests)."""
    monkeypatch.setattr(bot.cli, "COMMAND_MODULES", ("bot.knowledge.cli",))
    return bot.cli.main


def test_check_passes_on_a_clean_tree(schoolguide, knowledge_env, capsys):
    assert schoolguide(["knowledge", "check"]) == 0
    assert capsys.readouterr().out.strip() == (
        "Knowledge OK: 2 schools, 3 topics, 5 clauses, 6 answers; no problems."
    )


def test_check_fails_and_groups_problems_by_file(schoolguide, knowledge_env, edit_yaml, capsys):
    edit_yaml("birchwood/answers.yml", lambda d: d["answers"].pop("minimum-age"))
    edit_yaml("oakfield/clauses.yml", lambda d: d["clauses"][3].update(quote="Pupils may share passwords."))
    edit_yaml("oakfield/answers.yml", lambda d: d["answers"]["minimum-age"].update(ask="caretaker"))

    assert schoolguide(["knowledge", "check"]) == 1

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "knowledge/birchwood/answers.yml"
    assert lines[1].startswith("  answers.minimum-age: missing")
    assert "knowledge/oakfield/answers.yml" in lines
    assert "knowledge/oakfield/clauses.yml" in lines
    assert any(line.startswith("  clauses[oakfield.3.passwords].quote: not found") for line in lines)
    assert lines[-1] == "3 problems in 3 files (birchwood 1, oakfield 2)."


def test_check_reports_structural_problems_too(schoolguide, knowledge_env, edit_yaml, capsys):
    edit_yaml("topics.yml", lambda d: d["topics"][0].update(tilte="typo"))
    assert schoolguide(["knowledge", "check"]) == 1
    out = capsys.readouterr().out
    assert "knowledge/topics.yml\n  topics[staff-befriend-pupils].tilte: unknown key" in out
    assert out.strip().endswith("1 problem in 1 file (shared files 1).")


def test_check_takes_the_folder_as_an_option(schoolguide, knowledge_dir, tmp_path, capsys):
    assert schoolguide(["knowledge", "check", "--knowledge-dir", str(knowledge_dir)]) == 0
    assert schoolguide(["knowledge", "check", "--knowledge-dir", str(tmp_path / "missing")]) == 1
    assert "knowledge directory not found" in capsys.readouterr().out


def test_coverage_prints_the_topic_by_school_matrix(schoolguide, knowledge_env, capsys):
    assert schoolguide(["knowledge", "coverage"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Coverage of 3 topics in 2 policies"
    assert lines[1].startswith("Legend: \u2713 answered")
    header = next(line for line in lines if line.startswith("Topic"))
    assert header.split() == ["Topic", "birchwood", "oakfield"]
    rows = {
        line[:40].strip(): line[40:].split()
        for line in lines
        if line[:40].strip()
        in {"Staff and current pupils on social media", "Minimum ages for apps", "Who to contact", "Answered"}
    }
    assert rows == {
        "Staff and current pupils on social media": ["\u2713", "\u2713+"],
        "Minimum ages for apps": ["\u00b7", "\u00b7"],
        "Who to contact": ["\u00b7", "\u2713"],
        "Answered": ["1/3", "2/3"],
    }
    assert max(len(line) for line in lines) <= 120


def test_coverage_marks_missing_entries(schoolguide, knowledge_env, edit_yaml, capsys):
    edit_yaml("birchwood/answers.yml", lambda d: d["answers"].pop("who-to-contact"))
    assert schoolguide(["knowledge", "coverage", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["topic", "title", "birchwood", "oakfield"]
    assert rows[1] == [
        "staff-befriend-pupils",
        "Staff and current pupils on social media",
        "answered",
        "answered",
    ]
    assert rows[2] == ["minimum-age", "Minimum ages for apps", "not covered", "not covered"]
    assert rows[3] == ["who-to-contact", "Who to contact", "missing", "answered"]
    assert rows[4] == ["", "answered", "1", "2"]


def test_coverage_as_markdown(schoolguide, knowledge_env, capsys):
    assert schoolguide(["knowledge", "coverage", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| Topic | birchwood | oakfield |" in out
    assert "| Who to contact | \u00b7 | \u2713 |" in out
    assert "| **Answered** | 1/3 | 2/3 |" in out


def test_knowledge_without_an_action_shows_help(schoolguide, capsys):
    assert schoolguide(["knowledge"]) == 2
    assert "check" in capsys.readouterr().out
