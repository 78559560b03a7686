"""The safe replies to a disclosure (replies.yml): KCSIE/NSPCC-shaped, approved contacts only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import textstat
import yaml

from bot.safeguarding.replies import FALLBACK_AUDIENCE, load_replies, safe_reply
from bot.settings import AUDIENCES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HELPLINES = yaml.safe_load((PROJECT_ROOT / "knowledge" / "helplines.yml").read_text(encoding="utf-8"))[
    "helplines"
]

# Honest statements that use secrecy words without promising secrecy.
ALLOWED_SECRECY = [
    "i can't keep this a secret",
    "do not promise the child it will stay secret",
]
SECRECY_PROMISES = [
    r"\bsecret\b",
    r"between (you and me|us)",
    r"\bwon'?t tell\b",
    r"\bwill not tell\b",
    r"\bnot tell anyone\b",
    r"\bconfidential\b",
    r"\bpromise\b",
    r"\bonly (you and i|we) know\b",
    r"\bstays? (here|with me)\b",
]
PHONE = re.compile(r"\b\d[\d ]{1,12}\d\b|\b\d{3}\b")
DOMAIN = re.compile(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)+(?:/[\w/-]*)?", re.IGNORECASE)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def _approved(audience: str) -> tuple[set[str], set[str]]:
    numbers: set[str] = set()
    urls: set[str] = set()
    for helpline in HELPLINES:
        if audience not in helpline.get("audiences", AUDIENCES):
            continue
        numbers.update(helpline.get("numbers", []))
        urls.update(helpline.get("urls", []))
    return numbers, urls


@pytest.fixture(scope="module")
def replies() -> dict[str, str]:
    return load_replies()


def test_every_audience_has_a_static_reply(replies):
    assert set(replies) == set(AUDIENCES)
    for text in replies.values():
        assert text.strip()
        # copied verbatim into domain.yml: no slots, templates or markup to fill in
        assert not re.search(r"[{}\[\]<>]|\$\w", text)


@pytest.mark.parametrize("audience", AUDIENCES)
def test_no_secrecy_promise(replies, audience):
    text = replies[audience].lower().replace("\u2019", "'")
    for allowed in ALLOWED_SECRECY:
        text = text.replace(allowed, "")
    found = [pattern for pattern in SECRECY_PROMISES if re.search(pattern, text)]
    assert found == []


def test_secrecy_check_would_catch_a_promise():
    """The check above is not vacuous."""
    promise = "thank you. i won't tell anyone, this stays between us. it's our secret."
    assert all(re.search(p, promise) for p in (r"\bwon'?t tell\b", r"between (you and me|us)", r"\bsecret\b"))


@pytest.mark.parametrize("audience", AUDIENCES)
def test_no_leading_questions_and_no_policy_quotes(replies, audience):
    text = replies[audience]
    assert "?" not in text
    assert not re.search(r"\b(policy|clause|section)\b", text, re.IGNORECASE)


@pytest.mark.parametrize("audience", AUDIENCES)
def test_only_approved_contacts(replies, audience):
    numbers, urls = _approved(audience)
    text = replies[audience]
    assert "http" not in text.lower() and "www." not in text.lower()
    for found in PHONE.findall(text):
        assert found.strip() in numbers, found
    for found in DOMAIN.findall(text):
        assert found.lower().rstrip("/") in urls, found


def test_pupil_reply_content(replies):
    text = replies["pupil"]
    lower = text.lower()
    assert "thank you" in lower
    assert "not your fault" in lower
    assert "right thing" in lower
    assert "can't keep this a secret" in lower
    assert "safe adult" in lower and "designated safeguarding lead" in lower
    assert "999" in text and "danger" in lower
    assert "childline" in lower and "0800 1111" in text and "free" in lower
    assert "report remove" in lower and "childline.org.uk/report-remove" in lower
    assert "ceop.police.uk" in lower
    assert "0808 800 5000" not in text  # the NSPCC adult helpline is for parents and staff


def test_pupil_reply_reads_at_about_age_nine(replies):
    text = replies["pupil"]
    assert textstat.flesch_kincaid_grade(text) <= 5
    long_sentences = [s for s in _sentences(text) if len(s.split()) > 15]
    assert long_sentences == []
    assert len(text.split("\n\n")) <= 3  # at most three short messages


def test_staff_reply_content(replies):
    lower = replies["staff"].lower()
    assert "designated safeguarding lead" in lower and "now, in person" in lower
    assert "in their own words" in lower
    assert "do not investigate" in lower and "confront" in lower
    assert "passed this to them" in lower and "next message" in lower
    assert "999" in lower and "immediate danger" in lower


def test_parent_reply_content(replies):
    text = replies["parent"]
    lower = text.lower()
    assert "designated safeguarding lead" in lower and "contact you" in lower
    assert "reference" in lower and "phone number or email" in lower
    assert "999" in text and "immediate danger" in lower
    assert "ceop" in lower and "0808 800 5000" in text and "nspcc" in lower


def test_safe_reply_falls_back_to_the_child_safe_text():
    assert safe_reply(None) == safe_reply("robot") == load_replies()[FALLBACK_AUDIENCE] == safe_reply("pupil")


def test_safe_reply_names_the_dsl_for_adults_only():
    facts = yaml.safe_load(
        (PROJECT_ROOT / "knowledge" / "lunsford" / "school.yml").read_text(encoding="utf-8")
    )
    name = facts["dsl"][0]["name"]
    assert name in safe_reply("parent", facts) and name in safe_reply("staff", facts)
    assert safe_reply("pupil", facts) == safe_reply("pupil")
    assert safe_reply("parent", {"dsl": []}) == safe_reply("parent")
    assert safe_reply("parent", {"dsl": [{"name": None}]}) == safe_reply("parent")


def test_load_replies_rejects_a_missing_audience(tmp_path):
    path = tmp_path / "replies.yml"
    path.write_text(yaml.safe_dump({"replies": {"pupil": "x", "staff": "y"}}), encoding="utf-8")
    with pytest.raises(ValueError, match="parent"):
        load_replies(path)


def test_domain_copy_matches_when_present():
    """The lead copies these texts into domain.yml as utter_disclosure_safe; they must not drift apart."""
    domain_path = PROJECT_ROOT / "domain.yml"
    if not domain_path.exists():
        pytest.skip("domain.yml not written yet")
    responses = (yaml.safe_load(domain_path.read_text(encoding="utf-8")) or {}).get("responses", {})
    variants = responses.get("utter_disclosure_safe")
    if not variants:
        pytest.skip("domain.yml has no utter_disclosure_safe yet")
    texts = {v.get("text", "").strip() for v in variants}
    for audience, text in load_replies().items():
        assert text in texts, f"domain.yml utter_disclosure_safe is missing the {audience} text"
