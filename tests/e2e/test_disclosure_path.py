"""Disclosures through the running servers: stored before the reply, safe reply, and survival of an
action-server outage (reconciled from Rasa's tracker store once it is back)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e


def disclosures(env: dict) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "disclosures", "list", "--json", "--by", "e2e-test"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(out.stdout)


def _texts(messages):
    return [m["text"] for m in messages if "text" in m]


def test_pupil_disclosure_is_stored_before_the_reply(stack):
    message = "someone in year 9 is sharing my nudes on snapchat"
    replies = stack.say("e2e-pupil-1", message, {"school": "lunsford", "audience": "pupil"})
    # The HTTP response has arrived, so the reply was sent: the record must already be in the database.
    [record] = [d for d in disclosures(stack.env) if d["sender_id"] == "rest-e2e-pupil-1"]
    assert record["text"] == message
    assert (record["school"], record["audience"], record["status"]) == ("lunsford", "pupil", "new")
    assert "image_sharing_sextortion" in record["categories"]
    assert record["reference"].startswith("SG-") and record["created_at"]

    text = " ".join(_texts(replies))
    assert "0800 1111" in text and "999" in text
    assert "can't keep this a secret" in text
    assert not any("custom" in m for m in replies)  # never a policy answer


def test_staff_report_gets_the_reference(stack):
    message = "A year 5 girl just told me an adult she met on Roblox asked her for photos"
    replies = stack.say("e2e-staff-1", message, {"school": "scotts", "audience": "staff"})
    [record] = [d for d in disclosures(stack.env) if d["sender_id"] == "rest-e2e-staff-1"]
    text = " ".join(_texts(replies))
    assert record["reference"] in text
    assert "Do not investigate" in text


def test_a_policy_question_about_grooming_is_answered_not_escalated(stack):
    replies = stack.say(
        "e2e-staff-2", "What laws cover online grooming?", {"school": "lseat", "audience": "staff"}
    )
    assert any(m.get("custom", {}).get("type") == "policy_answer" for m in replies), replies
    assert not [d for d in disclosures(stack.env) if d["sender_id"] == "rest-e2e-staff-2"]


def test_action_server_down_pupil_still_gets_a_safe_reply_and_the_record_arrives_later(
    project_root, tmp_path, monkeypatch, e2e
):
    from bot.runner import model_path, rasa_env, write_credentials, write_endpoints
    from bot.settings import Settings

    rasa_port, action_port = e2e.free_port(), e2e.free_port()
    for name, value in {
        "VAR_DIR": str(tmp_path / "var"),
        "RASA_PORT": str(rasa_port),
        "ACTION_PORT": str(action_port),
        "WORKER": "on",
        "WORKER_INTERVAL_SECONDS": "1",
    }.items():
        monkeypatch.setenv(f"SCHOOLGUIDE_{name}", value)
    settings = Settings.from_env()
    env = rasa_env(settings)
    rasa_cmd = [str(Path(sys.executable).with_name("rasa")), "run", "--model", str(model_path(settings)),
                "--interface", "127.0.0.1", "--port", str(rasa_port),
                "--endpoints", str(write_endpoints(settings)),
                "--credentials", str(write_credentials(settings))]  # fmt: skip
    log = (tmp_path / "servers.log").open("w")
    rasa = subprocess.Popen(rasa_cmd, cwd=project_root, env=env, stdout=log, stderr=subprocess.STDOUT)
    action = None
    try:
        url = f"http://127.0.0.1:{rasa_port}"
        # No action server is running: session start and the logging action both fail.
        message = "my step dad hits me when mum is at work"
        body = {
            "sender": "e2e-outage",
            "message": message,
            "metadata": {"school": "lunsford", "audience": "pupil"},
        }
        replies = e2e.wait_for(
            lambda: requests.post(f"{url}/webhooks/rest/webhook", json=body, timeout=60).json(), 240
        )
        text = " ".join(_texts(replies))
        assert "0800 1111" in text and "999" in text, replies
        assert "can't keep this a secret" in text
        assert disclosures(env) == []

        # The action server comes back (with the secret write_endpoints gave Rasa, read from the same var/);
        # its worker reconciles the disclosure from the tracker store.
        action = subprocess.Popen(
            [sys.executable, "-m", "bot.action_server", "--actions", "actions", "--port", str(action_port)],
            cwd=project_root, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def stored():
            return [d for d in disclosures(env) if d["sender_id"] == "rest-e2e-outage"]

        records = e2e.wait_for(stored, 120)
        assert len(records) == 1
        assert records[0]["text"] == message
        assert (records[0]["school"], records[0]["audience"]) == ("lunsford", "pupil")
        time.sleep(3)  # later worker passes must not record it twice
        assert len([d for d in disclosures(env) if d["sender_id"] == "rest-e2e-outage"]) == 1
    finally:
        for proc in (action, rasa):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
