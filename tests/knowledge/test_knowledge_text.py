"""The plain-text rules behind the quote and readability checks."""

from __future__ import annotations

from bot.knowledge.text import (
    emails,
    html_fragments,
    matching_prefix,
    normalise,
    phone_numbers,
    reading_grade,
    sentences,
    shorten,
    urls,
    words,
)


def test_normalise_folds_only_the_documented_noise():
    policy = "Staff  will **not**\tadd \u201cfriends\u201d \u2013 it\u2019s *never*\u00a0OK\n\nat all."
    assert normalise(policy) == 'Staff will not add "friends" - it\'s never OK at all.'


def test_normalise_keeps_everything_else_character_for_character():
    assert normalise("Staff will not.") != normalise("Staff will not,")
    assert normalise("Pupils") != normalise("pupils")
    assert normalise("e-mail") != normalise("email")


def test_matching_prefix_shows_where_a_quote_diverges():
    assert matching_prefix("Staff will always add", "Staff will not add pupils") == "Staff will "
    assert matching_prefix("abc", "abc") == "abc"
    assert matching_prefix("xyz", "abc") == ""


def test_sentences_split_on_full_stops_but_not_on_abbreviations():
    assert sentences("No. Ask a teacher, e.g. Mrs Khan. Stay safe!") == [
        "No.",
        "Ask a teacher, e.g. Mrs Khan.",
        "Stay safe!",
    ]
    assert sentences("") == []


def test_words_count_hyphenated_and_contracted_words_once():
    assert words("Don't worry, tell a grown-up.") == ["Don't", "worry", "tell", "a", "grown-up"]


def test_reading_grade_separates_plain_from_hard_text():
    assert reading_grade("Tell a grown-up you trust. They will help you.") < 5
    assert (
        reading_grade("Unauthorised dissemination of confidential information constitutes misconduct.") > 12
    )


def test_contacts_are_found_in_all_their_spellings():
    text = (
        "See https://example.com/a, www.bbc.co.uk or childline.org.uk/report-remove. Mail head@school.sch.uk."
    )
    assert urls(text) == ["https://example.com/a", "www.bbc.co.uk", "childline.org.uk/report-remove"]
    assert emails(text) == ["head@school.sch.uk"]
    assert phone_numbers("Call 999 or 0800 1111, or 020-7946 0000. You must be 13.") == [
        "999",
        "0800 1111",
        "020-7946 0000",
    ]


def test_html_is_detected():
    assert html_fragments("Click <a href='x'>here</a> &amp; go") == ["<a href='x'>", "</a>", "&amp;"]
    assert html_fragments("Ages 13 < 16 and 3 > 2") == []


def test_shorten_cuts_at_a_word_boundary():
    assert shorten("Staff will not use   personal accounts.", 100) == "Staff will not use personal accounts."
    assert (
        shorten("Staff will not use personal accounts to contact learners.", 20) == "Staff will not use ..."
    )
