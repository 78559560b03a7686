"""Findings 2, 4 and 5 against the running stack (`schoolguide run`, tests/conftest.py): what a REST client
claims about channel, conversation and audience is not what gets stored; odd input still gets the safe reply
and one record; a flood from one sender gets 429s while others are answered."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
import requests

pytestmark = pytest.mark.e2e

DISCLOSURE = "my teacher touched me and told me to keep it a secret"
SAFE_REPLY = "can't keep this a secret"


def disclosures(env: dict) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "disclosures", "list", "--json"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(out.stdout)


def rest(stack, body=None, raw: bytes | None = None) -> requests.Response:
    url = f"{stack.rasa_url}/webhooks/rest/webhook"
    if raw is not None:
        return requests.post(url, data=raw, headers={"Content-Type": "application/json"}, timeout=60)
    return requests.post(url, json=body, timeout=60)


def texts(messages: list[dict]) -> str:
    return " ".join(m.get("text", "") for m in messages)


@pytest.mark.parametrize("claimed", ["pupil", "website", "slack", "teams"])
def test_a_rest_disclosure_claiming_another_channel_is_stored_as_rest(stack, claimed):
    tag = uuid.uuid4().hex[:12]
    sender = {"slack": f"slack:U{tag}", "teams": f"teams:{tag}"}.get(claimed, f"{claimed}-{tag}")
    metadata = {"school": "scotts", "audience": "pupil", "channel": claimed, "slack_user": "U1"}
    response = rest(
        stack, {"sender": sender, "message": DISCLOSURE, "input_channel": claimed, "metadata": metadata}
    )
    assert response.status_code == 200
    assert SAFE_REPLY in texts(response.json())
    assert {m["recipient_id"] for m in response.json()} == {f"rest-{sender}"}
    stored = [d for d in disclosures(stack.env) if tag in d["sender_id"]]
    assert [(d["sender_id"], d["channel"]) for d in stored] == [(f"rest-{sender}", "rest")]


def test_rest_cannot_continue_a_pupil_widget_conversation(stack):
    issued = requests.post(f"{stack.rasa_url}/webhooks/pupil/conversation", json={}, timeout=30).json()[
        "sender"
    ]
    pupil = "pupil-" + issued.split(".")[0]
    said = requests.post(
        f"{stack.rasa_url}/webhooks/pupil/webhook", json={"sender": issued, "message": DISCLOSURE}, timeout=60
    )
    assert said.status_code == 200 and SAFE_REPLY in texts(said.json())
    # The REST client names the pupil's stored conversation: it gets a conversation of its own.
    follow_up = rest(stack, {"sender": pupil, "message": "no thanks"})
    assert {m["recipient_id"] for m in follow_up.json()} == {f"rest-{pupil}"}
    stored = [d for d in disclosures(stack.env) if issued.split(".")[0] in d["sender_id"]]
    assert [(d["sender_id"], d["channel"]) for d in stored] == [(pupil, "pupil")]


def test_a_disclosure_with_a_broken_emoji_gets_the_safe_reply_and_one_record(stack):
    sender = f"broken-emoji-{uuid.uuid4().hex[:8]}"
    raw = (
        '{"sender": "' + sender + '", "message": "\\ud83d ' + DISCLOSURE + '\\u0000",'
        ' "metadata": {"school": "lunsford", "audience": "pupil"}}'
    ).encode()
    response = rest(stack, raw=raw)
    assert response.status_code == 200
    assert SAFE_REPLY in texts(response.json())
    stored = [d for d in disclosures(stack.env) if d["sender_id"] == f"rest-{sender}"]
    assert len(stored) == 1 and DISCLOSURE in stored[0]["text"]


@pytest.mark.parametrize("depth", [500, 100_000])
def test_deeply_nested_metadata_gets_a_clear_4xx_never_a_server_error(stack, depth):
    raw = b'{"sender": "deep", "message": "hi", "metadata": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    response = rest(stack, raw=raw)
    assert response.status_code in (400, 413) and response.json()["error"]


def test_metadata_over_16_kb_gets_a_413(stack):
    response = rest(stack, {"sender": "big", "message": "hi", "metadata": {"school": "x" * 17_000}})
    assert response.status_code == 413


def test_fifty_rapid_messages_from_one_sender_get_429s_and_others_are_still_answered(stack):
    sender = f"flood-{uuid.uuid4().hex[:8]}"
    metadata = {"school": "lunsford", "audience": "parent"}
    responses = [rest(stack, {"sender": sender, "message": "hello", "metadata": metadata}) for _ in range(50)]
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}
    assert statuses.count(429) >= 25, statuses
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code == 429)
    other = rest(stack, {"sender": f"other-{sender}", "message": "hello", "metadata": metadata})
    assert other.status_code == 200 and other.json()
    # Still limited, a disclosure from the flooding sender is not refused.
    disclosed = rest(stack, {"sender": sender, "message": DISCLOSURE, "metadata": metadata})
    assert disclosed.status_code == 200 and "Designated Safeguarding Lead" in texts(disclosed.json())
    assert len([d for d in disclosures(stack.env) if d["sender_id"] == f"rest-{sender}"]) == 1
