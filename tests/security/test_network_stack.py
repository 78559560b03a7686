"""Finding 1 against `schoolguide run` itself: both ports on loopback, the action server closed to anyone
without the secret, and the Rasa server (which has it) still runs the actions. Needs a trained model."""

from __future__ import annotations

import psutil
import pytest
import requests

from bot.action_auth import SECRET_FILE_NAME

pytestmark = pytest.mark.e2e


def _listening_ips(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_both_ports_are_bound_to_loopback(stack):
    for url in (stack.rasa_url, stack.action_url):
        assert _listening_ips(int(url.rsplit(":", 1)[1])) == {"127.0.0.1"}, url


def test_the_action_server_refuses_a_caller_without_the_secret(stack):
    forged = {"next_action": "action_log_disclosure", "sender_id": "x", "tracker": {"sender_id": "x"}}
    assert requests.post(f"{stack.action_url}/webhook", json=forged, timeout=30).status_code == 401
    assert requests.get(f"{stack.action_url}/actions", timeout=30).status_code == 401


def test_the_rasa_server_still_runs_the_actions_and_the_secret_is_never_logged(stack):
    # A staff report gets its reference from action_disclosure_reference: the action server answered Rasa.
    replies = stack.say(
        "e2e-network-staff",
        "A year 4 boy just told me a man on Fortnite keeps asking him to send photos",
        {"school": "scotts", "audience": "staff"},
    )
    text = " ".join(m.get("text", "") for m in replies)
    assert "SG-" in text, replies
    secret = (stack.var_dir / SECRET_FILE_NAME).read_text().strip()
    logs = [stack.log, *stack.var_dir.glob("*.log")]
    for log in logs:
        assert secret not in log.read_text(errors="replace"), log
