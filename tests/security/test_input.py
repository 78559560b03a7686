"""Findings 4 and 5 at the parser: what a client posts is bounded in size and depth before it is parsed,
parsing never raises (RecursionError gave a 500), and message text is cleaned of what breaks the NLU
pipeline."""

from __future__ import annotations

import json

import pytest

from bot.channels.validation import (
    MAX_JSON_DEPTH,
    MAX_METADATA_BYTES,
    Rejection,
    clean_text,
    nesting_too_deep,
    parse_json,
    read_message,
)

UNBOUNDED = 10**9


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 500, 100_000])
def test_deep_json_is_refused_without_recursing(depth):
    raw = b'{"message": "hi", "metadata": {"a": ' + b'[{"b": ' * depth + b"1" + b"}]" * depth + b"}}"
    result = parse_json(raw, UNBOUNDED)
    assert result == Rejection(400, f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)")


def test_brackets_inside_strings_do_not_count_as_nesting():
    raw = json.dumps({"message": '[[[[[[[[[[{{{{{{{{ \\" ]]]] " [[[[[[', "sender": "a"}).encode()
    assert not nesting_too_deep(raw)
    assert parse_json(raw, UNBOUNDED)["sender"] == "a"


def test_nesting_at_the_bound_is_accepted():
    raw = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert not nesting_too_deep(raw)
    assert parse_json(raw, UNBOUNDED) == json.loads(raw)
    assert nesting_too_deep(b"[" + raw + b"]")


def test_the_size_is_checked_before_parsing():
    assert parse_json(b"x" * 2049, 2048) == Rejection(413, "the body is too large (at most 2 KB)")


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b'{"a": NaN', b""])
def test_bodies_that_are_not_json_are_a_400(raw):
    result = parse_json(raw, UNBOUNDED)
    assert result is None or (isinstance(result, Rejection) and result.status == 400)


def test_metadata_over_16_kb_is_a_413_even_inside_a_larger_body_limit():
    body = {"sender": "a", "message": "hi", "metadata": {"school": "x" * MAX_METADATA_BYTES}}
    result = read_message(json.dumps(body).encode(), UNBOUNDED)
    assert isinstance(result, Rejection) and result.status == 413 and "'metadata'" in result.error


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("\ud83d my teacher hurts me", "\ufffd my teacher hurts me"),  # half an emoji
        ("hurts me \udc00", "hurts me \ufffd"),
        ("a\x00b\x07c\x1bd\x7fe\x85f", "a b c d e f"),
        ("line one\r\nline two\rthree", "line one\nline two\nthree"),
        ("tab\tand\nnewline stay", "tab\tand\nnewline stay"),
        ("\u202e\u200b\U0001f600 ok", "\u202e\u200b\U0001f600 ok"),  # valid unicode is left alone
    ],
)
def test_clean_text(text, cleaned):
    assert clean_text(text) == cleaned
    clean_text(text).encode("utf-8")  # always encodable: lone surrogates are gone


def test_read_message_cleans_the_text_it_returns():
    raw = b'{"sender": "a", "message": "\\ud83d help\\u0000me"}'
    assert read_message(raw, UNBOUNDED)["message"] == "\ufffd help me"
