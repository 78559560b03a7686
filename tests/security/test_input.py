"""Findings 4 and 5 at the parser: what a client posts is bounded in size and depth before it is parsed,
parsing never raises (RecursionError gave a 500), and message text is cleaned of what breaks the NLU
pipeline."""

from __future__ import annotations

import json

import pytest

from bot.channels.validation import (
    MAX_JSON_DEPTH,
    MAX_METADATA_BYTES,
    NOT_A_STRING,
    Rejection,
    TopLevel,
    clean_text,
    nesting_too_deep,
    parse_json,
    read_message,
    scan_top_level,
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


# --- What a refused body may still say: its top-level message and sender, read without recursing -----------


def deep_body(depth: int, **fields) -> bytes:
    """An object with ``fields`` and metadata holding a list/object chain ``depth`` levels deep."""
    head = json.dumps({**fields, "metadata": {"school": "lunsford", "audience": "staff"}})[:-2]
    return head.encode() + b', "junk": ' + b'[{"b": ' * depth + b"1" + b"}]" * depth + b"}}"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 500, 100_000])
def test_the_scanner_reads_the_top_level_of_any_depth_without_recursing(depth):
    raw = deep_body(depth, message="my step dad hits me", sender="s1")
    if depth == 100_000:
        with pytest.raises(RecursionError):
            json.loads(raw)  # what the scanner must not do
    assert scan_top_level(raw) == TopLevel(
        {"message": "my step dad hits me", "sender": "s1"}, {"school": "lunsford", "audience": "staff"}
    )
    refused = read_message(raw, UNBOUNDED)
    assert refused.status == 400 and "nested too deeply" in refused.error and refused.salvageable


def test_the_scanner_ignores_brackets_quotes_and_escapes_inside_strings():
    message = 'he said "[[{{ keep }} it ]]" a secret \\ {"message": "not this"} \u00e9 \U0001f600 \\"'
    sender = 'a\\"]}'
    body = {"sender": sender, "message": message, "x": ["]", "}", '"', "\\"], "metadata": {"school": '{[\\"'}}
    assert scan_top_level(json.dumps(body).encode()) == TopLevel(
        {"sender": sender, "message": message}, {"school": '{[\\"'}
    )
    assert scan_top_level(json.dumps(body, ensure_ascii=False).encode()).fields["message"] == message
    # Escapes are decoded as json decodes them (a lone surrogate too: the channels clean it afterwards).
    raw = rb'{"message": "\ud83d \u0041\n\"q\" \/ \\", "sender": "s"}'
    assert scan_top_level(raw).fields == json.loads(raw) == {"message": '\ud83d A\n"q" / \\', "sender": "s"}


def test_a_repeated_key_counts_with_its_last_value_as_in_json():
    raw = (
        b'{"message": "first", "sender": "a", "metadata": {"school": "x", "audience": "staff"},'
        b' "message": "second", "metadata": {"school": "y", "school": "z"}, "sender": ["b"]}'
    )
    assert json.loads(raw)["message"] == "second"
    assert scan_top_level(raw) == TopLevel({"message": "second", "sender": NOT_A_STRING}, {"school": "z"})
    assert scan_top_level(b'{"message": "hi", "message": {"a": 1}}').fields == {"message": NOT_A_STRING}
    assert scan_top_level(b'{"message": "hi", "message": null}').fields == {"message": None}


def test_only_top_level_fields_and_direct_metadata_members_are_read():
    body = {
        "x": {"message": "inner", "metadata": {"school": "inner"}},
        "message": "outer",
        "metadata": {"deep": {"school": "deeper", "audience": ["pupil"]}, "audience": 7},
    }
    expected = TopLevel({"message": "outer"}, {"audience": NOT_A_STRING})
    assert scan_top_level(json.dumps(body).encode()) == expected
    assert scan_top_level(b'{"message": "m", "metadata": [{"school": "x"}]}').metadata == {}


@pytest.mark.parametrize(
    "raw",
    [b"[1]", b'"a string"', b"1", b"null", b"", b"   ", b"[" * 100_000 + b"]" * 100_000],
)
def test_a_body_that_is_not_an_object_gives_nothing(raw):
    assert scan_top_level(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"message": "hi"',  # unclosed
        b'{"message": "hi"}}',
        b'{"message": "hi"} trailing',
        b'{"message": "hi", "m": [1, 2}}',  # mismatched brackets
        b'{"message": "hi",}',
        b'{"message" "hi"}',
        b'{"message": "a\x01b"}',  # a raw control character in a string
        b'{"message": "\\x41"}',  # not a JSON escape
        b'{"message": "\xff"}',  # not UTF-8
        b'{"message": "hi", "n": 01}',
        b'{"message": "hi", "n": tru}',
        b'{"message": "hi", "m": ' + b"[" * 100_000,  # deep and never closed
    ],
)
def test_a_body_that_is_not_well_formed_json_gives_nothing(raw):
    assert scan_top_level(raw) is None


def test_what_json_accepts_the_scanner_reads_the_same():
    body = {"message": "hi", "sender": "s", "n": [-1.5e-3, 0, True, None, {}, []], "m": {"a": {"b": "c"}}}
    text = json.dumps(body)
    for raw in (
        text.encode(),
        json.dumps(body, indent=2).encode(),
        text.encode("utf-16"),
        text.encode("utf-8-sig"),
    ):
        assert json.loads(raw)["message"] == "hi"
        assert scan_top_level(raw).fields == {"message": "hi", "sender": "s"}


def test_only_refusals_for_the_metadata_or_the_nesting_may_be_salvaged():
    def rejection(body, limit=UNBOUNDED):
        return read_message(body if isinstance(body, bytes) else json.dumps(body).encode(), limit)

    salvageable = [
        {"sender": "a", "message": "hi", "metadata": []},
        {"sender": "a", "message": "hi", "metadata": {str(i): i for i in range(50)}},
        {"sender": "a", "message": "hi", "metadata": {"school": "x" * MAX_METADATA_BYTES}},
        {"sender": "a", "message": "hi", "x": [[[[[[[]]]]]]]},
    ]
    for body in salvageable:
        assert rejection(body).salvageable, body
    refused = [
        {"sender": "", "message": "hi", "metadata": []},
        {"sender": "a", "message": 3, "metadata": []},
        {"sender": "a", "message": "x" * 10_001},
        [1],
        b"{not json",
    ]
    for body in refused:
        assert not rejection(body).salvageable, body
    assert not rejection({"message": "hi"}, limit=4).salvageable  # the whole body is too large: never read
