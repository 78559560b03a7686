"""The safe replies to a disclosure (replies.yml): KCSIE/NSPCC-shaped, approved contacts only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import textstat
import yaml

from bot.safeguarding.categories import REPLY_KINDS, STAFF_REPLY_KINDS, kind_for
from bot.safeguarding.replies import (
    FALLBACK_AUDIENCE,
    load_pupil_replies,
    load_replies,
    load_staff_replies,
    safe_reply,
)
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
# The "Talk to a grown-up" button's listening opener: an open invitation, not a leading question.
LISTENING_OPENER = "I'm here. What would you like to tell me?"
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


@pytest.fixture(scope="module")
def pupil_replies() -> dict[str, str]:
    return load_pupil_replies()


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


@pytest.mark.parametrize("kind", REPLY_KINDS)
def test_no_secrecy_promise_to_any_pupil(pupil_replies, kind):
    text = pupil_replies[kind].lower().replace("\u2019", "'")
    for allowed in ALLOWED_SECRECY:
        text = text.replace(allowed, "")
    assert [pattern for pattern in SECRECY_PROMISES if re.search(pattern, text)] == []
    assert not re.search(r"[{}\[\]<>]|\$\w", pupil_replies[kind])  # static text, as in domain.yml


def promises_of_secrecy(text: str) -> list[str]:
    """The secrecy promises in ``text`` (allowed phrasings such as "I can't keep this a secret" removed)."""
    text = text.lower().replace("\u2019", "'")
    for allowed in ALLOWED_SECRECY:
        text = text.replace(allowed, "")
    return [pattern for pattern in SECRECY_PROMISES if re.search(pattern, text)]


def test_secrecy_check_would_catch_a_promise():
    """The check above is not vacuous."""
    promise = "thank you. i won't tell anyone, this stays between us. it's our secret."
    assert all(re.search(p, promise) for p in (r"\bwon'?t tell\b", r"between (you and me|us)", r"\bsecret\b"))


@pytest.mark.parametrize("audience", AUDIENCES)
def test_no_leading_questions_and_no_policy_quotes(replies, audience):
    text = replies[audience]
    assert "?" not in text
    assert not re.search(r"\b(policy|clause|section)\b", text, re.IGNORECASE)


@pytest.mark.parametrize("kind", REPLY_KINDS)
def test_no_leading_questions_or_policy_quotes_for_pupils(pupil_replies, kind):
    text = pupil_replies[kind]
    if kind == "listen":
        assert text.startswith(LISTENING_OPENER + "\n\n")
        text = text.removeprefix(LISTENING_OPENER)
    assert "?" not in text
    assert not re.search(r"\b(policy|clause|section)\b", text, re.IGNORECASE)


def _check_contacts(text: str, audience: str) -> None:
    numbers, urls = _approved(audience)
    assert "http" not in text.lower() and "www." not in text.lower()
    for found in PHONE.findall(text):
        assert found.strip() in numbers, found
    for found in DOMAIN.findall(text):
        assert found.lower().rstrip("/") in urls, found


@pytest.mark.parametrize("audience", AUDIENCES)
def test_only_approved_contacts(replies, audience):
    _check_contacts(replies[audience], audience)


@pytest.mark.parametrize("kind", REPLY_KINDS)
def test_only_approved_contacts_for_pupils(pupil_replies, kind):
    _check_contacts(pupil_replies[kind], "pupil")


# Every reply to a disclosure (not the button's opener, where nothing has been said yet).
DISCLOSURE_KINDS = [kind for kind in REPLY_KINDS if kind != "listen"]
IMAGE_ADVICE = ("report remove", "childline.org.uk/report-remove", "nude")


@pytest.mark.parametrize("kind", DISCLOSURE_KINDS)
def test_every_pupil_reply_to_a_disclosure_has_the_core(pupil_replies, kind):
    text = pupil_replies[kind]
    lower = text.lower()
    assert "thank you for telling me" in lower and "right thing" in lower
    assert "can't keep this a secret" in lower
    assert "safe adult" in lower and "designated safeguarding lead" in lower
    assert "999" in text and "danger" in lower
    assert "childline" in lower and "0800 1111" in text and "free" in lower
    assert "0808 800 5000" not in text  # the NSPCC adult helpline is for parents and staff
    assert "sexual" not in lower  # issue #15: not shown to a child who did not raise it


def test_pupil_reply_content(replies, pupil_replies):
    """The generic reply (also the one sent when the action server is down) assumes nothing was said about
    images: the image advice is in the images reply only (issue #15)."""
    text = replies["pupil"]
    lower = text.lower()
    assert text == pupil_replies["generic"]
    assert "not your fault" in lower
    assert not [advice for advice in IMAGE_ADVICE if advice in lower]
    assert "ceop" not in lower


@pytest.mark.parametrize("kind", REPLY_KINDS)
def test_image_advice_only_where_images_are_involved(pupil_replies, kind):
    lower = pupil_replies[kind].lower()
    found = [advice for advice in IMAGE_ADVICE if advice in lower]
    assert found == (list(IMAGE_ADVICE) if kind == "images" else [])
    assert ("ceop.police.uk" in lower) == (kind in ("images", "grooming"))


def _paragraphs(text: str) -> list[str]:
    return text.split("\n\n")


def test_bullying_reply(pupil_replies):
    lower = pupil_replies["bullying"].lower()
    assert "not your fault" in lower and "block" in lower and "grown-up you trust" in lower


def test_self_harm_reply_leads_with_childline_and_999_and_stays_gentle(pupil_replies):
    first = _paragraphs(pupil_replies["self_harm"])[0]
    assert first.startswith("If you might hurt yourself") and "999" in first and "0800 1111" in first
    lower = pupil_replies["self_harm"].lower()
    assert "not alone" in lower and "you matter" in lower
    assert "fault" not in lower  # nothing to blame: gentle


@pytest.mark.parametrize("kind", ["danger_at_home", "danger_now"])
def test_where_a_child_may_be_in_danger_now_999_comes_first(pupil_replies, kind):
    assert pupil_replies[kind].startswith("If you are in danger now, call 999.")
    if kind == "danger_at_home":
        assert "always be safe and cared for" in pupil_replies[kind]


def test_radicalisation_reply(pupil_replies):
    lower = pupil_replies["radicalisation"].lower()
    assert "not in trouble" in lower and "do not share" in lower and "grown-up you trust" in lower


def test_the_button_opens_by_listening_and_assumes_nothing_happened(pupil_replies):
    text = pupil_replies["listen"]
    lower = text.lower()
    assert text.startswith(LISTENING_OPENER)
    assert "fault" not in lower and "happened" not in lower and "thank you for telling" not in lower
    assert "nude" not in lower and "sexual" not in lower
    # Still honest about what happens (no secrecy promised) and how to get help now.
    assert "safe adult at school" in lower
    assert "999" in text and "0800 1111" in text


@pytest.mark.parametrize("kind", REPLY_KINDS)
def test_pupil_reply_reads_at_about_age_nine(pupil_replies, kind):
    text = pupil_replies[kind]
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


def test_load_pupil_replies_rejects_a_missing_kind(tmp_path):
    path = tmp_path / "replies.yml"
    kinds = {kind: "x" for kind in REPLY_KINDS if kind not in ("generic", "listen")}
    path.write_text(
        yaml.safe_dump({"replies": {a: "x" for a in AUDIENCES}, "pupil_kinds": kinds}), encoding="utf-8"
    )
    with pytest.raises(ValueError, match="listen"):
        load_pupil_replies(path)


def _condition(variant: dict) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((c["name"], c["value"]) for c in variant.get("condition") or []))


def test_domain_copy_matches():
    """domain.yml's utter_disclosure_safe carries exactly these texts, each under the right condition: one per
    adult audience, one per pupil kind (audience pupil and disclosure_kind), and the generic pupil text for
    an unknown audience or kind. Nothing else, so the texts live in replies.yml only."""
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
    variants = domain["responses"]["utter_disclosure_safe"]
    found = {_condition(v): v.get("text", "").strip() for v in variants}
    assert len(found) == len(variants)  # no condition twice: Rasa would pick one at random
    replies = load_replies()
    expected = {
        **{(("audience", "staff"), ("disclosure_kind", kind)): replies["staff"] for kind in REPLY_KINDS},
        (("audience", "staff"), ("disclosure_kind", "allegation")): load_staff_replies()["allegation"],
        (("audience", "parent"),): replies["parent"],
        (): replies["pupil"],
        **{
            (("audience", "pupil"), ("disclosure_kind", kind)): text
            for kind, text in load_pupil_replies().items()
        },
    }
    assert found == expected
    slot = domain["slots"]["disclosure_kind"]
    assert set(slot["values"]) == set(REPLY_KINDS) | set(STAFF_REPLY_KINDS)
    assert slot["initial_value"] == "generic"
    assert slot["influence_conversation"] is False


# --- issue #15, point 5: a concern about an adult in a position of trust (KCSIE Part 4) -----------------


def test_staff_allegation_reply_follows_kcsie_part_4():
    text = load_staff_replies()["allegation"]
    lowered = text.lower()
    assert "tell the headteacher now" in lowered
    assert "chair of governors if it is about the headteacher" in lowered
    assert "do not investigate" in lowered
    assert "do not tell or confront the adult" in lowered
    assert "lado" in lowered and "999" in text
    assert not re.search(r"[{}\[\]<>]|\$\w", text)  # static text, as in domain.yml
    _check_contacts(text, "staff")
    assert promises_of_secrecy(text) == []


def test_the_allegation_reply_goes_to_staff_only():
    categories = ("adult_boundary_breach", "allegation_about_adult")
    assert kind_for("staff", categories) == "allegation"
    assert kind_for("staff", ("bullying",)) == "generic"
    assert kind_for("parent", categories) == "generic"
    assert kind_for("pupil", categories) == "grooming"  # a child telling about a teacher: the grooming reply
    assert safe_reply("staff", kind="allegation") == load_staff_replies()["allegation"]
    assert safe_reply("parent", kind="allegation") == load_replies()["parent"]


def test_load_staff_replies_rejects_a_missing_kind(tmp_path):
    path = tmp_path / "replies.yml"
    path.write_text("replies: {pupil: a, staff: b, parent: c}\nstaff_kinds: {}\n")
    with pytest.raises(ValueError, match="allegation"):
        load_staff_replies.__wrapped__(path)
