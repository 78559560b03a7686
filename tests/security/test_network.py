"""Finding 1 (open action server): both servers listen on loopback unless told otherwise, and the action
server answers only the Rasa server, which proves itself with a shared secret sent in a header.

The action server here is the real one, started with the exact command `schoolguide run` uses."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from bot.action_auth import SECRET_FILE_NAME, ActionSecretError, is_authorised, load_action_secret
from bot.runner import rasa_env, server_commands, write_endpoints
from bot.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FORGED_DISCLOSURE = "my uncle sends me pictures and says it is our secret"


def _interface(command: list[str]) -> str | None:
    return command[command.index("--interface") + 1] if "--interface" in command else None


@pytest.fixture
def settings(fresh_settings) -> Settings:
    return fresh_settings


# --- binding -------------------------------------------------------------------------------------------


def test_both_servers_listen_on_loopback_by_default(settings, tmp_path):
    assert settings.bind_host == "127.0.0.1"
    commands = server_commands(settings, tmp_path / "m.tar.gz")
    assert _interface(commands["rasa server"]) == "127.0.0.1"
    assert _interface(commands["action server"]) == "127.0.0.1"
    endpoints = yaml.safe_load((settings.var_dir / "endpoints.yml").read_text())
    assert endpoints["action_endpoint"]["url"] == f"http://127.0.0.1:{settings.action_port}/webhook"


def test_one_setting_moves_both_servers(monkeypatch, tmp_path):
    from bot.settings import get_settings

    monkeypatch.setenv("SCHOOLGUIDE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SCHOOLGUIDE_BIND_HOST", "0.0.0.0")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        commands = server_commands(settings, tmp_path / "m.tar.gz")
    finally:
        get_settings.cache_clear()
    assert _interface(commands["rasa server"]) == _interface(commands["action server"]) == "0.0.0.0"
    # Listening everywhere, the Rasa server still reaches its action server over loopback.
    endpoints = yaml.safe_load((settings.var_dir / "endpoints.yml").read_text())
    assert endpoints["action_endpoint"]["url"].startswith("http://127.0.0.1:")

    specific = replace(settings, bind_host="10.1.2.3")
    url = yaml.safe_load(write_endpoints(specific).read_text())["action_endpoint"]["url"]
    assert url == f"http://10.1.2.3:{settings.action_port}/webhook"


# --- the secret as the Rasa server gets it ---------------------------------------------------------------


def test_endpoints_send_the_generated_secret_in_a_header_and_are_private(settings):
    path = write_endpoints(settings)
    secret_file = settings.var_dir / SECRET_FILE_NAME
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    text = path.read_text()
    endpoint = yaml.safe_load(text)["action_endpoint"]
    assert endpoint["headers"] == {"Authorization": f"Bearer {secret}"}
    assert "token" not in endpoint and "params" not in endpoint  # never a query parameter (access logs)
    assert text.count(secret) == 1  # in the header only, not in a comment
    for file in (path, secret_file):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    # Written again (every `schoolguide run`), it keeps the secret: a running action server still matches.
    write_endpoints(settings)
    assert (
        yaml.safe_load(path.read_text())["action_endpoint"]["headers"]["Authorization"] == f"Bearer {secret}"
    )


def test_an_older_world_readable_endpoints_file_becomes_private(settings):
    path = settings.var_dir / "endpoints.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("old: file\n")
    path.chmod(0o644)
    write_endpoints(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_secret_from_the_environment_wins_and_no_file_is_generated(settings):
    configured = replace(settings, action_server_secret="from-the-secret-store-0123456789")
    assert load_action_secret(configured) == "from-the-secret-store-0123456789"
    endpoint = yaml.safe_load(write_endpoints(configured).read_text())["action_endpoint"]
    assert endpoint["headers"]["Authorization"] == "Bearer from-the-secret-store-0123456789"
    assert not (settings.var_dir / SECRET_FILE_NAME).exists()


@pytest.mark.parametrize("bad", ["short", "has spaces in it 0123456789", "${HOME}-0123456789abcdef"])
def test_a_malformed_configured_secret_is_refused_without_echoing_it(settings, bad):
    with pytest.raises(ActionSecretError) as error:
        load_action_secret(replace(settings, action_server_secret=bad))
    assert bad not in str(error.value)


def test_the_secret_check():
    secret = "s3cret-value-0123456789"
    assert is_authorised(f"Bearer {secret}", secret)
    for header in (
        None,
        "",
        secret,
        f"Bearer {secret}x",
        f"Bearer {secret[:-1]}",
        f"Basic {secret}",
        "Bearer ",
    ):
        assert not is_authorised(header, secret), header


# --- the real action server ------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningActionServer:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path, settings: Settings):
        self.url, self.proc, self.log, self.settings = url, proc, log, settings

    @property
    def secret(self) -> str:
        return (self.settings.var_dir / SECRET_FILE_NAME).read_text().strip()

    def disclosures_stored(self) -> int:
        db = self.settings.var_dir / "schoolguide.db"
        if not db.exists():
            return 0
        with sqlite3.connect(db) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
            if "disclosures" not in tables:
                return 0
            return connection.execute("SELECT count(*) FROM disclosures").fetchone()[0]


@pytest.fixture(scope="module")
def action_server(tmp_path_factory, e2e):
    var_dir = tmp_path_factory.mktemp("action-server") / "var"
    port = _free_port()
    settings = replace(Settings.from_env(), var_dir=var_dir, spool_dir=var_dir / "spool", action_port=port,
                       bind_host="127.0.0.1", action_server_secret=None,
                       database_url=f"sqlite:///{var_dir / 'schoolguide.db'}")  # fmt: skip
    env = rasa_env(settings)
    env.update({"SCHOOLGUIDE_VAR_DIR": str(var_dir), "SCHOOLGUIDE_WORKER": "off"})
    for name in ("SCHOOLGUIDE_BIND_HOST", "SCHOOLGUIDE_ACTION_SERVER_SECRET", "SCHOOLGUIDE_DATABASE_URL"):
        env.pop(name, None)  # the defaults are what is under test
    # --debug: not even Rasa SDK's debug logging may carry the secret.
    command = [*server_commands(settings, var_dir / "m.tar.gz")["action server"], "--debug"]
    log = var_dir / "action-server.log"
    url = f"http://127.0.0.1:{port}"
    with e2e.serve(command, env, log, f"{url}/health", timeout=180) as proc:
        yield RunningActionServer(url, proc, log, settings)


def _forged_call(sender: str) -> dict:
    """What the probe POSTed: a tracker of the caller's choosing, asking to store a disclosure."""
    return {
        "next_action": "action_log_disclosure",
        "sender_id": sender,
        "version": "3.6.2",
        "domain": {},
        "tracker": {
            "sender_id": sender,
            "slots": {"school": "lunsford", "audience": "pupil"},
            "latest_message": {
                "text": FORGED_DISCLOSURE,
                "message_id": f"forged-{sender}",
                "intent": {"name": "disclose", "confidence": 1.0},
                "metadata": {"school": "lunsford", "audience": "pupil"},
            },
            "events": [
                {
                    "event": "user",
                    "timestamp": 1.0,
                    "text": FORGED_DISCLOSURE,
                    "message_id": f"forged-{sender}",
                    "input_channel": "slack",
                    "parse_data": {"intent": {"name": "disclose"}},
                },
            ],  # fmt: skip
            "paused": False,
            "followup_action": None,
            "active_loop": {},
            "latest_action_name": "action_listen",
        },
    }


def test_the_action_server_listens_on_loopback_only(action_server):
    port = int(action_server.url.rsplit(":", 1)[1])
    listening = [
        c.laddr.ip
        for p in [
            psutil.Process(action_server.proc.pid),
            *psutil.Process(action_server.proc.pid).children(True),
        ]
        for c in p.connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    assert listening and set(listening) == {"127.0.0.1"}, listening


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-secret-0123456789"}, {"Authorization": "Basic c2c6c2c="}],
    ids=["none", "wrong", "other-scheme"],
)
def test_a_forged_tracker_without_the_secret_is_refused_and_stores_nothing(action_server, headers):
    before = action_server.disclosures_stored()
    response = requests.post(
        f"{action_server.url}/webhook", json=_forged_call("forger"), headers=headers, timeout=30
    )
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorised"}  # the request body is not echoed back
    assert FORGED_DISCLOSURE not in response.text
    assert action_server.disclosures_stored() == before


def test_listing_the_actions_needs_the_secret(action_server):
    refused = requests.get(f"{action_server.url}/actions", timeout=10)
    assert refused.status_code == 401
    assert "action_log_disclosure" not in refused.text
    allowed = requests.get(
        f"{action_server.url}/actions",
        headers={"Authorization": f"Bearer {action_server.secret}"},
        timeout=10,
    )
    assert allowed.status_code == 200
    assert {"name": "action_log_disclosure"} in allowed.json()


def test_every_other_route_and_method_needs_the_secret_too(action_server):
    for method, path in [("GET", "/"), ("GET", "/nothing"), ("OPTIONS", "/webhook"), ("POST", "/health")]:
        response = requests.request(method, f"{action_server.url}{path}", timeout=10)
        assert response.status_code == 401, (method, path, response.status_code)
    # Liveness stays open: it says only that the process is up.
    health = requests.get(f"{action_server.url}/health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_the_rasa_server_with_the_secret_is_served(action_server):
    before = action_server.disclosures_stored()
    response = requests.post(
        f"{action_server.url}/webhook",
        json=_forged_call("rasa-with-secret"),
        headers={"Authorization": f"Bearer {action_server.secret}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    [event] = [e for e in response.json()["events"] if e.get("name") == "disclosure_reference"]
    assert event["value"]
    assert action_server.disclosures_stored() == before + 1


def test_the_secret_never_reaches_the_log(action_server):
    # After refused and accepted calls (above, and this one), at debug level.
    requests.get(f"{action_server.url}/actions", headers={"Authorization": "Bearer nope"}, timeout=10)
    requests.get(
        f"{action_server.url}/actions",
        headers={"Authorization": f"Bearer {action_server.secret}"},
        timeout=10,
    )
    time.sleep(0.5)
    log = action_server.log.read_text(errors="replace")
    assert "refused GET /actions" in log  # the log is the server's, and it is written
    assert action_server.secret not in log


# --- request size: the action server reads no body over its bound -------------------------------------------


def _head_only_post(url: str, path: str, length: int, headers: dict[str, str]) -> int:
    """The status the server answers to a POST promising ``length`` bytes but sending only the first KB (a
    server that means to read the body waits for the rest, and this fails on the timeout)."""
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
             f"Content-Length: {length}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"{" + b" " * 1023)
        try:
            answer = sock.recv(65536)
        except TimeoutError as exc:
            raise AssertionError(f"no answer to a {length}-byte body: the server waits to read it") from exc
    return int(answer.split(b" ", 2)[1])


def test_the_action_server_reads_no_body_over_its_bound(action_server):
    from bot.action_server import MAX_ACTION_REQUEST_BYTES

    secret = {"Authorization": f"Bearer {action_server.secret}"}
    assert _head_only_post(action_server.url, "/webhook", MAX_ACTION_REQUEST_BYTES + 1, secret) == 413
    time.sleep(0.5)
    assert "Exception occurred during execution" not in action_server.log.read_text(errors="replace")
    # Without the secret the refusal comes first, before the size matters.
    assert _head_only_post(action_server.url, "/webhook", 50_000_000, {}) == 401


def test_a_long_conversation_still_reaches_the_actions(action_server):
    call = _forged_call("long-conversation")
    earlier = [
        {"event": "bot", "timestamp": 0.5, "text": "An earlier answer, quoting a clause. " * 60}
    ] * 1000
    call["tracker"]["events"] = earlier + call["tracker"]["events"]
    body = json.dumps(call)
    assert 2_000_000 < len(body) < 4_000_000  # a long session's tracker (tests/security/test_request_size.py)
    response = requests.post(
        f"{action_server.url}/webhook",
        data=body,
        headers={"Authorization": f"Bearer {action_server.secret}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:500]


# --- what `schoolguide run` announces --------------------------------------------------------------------


def _start_message(settings: Settings, monkeypatch, capsys, tmp_path) -> str:
    """What `schoolguide run` prints, with both servers replaced by processes that exit at once."""
    import signal as signal_module

    import bot.runner

    class ExitedAtOnce:
        pid = returncode = 0

        def __init__(self, *args, **kwargs):
            pass

        def poll(self):
            return 0

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(bot.runner.subprocess, "Popen", ExitedAtOnce)
    monkeypatch.setattr(signal_module, "signal", lambda *args: None)
    bot.runner.run_servers(settings, tmp_path / "m.tar.gz")
    return capsys.readouterr().out


def test_the_start_message_names_only_the_channels_that_are_on(settings, monkeypatch, capsys, tmp_path):
    rest_off = replace(settings, bind_host="0.0.0.0", rest_token=None)  # no token beyond loopback: REST off
    said = _start_message(rest_off, monkeypatch, capsys, tmp_path)
    assert "/webhooks/rest/" not in said and "REST" not in said, said
    assert f"http://127.0.0.1:{settings.rasa_port}/webhooks/website/" in said
    assert f"http://127.0.0.1:{settings.rasa_port}/webhooks/pupil/" in said

    rest_on = replace(settings, bind_host="127.0.0.1", rest_token=None)  # loopback: open without a token
    said = _start_message(rest_on, monkeypatch, capsys, tmp_path)
    assert f"http://127.0.0.1:{settings.rasa_port}/webhooks/rest/webhook" in said, said

    with_token = replace(rest_off, rest_token="rest-token-0123456789abcdef")
    said = _start_message(with_token, monkeypatch, capsys, tmp_path)
    assert f"http://127.0.0.1:{settings.rasa_port}/webhooks/rest/webhook" in said, said
    assert "rest-token-0123456789abcdef" not in said
