import pytest

from bot.channels.validation import MAX_MESSAGE_CHARS, message_body_problem


@pytest.mark.parametrize(
    "body",
    [
        {"sender": "a", "message": "hi"},
        {"message": "hi"},
        {"sender": "a", "message": ""},
        {"sender": "a", "message": "x" * MAX_MESSAGE_CHARS, "metadata": {"school": "lunsford"}},
        {"sender": "a", "message": "<script>alert(1)</script> \u202e\U0001f600"},
    ],
)
def test_valid_bodies(body):
    assert message_body_problem(body) is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (None, "JSON object"),
        ([1], "JSON object"),
        ("text", "JSON object"),
        ({"sender": "a"}, "'message'"),
        ({"sender": "a", "message": 3}, "'message'"),
        ({"sender": "a", "message": "x" * (MAX_MESSAGE_CHARS + 1)}, "too long"),
        ({"sender": "", "message": "hi"}, "'sender'"),
        ({"sender": 12, "message": "hi"}, "'sender'"),
        ({"sender": "a", "message": "hi", "metadata": []}, "'metadata'"),
        ({"sender": "a", "message": "hi", "metadata": {str(i): i for i in range(50)}}, "'metadata'"),
    ],
)
def test_invalid_bodies_say_what_is_wrong(body, fragment):
    assert fragment in message_body_problem(body)
