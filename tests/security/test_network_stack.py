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


def test_a_body_over_the_limit_gets_413_from_both_servers_without_being_read(stack):
    """`schoolguide run` bounds both servers' request bodies (tests/security/test_request_size.py)."""
    import socket

    from bot.action_server import MAX_ACTION_REQUEST_BYTES
    from bot.channels.validation import MAX_REST_BODY_BYTES
    from bot.rasa_server import PLATFORM_BODY_BYTES

    secret = (stack.var_dir / SECRET_FILE_NAME).read_text().strip()
    cases = [
        (stack.rasa_url, "/webhooks/rest/webhook", PLATFORM_BODY_BYTES, {}),  # REST and widgets only: < 1 MiB
        (stack.action_url, "/webhook", MAX_ACTION_REQUEST_BYTES + 1, {"Authorization": f"Bearer {secret}"}),
    ]
    for url, path, length, headers in cases:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
                f"Content-Length: {length}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        with socket.create_connection((host, int(port)), timeout=15) as sock:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b"{" + b" " * 1023)  # 1 KB of it
            assert sock.recv(65536).startswith(b"HTTP/1.1 413"), (url, path)
    # An ordinary message is still answered.
    assert stack.say("e2e-size", "hello", {"school": "lunsford", "audience": "parent"})
    assert MAX_REST_BODY_BYTES < PLATFORM_BODY_BYTES
