"""Sanic reads a whole request body (up to its default 100 MB) before any handler runs, so before the
channels' own size checks. Both servers now bound it: the Rasa server just above the largest body an enabled
channel accepts, the action server to a size measured here from realistic trackers. A bigger body gets 413
from Sanic on its Content-Length, without being read.

The Rasa server here is the real one, started with the command `schoolguide run` uses (bot/runner.py), on a
placeholder model: the limit applies before any model is involved, so none is loaded."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from bot.channels.validation import MAX_REST_BODY_BYTES, MAX_WIDGET_BODY_BYTES
from bot.rasa_server import BODY_MARGIN_BYTES, PLATFORM_BODY_BYTES, request_max_size
from bot.runner import enabled_channels, rasa_env, server_commands
from bot.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def head_only_post(url: str, path: str, length: int, headers: dict[str, str] | None = None) -> bytes:
    """POST promising a ``length``-byte body but sending only its first KB; the server's answer.

    A server that means to read the body waits for the rest, and this times out instead of answering."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
             f"Content-Length: {length}", *(f"{k}: {v}" for k, v in (headers or {}).items())]  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"{" + b" " * 1023)
        try:
            return sock.recv(65536)
        except TimeoutError as exc:
            raise AssertionError(f"no answer to a {length}-byte body: the server waits to read it") from exc


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# --- the Rasa server's limit, from the channels it serves -------------------------------------------------


def test_the_limit_is_just_above_the_largest_body_a_channel_accepts():
    assert MAX_REST_BODY_BYTES >= MAX_WIDGET_BODY_BYTES
    web = request_max_size(["rest", "website", "pupil"])
    assert web == MAX_REST_BODY_BYTES + BODY_MARGIN_BYTES
    assert web < 128 * 1024  # not Sanic's 100 MB
    assert request_max_size(["website", "pupil"]) == web  # REST off: the same small bound
    # Slack and Teams bodies are signed, have no SchoolGuide limit, and can hold a 40,000-character message.
    assert request_max_size(["rest", "website", "pupil", "slack"]) == PLATFORM_BODY_BYTES + BODY_MARGIN_BYTES
    assert request_max_size(["teams"]) == PLATFORM_BODY_BYTES + BODY_MARGIN_BYTES
    assert PLATFORM_BODY_BYTES < 100_000_000 // 50


@pytest.fixture(scope="module")
def rasa_server(tmp_path_factory, e2e):
    """The Rasa server as `schoolguide run` starts it (default channels: REST on loopback, both widgets)."""
    home = tmp_path_factory.mktemp("rasa-server")
    var_dir = home / "var"
    port = _free_port()
    settings = replace(
        Settings.from_env(), var_dir=var_dir, spool_dir=var_dir / "spool", rasa_port=port,
        bind_host="127.0.0.1", rest_token=None, slack_token=None, teams_app_id=None,
        database_url=f"sqlite:///{var_dir / 'schoolguide.db'}",
        tracker_database_url=f"sqlite:///{var_dir / 'tracker.db'}",
    )  # fmt: skip
    placeholder = home / "placeholder.tar.gz"  # not a model: Rasa logs that and serves without one
    placeholder.write_bytes(b"")
    command = server_commands(settings, placeholder)["rasa server"]
    env = rasa_env(settings)
    env.update({"SCHOOLGUIDE_VAR_DIR": str(var_dir), "SCHOOLGUIDE_WORKER": "off"})
    for name in ("SCHOOLGUIDE_BIND_HOST", "SCHOOLGUIDE_REST_TOKEN", "SANIC_REQUEST_MAX_SIZE"):
        env.pop(name, None)
    log = home / "rasa-server.log"
    with e2e.serve(command, env, log, f"http://127.0.0.1:{port}/", timeout=240):
        yield f"http://127.0.0.1:{port}", settings, log


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_body_over_the_limit_gets_413_without_being_read(rasa_server):
    url, settings, _ = rasa_server
    limit = request_max_size(enabled_channels(settings))
    for path in ("/webhooks/rest/webhook", "/webhooks/website/webhook", "/webhooks/pupil/webhook"):
        started = time.monotonic()
        answer = head_only_post(url, path, limit + 1)
        assert status_of(answer) == 413, (path, answer[:200])
        assert time.monotonic() - started < 10  # answered at once, not after a read timeout
    # Far beyond: the same, without reading 50 MB.
    assert status_of(head_only_post(url, "/webhooks/rest/webhook", 50_000_000)) == 413
    # A client that sends the whole body gets the channels' JSON error shape, not Sanic's page.
    response = requests.post(f"{url}/webhooks/rest/webhook", data=b"x" * (limit + 1), timeout=30,
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 413
    assert response.json() == {"error": f"the body is too large (at most {limit // 1024} KB)"}


def test_a_body_the_channel_may_still_refuse_reaches_the_channel(rasa_server):
    """Between the channel's own limit and Sanic's, the channel answers (its clearer 413), so the bound cuts
    nothing a channel would have read."""
    url, _, log = rasa_server
    body = json.dumps({"sender": "size", "message": "x" * (MAX_REST_BODY_BYTES + 100)})
    response = requests.post(f"{url}/webhooks/rest/webhook", data=body, timeout=30,
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 413
    assert "too large" in response.json()["error"]  # the channel's answer, not Sanic's
    assert "request bodies are read up to" in log.read_text(errors="replace")


# --- the action server's bound, from realistic trackers ----------------------------------------------------


def _action_call_bytes(turns: int, chars: int, text_char: str = "a") -> int:
    """The size of the body the Rasa server POSTs to the action server: Rasa's own request for a tracker of
    ``turns`` turns (message, parse data with entities and an intent ranking, the answer, a slot), with the
    project's domain."""
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker
    from rasa.utils.endpoints import EndpointConfig

    domain = Domain.load(str(PROJECT_ROOT / "domain.yml"))
    intents = list(domain.intents)
    metadata = {"school": "lunsford", "audience": "parent"}
    events = [ActionExecuted("action_session_start"), SessionStarted(), SlotSet("school", "lunsford"),
              SlotSet("audience", "parent"), ActionExecuted("action_listen")]  # fmt: skip
    answer = "A clause quoted in full, with its reference and the school's own words. " * 20  # ~1.5 KB
    for turn in range(turns):
        text = text_char * chars
        intent = {"name": intents[turn % len(intents)], "confidence": 0.91}
        entity = {"entity": "platform", "value": "snapchat", "start": 0, "end": 8}
        entities = [entity | {"confidence_entity": 1.0, "extractor": "RegexEntityExtractor"}]
        parse = {"text": text, "intent": intent, "entities": entities, "message_id": f"{turn:032x}",
                 "intent_ranking": [{"name": n, "confidence": 0.01} for n in intents[:10]],
                 "response_selector": {}, "metadata": metadata}  # fmt: skip
        events += [
            UserUttered(
                text,
                intent,
                entities,
                parse,
                input_channel="rest",
                message_id=f"{turn:032x}",
                metadata=metadata,
            ),
            ActionExecuted("action_answer_policy"),
            BotUttered(
                answer, {"buttons": [{"title": "Why?", "payload": "/ask_why"}]}, {"utter_action": None}
            ),
            SlotSet("topic", "sharing_photos"),
            ActionExecuted("action_listen"),
        ]
    tracker = DialogueStateTracker.from_events("rest-" + "s" * 40, events, domain.slots)
    call = RemoteAction("action_log_disclosure", EndpointConfig("http://x"))._action_call_format(
        tracker, domain
    )
    return len(json.dumps(call).encode())  # aiohttp's json.dumps: ASCII, non-ASCII as \uXXXX


def test_the_action_server_bound_holds_realistic_trackers_with_room_to_spare():
    from bot.action_server import MAX_ACTION_REQUEST_BYTES

    one_turn = _action_call_bytes(1, 40)
    busy_hour = _action_call_bytes(300, 200)  # a message every 12 seconds for an hour, 200 characters each
    heavy = _action_call_bytes(
        300, 2_000, "é"
    )  # long non-ASCII messages, each escaped to 6 bytes a character
    assert one_turn < 32 * 1024
    assert busy_hour < 3 * 1024 * 1024
    assert heavy <= MAX_ACTION_REQUEST_BYTES // 2, heavy
    assert MAX_ACTION_REQUEST_BYTES < 100_000_000 // 4  # far below Sanic's default
