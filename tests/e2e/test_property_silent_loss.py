"""Finding 4 through the real servers, property-based: random unicode (lone surrogates, control characters,
RTL marks, emoji) and random JSON shapes around known disclosure sentences, on the REST, website and pupil
channels. Never a 5xx; every disclosure gets the safe reply and exactly one record, also when its request is
refused for its metadata (a 400/413 whose body carries the safe reply in ``messages``)."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path
from unittest import mock

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.safeguarding.categories import reply_kind
from bot.safeguarding.crypto import load_cipher
from bot.safeguarding.detector import assess
from bot.safeguarding.replies import safe_reply
from bot.safeguarding.store import Disclosure, get_engine
from bot.settings import Settings

pytestmark = pytest.mark.e2e

# Disclosures the rules layer catches whatever surrounds them (strong rules), so the property is about the
# message path, not about recall on new wording (that is the held-out sets' job).
SENTENCES = (
    "my step dad hits me",
    "i want to kill myself",
    "someone is sharing my nudes on snapchat",
    "my teacher asked me to send him photos of me",
)
ODD = (
    "\ud83d",
    "\udc00",
    "\ude00",
    "\u202e",
    "\u200f",
    "\u061c",
    "\x00",
    "\x1b",
    "\x7f",
    "\ufeff",
    "\U0001f600",
)
NOISE = st.text(alphabet=st.one_of(st.characters(blacklist_categories=()), st.sampled_from(ODD)), max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | NOISE,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NOISE, inner, max_size=3),
    max_leaves=8,
)
METADATA = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"school": st.sampled_from(["lunsford", "scotts", "hogwarts", ""]) | JSON},
        optional={"audience": st.sampled_from(["pupil", "parent", "staff", "governor"]) | JSON, "x": JSON},
    ),
)
# Keys a client might add to the body: the channels must ignore or refuse them, never fail on them.
EXTRA = st.dictionaries(st.sampled_from(["input_channel", "stream", "sender_name", "x"]), JSON, max_size=2)
AUDIENCE = {"website": "parent", "pupil": "pupil"}


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _stack_helpers():
    """tests/conftest.py's start_stack / stop_stack (a conftest cannot be imported by name)."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    module = next((m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(path)), None)
    if module is None:
        spec = importlib.util.spec_from_file_location("schoolguide_property_stack_helpers", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def property_stack(project_root, tmp_path_factory):
    """A stack of its own with the rate limits off: these tests send ~100 messages from one address."""
    helpers = _stack_helpers()
    env = {"SCHOOLGUIDE_RATE_LIMIT_PER_SENDER": "0", "SCHOOLGUIDE_RATE_LIMIT_PER_IP": "0"}
    stack, proc = helpers.start_stack(project_root, tmp_path_factory.mktemp("property") / "var", env)
    try:
        yield stack
    finally:
        helpers.stop_stack(proc)


def _settings_for(stack) -> Settings:
    """The stack's settings (its var/ directory, database and key), as the servers read them."""
    with mock.patch.dict(os.environ, stack.env, clear=True):
        return Settings.from_env()


def records(stack, sender_id: str) -> list[tuple[Disclosure, str]]:
    """The disclosures stored for ``sender_id``, with their words decrypted."""
    settings = _settings_for(stack)
    with Session(get_engine(settings.database_url), future=True) as session:
        rows = list(session.execute(select(Disclosure).where(Disclosure.sender_id == sender_id)).scalars())
    cipher = load_cipher(settings)
    return [(row, cipher.decrypt(row.text_encrypted)) for row in rows]


def post(stack, channel: str, body) -> tuple[requests.Response, str | None]:
    """Send ``body`` on ``channel``; returns the response and the conversation id the server stores."""
    if channel == "rest":
        sender = f"prop-{uuid.uuid4().hex}"
        stored = f"rest-{sender}"
    else:
        issued = requests.post(f"{stack.rasa_url}/webhooks/{channel}/conversation", json={}, timeout=30)
        assert issued.status_code == 200, issued.text
        sender = issued.json()["sender"]
        stored = f"{channel}-{sender.split('.')[0]}"
    response = requests.post(
        f"{stack.rasa_url}/webhooks/{channel}/webhook", json={**body, "sender": sender}, timeout=120
    )
    return response, stored


def joined(replies) -> str:
    return "\n\n".join(m["text"] for m in replies if isinstance(m, dict) and isinstance(m.get("text"), str))


def replies_of(response: requests.Response) -> list:
    """The bot's messages: the body of a 200, the ``messages`` of a refusal (which must say what is wrong)."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code < 400:
        return response.json()
    assert response.status_code in (400, 413), response.text[:300]
    payload = response.json()
    assert isinstance(payload.get("error"), str) and payload["error"]  # says what is wrong
    return payload.get("messages") or []


def expected_replies(audiences: list[str], sentence: str) -> set[str]:
    """The safe reply each audience gets for ``sentence``: pupils get the one that fits it (issue #15)."""
    found = assess(sentence)
    kind = reply_kind(found.categories, found.risk)
    return {safe_reply(audience, kind=kind) for audience in audiences}


def check_disclosure(stack, channel: str, body: dict, sentence: str) -> None:
    response, sender_id = post(stack, channel, body)
    replies = replies_of(response)  # a refused disclosure is answered too (its metadata was the problem)
    assert replies, f"a disclosure was answered with silence ({response.status_code})"
    text = joined(replies)
    audiences = [AUDIENCE[channel]] if channel in AUDIENCE else ["pupil", "parent", "staff"]
    if channel not in AUDIENCE:  # REST: an unknown audience gets the generic pupil text
        audiences.append(None)
    assert any(reply in text for reply in expected_replies(audiences, sentence)), text[:500]
    [(record, words)] = records(stack, sender_id)
    assert sentence in words
    if channel in AUDIENCE:
        assert (record.audience, record.channel) == (AUDIENCE[channel], channel)
    else:
        assert record.channel == "rest"


@pytest.mark.parametrize("channel", ["rest", "website", "pupil"])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sentence=st.sampled_from(SENTENCES), before=NOISE, after=NOISE, metadata=METADATA, extra=EXTRA)
@example(sentence=SENTENCES[0], before="", after="\ud83d", metadata={"audience": "pupil"}, extra={})
@example(sentence=SENTENCES[1], before="\ude00", after="", metadata=nested(40), extra={})
@example(sentence=SENTENCES[2], before="\u202e", after="\x00", metadata={"school": [[["x"]]]}, extra={})
def test_odd_input_around_a_disclosure_never_fails_and_is_recorded_once(
    property_stack, channel, sentence, before, after, metadata, extra
):
    body = {**extra, "message": f"{before}\n{sentence}\n{after}", "metadata": metadata}
    check_disclosure(property_stack, channel, body, sentence)


@pytest.mark.parametrize("channel", ["rest", "website", "pupil"])
def test_a_disclosure_with_a_broken_emoji_gets_the_safe_reply_and_one_record(property_stack, channel):
    body = {"message": f"{SENTENCES[0]} \ud83d", "metadata": {"school": "lunsford", "audience": "pupil"}}
    response, sender_id = post(property_stack, channel, body)
    assert response.status_code == 200, response.text[:300]  # cleaned, not refused: the words matter
    [expected] = expected_replies([AUDIENCE.get(channel, "pupil")], SENTENCES[0])
    assert expected in joined(response.json())
    [(_, words)] = records(property_stack, sender_id)
    assert SENTENCES[0] in words and "\ufffd" in words


# Outside Hypothesis: its reporting recurses once per level and cannot print an example this deep. The web
# channels refuse such a body with a clear 400, but read its top-level message and sender without recursing:
# a disclosure still gets the safe reply (in the refusal's ``messages``) and exactly one record. A channel
# that passes deep metadata through (Slack, Teams) is covered by the server's own bound, tests/security.
@pytest.mark.parametrize("channel", ["rest", "website", "pupil"])
def test_a_disclosure_with_metadata_nested_500_deep_gets_the_safe_reply_and_one_record(
    property_stack, channel
):
    body = {"message": SENTENCES[1], "metadata": {"school": "lunsford", "junk": nested(500)}}
    response, sender_id = post(property_stack, channel, body)
    assert response.status_code == 400, response.text[:300]
    payload = response.json()
    assert "nested too deeply" in payload["error"]
    audiences = [AUDIENCE[channel]] if channel in AUDIENCE else ["pupil", "parent", "staff"]
    if channel not in AUDIENCE:
        audiences.append(None)
    expected = expected_replies(audiences, SENTENCES[1])
    assert any(reply in joined(payload["messages"]) for reply in expected), payload
    [(record, words)] = records(property_stack, sender_id)
    assert SENTENCES[1] in words and record.source == "failsafe" and record.channel == channel
    assert record.school == "lunsford"
