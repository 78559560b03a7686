"""The Slack channel for staff (bot/channels/slack.py).

Slack's cloud cannot run here, so a local HTTP server stands in for its Web API (it records every
chat.postMessage and answers like Slack does, including Slack's refusal of ``as_user`` for new apps). Requests
*from* Slack are built and signed in the tests exactly as Slack builds them (v0 HMAC-SHA256).

* Unit tests: signatures, the retry memory, formatting, credentials; the output channel against the stand-in
  API; the webhook served by a real Sanic server in-process, with the dialogue engine replaced by a callback
  that records what it is handed.
* End-to-end tests (marked ``e2e``): the real ``schoolguide run`` stack with Slack switched on by its
  settings, posting to the stand-in API.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.util
import itertools
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
import requests
from slack_sdk.signature import Clock, SignatureVerifier

from bot.channels.limits import WebLimits
from bot.channels.slack import (
    RecentKeys,
    SchoolGuideSlackBot,
    SchoolGuideSlackInput,
    _chunks,
    credentials_entry,
    escape,
    normalise_base_url,
    policy_context_line,
    signature_problem,
)
from bot.channels.validation import MAX_MESSAGE_CHARS
from bot.settings import Settings

# Obviously not a real token (and it lives in tests/ only).
SLACK_TOKEN = "xoxb-test-not-a-real-token"
BOT_USER = "U0SCHOOLGUIDE"
JSON, FORM = "application/json", "application/x-www-form-urlencoded"
TEAM = "T0SCHOOL"
_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_ids):04d}{secrets.token_hex(3).upper()}"


# --- A stand-in for Slack's Web API ----------------------------------------------------------------------


class FakeSlackAPI:
    """A real HTTP server answering like https://slack.com/api/ for the methods SchoolGuide calls."""

    def __init__(self, token: str = SLACK_TOKEN) -> None:
        self.token = token
        self.calls: list[dict] = []
        self.errors: dict[str, str] = {}  # channel -> Slack error code to answer with
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                kind = (self.headers.get("Content-Type") or "").split(";")[0]
                body = json.loads(raw) if kind == "application/json" else dict(
                    pair.split("=", 1) for pair in raw.decode().split("&") if "=" in pair
                )  # fmt: skip
                method = self.path.removeprefix("/api/")
                call = {"method": method, "path": self.path, "auth": self.headers.get("Authorization"),
                        "body": body, "at": time.monotonic()}  # fmt: skip
                with api._lock:
                    api.calls.append(call)
                self._json(api.answer(call))

            def _json(self, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, call: dict) -> dict:
        body = call["body"]
        if call["auth"] != f"Bearer {self.token}":
            return {"ok": False, "error": "invalid_auth"}
        if call["method"] != "chat.postMessage":
            return {"ok": False, "error": "unknown_method"}
        if "as_user" in body:  # what Slack answers apps with granular bot scopes
            return {"ok": False, "error": "invalid_arguments", "deprecated_argument": "as_user"}
        channel = body.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.errors:
            return {"ok": False, "error": self.errors[channel]}
        if not body.get("text") and not body.get("blocks") and not body.get("attachments"):
            return {"ok": False, "error": "no_text"}
        ts = f"{time.time():.6f}"
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": body.get("text"), "ts": ts}}

    def posts(self, channel: str | None = None) -> list[dict]:
        with self._lock:
            bodies = [c["body"] for c in self.calls if c["method"] == "chat.postMessage"]
        return [b for b in bodies if channel is None or b.get("channel") == channel]

    def texts(self, channel: str) -> list[str]:
        return [unescape(b.get("text", "")) for b in self.posts(channel)]

    def __enter__(self) -> FakeSlackAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# --- Requests as Slack sends them ------------------------------------------------------------------------


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The v0 signature as Slack computes it, written out here (not slack_sdk's) to check the library."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, content_type: str = "application/json", timestamp=None) -> dict:
    """The headers Slack sends: the request timestamp and the v0 HMAC-SHA256 signature, computed here."""
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = slack_signature(secret, timestamp, body)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


def message_event(
    text: str,
    *,
    user: str,
    channel: str,
    kind: str = "message",
    channel_type: str = "im",
    event_id: str | None = None,
    ts: str | None = None,
    **extra,
) -> dict:
    """An Events API ``event_callback`` like Slack's, for a message or an @-mention."""
    ts = ts or f"{time.time():.6f}"
    event = {"type": kind, "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts, **extra}
    if channel_type:
        event["channel_type"] = channel_type
    return {
        "token": "verification-token-unused",
        "team_id": TEAM,
        "api_app_id": "A0SCHOOLGUIDE",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or unique("Ev"),
        "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
    }


def encode(body) -> bytes:
    return json.dumps(body).encode()


# --- Unit: signatures (slack_sdk's SignatureVerifier, and what is done before it) --------------------------


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def verifier(secret: str, now: float) -> SignatureVerifier:
    return SignatureVerifier(secret, clock=FixedClock(now))


def test_signature_matches_slacks_documented_example():
    # The worked example in Slack's "Verifying requests from Slack" guide.
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    assert slack_signature(secret, "1531420618", body) == expected
    checker = verifier(secret, now=1531420618 + 60)
    assert checker.generate_signature(timestamp="1531420618", body=body) == expected
    assert signature_problem(checker, "1531420618", expected, body) is None


def test_slack_sdk_signs_bytes_and_str_bodies_alike():
    # slack_sdk decodes a bytes body as UTF-8 and signs the re-encoded text: the same bytes for any UTF-8.
    secret, ts = secrets.token_hex(16), str(int(time.time()))
    body = encode({"type": "event_callback", "text": "café – 👍"})
    checker = SignatureVerifier(secret)
    signature = slack_signature(secret, ts, body)
    assert checker.is_valid(body, ts, signature) and checker.is_valid(body.decode(), ts, signature)
    assert signature_problem(checker, ts, signature, body) is None


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "body changed", "stale", "future", "no signature", "no timestamp", "not a number", "v1",
     "non-ascii signature", "not utf-8", "empty signature"],
)  # fmt: skip
def test_signature_problems(case):
    secret, body, now = "s3cret", b'{"type":"event_callback"}', 1_700_000_000
    ts, signature = str(now), slack_signature("s3cret", str(now), body)
    if case == "wrong secret":
        signature = slack_signature("other", ts, body)
    elif case == "body changed":
        body = body.replace(b"event", b"Event")
    elif case == "stale":
        now += 301
    elif case == "future":
        now -= 301
    elif case == "no signature":
        signature = None
    elif case == "no timestamp":
        ts = None
    elif case == "not a number":
        ts = "yesterday"
    elif case == "v1":
        signature = signature.replace("v0=", "v1=")
    elif case == "non-ascii signature":  # hmac.compare_digest would raise TypeError on this str
        signature = signature[:-1] + "é"
    elif case == "not utf-8":  # slack_sdk would raise UnicodeDecodeError; signed over the raw bytes here
        body = b"\xff\xfe" + body
        signature = slack_signature(secret, ts, body)
    elif case == "empty signature":
        signature = ""
    problem = signature_problem(verifier(secret, now), ts, signature, body)
    assert isinstance(problem, str) and problem


def test_signature_within_five_minutes_either_way_is_accepted():
    body, now = b"{}", 1_700_000_000
    for skew in (-300, -299, 0, 299, 300):
        ts = str(now + skew)
        assert signature_problem(verifier("k", now), ts, slack_signature("k", ts, body), body) is None
    for skew in (-301, 301):
        ts = str(now + skew)
        assert "five minutes" in signature_problem(
            verifier("k", now), ts, slack_signature("k", ts, body), body
        )


def test_the_signing_secret_is_not_in_a_refusal():
    secret = "a-signing-secret-" + secrets.token_hex(8)
    ts = str(int(time.time()))
    for sig in (slack_signature("other", ts, b"{}"), "v0=" + "0" * 64, "é"):
        problem = signature_problem(SignatureVerifier(secret), ts, sig, b"{}")
        assert problem and secret not in problem


# --- Unit: exactly once ----------------------------------------------------------------------------------


def test_recent_keys_remembers_and_is_bounded():
    recent = RecentKeys(capacity=3)
    assert not recent.seen(["event:1", "message:D1:1.0"])
    assert recent.seen(["event:1"])  # a retry
    assert recent.seen(["event:2", "message:D1:1.0"])  # the same message as another event
    assert "event:2" in recent  # ...whose id is remembered too
    assert not recent.seen([None, ""]) and len(recent) == 3
    for n in range(3, 10):
        recent.seen([f"event:{n}"])
    assert len(recent) == 3 and "event:1" not in recent and "event:9" in recent


# --- Unit: formatting and settings ------------------------------------------------------------------------


def test_text_is_escaped_and_kept_together():
    assert escape("Tom & Jerry <b>") == "Tom &amp; Jerry &lt;b&gt;"
    assert _chunks("Answer.\n\nSource: clause 4.") == ["Answer.\n\nSource: clause 4."]
    parts = _chunks("a" * 2000 + "\n\n" + "b" * 2000 + "\n\n" + "c" * 7000, limit=3000)
    assert parts[0] == "a" * 2000 and parts[1] == "b" * 2000 and all(len(p) <= 3000 for p in parts)
    assert "".join(parts[2:]) == "c" * 7000


def test_policy_payload_becomes_a_line_of_clause_ids():
    payload = {
        "type": "policy_answer",
        "clauses": [{"id": "lunsford-7", "section": "7.2"}, {"id": "x"}, "junk"],
    }
    assert policy_context_line(payload) == "Clauses cited: lunsford-7 (7.2); x"
    assert policy_context_line({"type": "policy_answer", "clauses": []}) is None


def _settings(monkeypatch, **env) -> Settings:
    for name in ("SLACK_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_API_BASE_URL"):
        monkeypatch.delenv(f"SCHOOLGUIDE_{name}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(f"SCHOOLGUIDE_{name}", value)
    return Settings.from_env()


def test_slack_is_off_without_both_secrets(monkeypatch):
    from bot.channels import CHANNEL_MODULES, credentials

    assert "bot.channels.slack" in CHANNEL_MODULES
    assert credentials_entry(_settings(monkeypatch)) is None
    assert credentials_entry(_settings(monkeypatch, SLACK_TOKEN=SLACK_TOKEN)) is None
    assert credentials_entry(_settings(monkeypatch, SLACK_SIGNING_SECRET="abc")) is None
    assert not any("slack" in key for key in credentials(_settings(monkeypatch)))


def test_slack_credentials_from_settings(monkeypatch):
    from bot.channels import credentials

    settings = _settings(
        monkeypatch, SLACK_TOKEN=SLACK_TOKEN, SLACK_SIGNING_SECRET="abc", DEFAULT_SCHOOL="scotts"
    )
    class_path, config = credentials_entry(settings)
    assert class_path == "bot.channels.slack.SchoolGuideSlackInput"
    assert config == {"slack_token": SLACK_TOKEN, "slack_signing_secret": "abc",
                      "api_base_url": "https://slack.com/api/", "default_school": "scotts",
                      "dedupe_database_url": settings.tracker_database_url}  # fmt: skip
    assert credentials(settings)[class_path] == config
    channel = SchoolGuideSlackInput.from_credentials(config)
    assert channel.name() == "slack" and channel.url_prefix() == "slack"
    assert channel.dedupe.durable is not None  # retries are remembered across processes
    assert channel.api_base_url == "https://slack.com/api/" and channel.default_school == "scotts"

    settings = _settings(monkeypatch, SLACK_TOKEN=SLACK_TOKEN, SLACK_SIGNING_SECRET="abc",
                         SLACK_API_BASE_URL="http://127.0.0.1:9/api")  # fmt: skip
    assert credentials_entry(settings)[1]["api_base_url"] == "http://127.0.0.1:9/api/"
    assert normalise_base_url("http://h/api//") == "http://h/api/"


def test_the_channel_refuses_to_run_without_a_signing_secret():
    from rasa.shared.exceptions import InvalidConfigException

    with pytest.raises(InvalidConfigException):
        SchoolGuideSlackInput.from_credentials({"slack_token": SLACK_TOKEN, "slack_signing_secret": ""})
    with pytest.raises(InvalidConfigException):  # slack_sdk's verifier refuses a blank secret
        SchoolGuideSlackInput.from_credentials({"slack_token": SLACK_TOKEN, "slack_signing_secret": "   "})
    with pytest.raises(Exception):  # noqa: B017 - Rasa raises its own missing-credentials error
        SchoolGuideSlackInput.from_credentials({"slack_signing_secret": "abc"})


# --- Unit: the output channel against the stand-in API --------------------------------------------------


@pytest.fixture
def slack_api():
    with FakeSlackAPI() as api:
        yield api


async def test_replies_go_to_the_configured_api_as_one_plain_message(slack_api):
    bot = SchoolGuideSlackBot(SLACK_TOKEN, "D0001", None, None, slack_api.base_url.rstrip("/"))
    await bot.send_text_message("slack:U1", "You must not <accept> it & say why.\n\nSource: Policy, 4.2: 'x'")
    [post] = slack_api.posts()
    assert slack_api.calls[0]["path"] == "/api/chat.postMessage"
    assert slack_api.calls[0]["auth"] == f"Bearer {SLACK_TOKEN}"
    assert post["channel"] == "D0001" and "as_user" not in post and "thread_ts" not in post
    assert post["text"] == "You must not &lt;accept&gt; it &amp; say why.\n\nSource: Policy, 4.2: 'x'"
    assert post["mrkdwn"] is False  # policy quotes verbatim: no *bold* from footnote asterisks

    threaded = SchoolGuideSlackBot(SLACK_TOKEN, "C0001", "1700000000.000100", None, slack_api.base_url)
    await threaded.send_custom_json(
        "slack:U1", {"type": "policy_answer", "clauses": [{"id": "c1", "section": "2"}]}
    )
    post = slack_api.posts("C0001")[-1]
    assert post["thread_ts"] == "1700000000.000100"
    assert post["blocks"] == [
        {"type": "context", "elements": [{"type": "plain_text", "text": "Clauses cited: c1 (2)"}]}
    ]


async def test_buttons_and_messages_outside_a_request(slack_api):
    # Rasa sends reminders etc. to the sender id; the Slack user id inside it opens the app's DM.
    bot = SchoolGuideSlackInput(SLACK_TOKEN, "abc", slack_api.base_url).get_output_channel()
    await bot.send_text_with_buttons(
        "slack:U77", "Did you mean:", [{"title": "Friend requests", "payload": "/ask"}]
    )
    [post] = slack_api.posts("U77")
    assert post["blocks"][1]["elements"][0]["value"] == "/ask" and post["text"] == "Did you mean:"


async def test_a_slack_api_error_is_logged_not_raised(slack_api, caplog):
    slack_api.errors["D0BAD"] = "not_in_channel"
    bot = SchoolGuideSlackBot(SLACK_TOKEN, "D0BAD", None, None, slack_api.base_url)
    await bot.send_text_message("slack:U1", "first\n\nsecond")
    await bot.send_custom_json("slack:U1", {"type": "something_else"})  # nothing Slack can show: not sent
    assert len(slack_api.posts("D0BAD")) == 1
    assert "not_in_channel" in caplog.text
    wrong_token = SchoolGuideSlackBot("xoxb-test-wrong", "D0BAD", None, None, slack_api.base_url)
    await wrong_token.send_text_message("slack:U1", "hello")
    assert "invalid_auth" in caplog.text


# --- Unit: the webhook, served in-process -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Webhook:
    def __init__(self, url: str, secret: str, received: list, session: aiohttp.ClientSession) -> None:
        self.url, self.secret, self.received, self.session = url, secret, received, session

    async def post(self, body: bytes, headers: dict | None = None, signed: bool = True, **sign):
        content_type = sign.pop("content_type", "application/json")
        all_headers = signed_headers(self.secret, body, content_type, **sign) if signed else {}
        all_headers.update(headers or {})
        async with self.session.post(self.url, data=body, headers=all_headers) as resp:
            text = await resp.text()
        for _ in range(5):  # let the background hand-off run
            await asyncio.sleep(0.01)
        return resp.status, text, resp.headers


async def _serve(channel: SchoolGuideSlackInput, received: list):
    """Serve ``channel``'s webhook from its own Sanic app; returns (server, webhook URL)."""
    from sanic import Sanic

    async def on_new_message(message):
        received.append(message)

    app = Sanic(unique("slack_test_"))
    app.blueprint(channel.blueprint(on_new_message), url_prefix="/webhooks/slack")
    port = _free_port()
    server = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    await server.startup()
    return server, f"http://127.0.0.1:{port}/webhooks/slack/webhook"


@pytest.fixture
async def webhook(slack_api, monkeypatch):
    from sanic import Sanic

    # Several Sanic apps in one process: test mode keeps Sanic's start-up code rewriting repeatable.
    monkeypatch.setattr(Sanic, "test_mode", True)
    received: list = []
    secret = secrets.token_hex(16)
    channel = SchoolGuideSlackInput(SLACK_TOKEN, secret, slack_api.base_url, "lunsford")
    server, url = await _serve(channel, received)
    async with aiohttp.ClientSession() as session:
        yield Webhook(url, secret, received, session)
    await server.close()


@pytest.fixture
async def two_processes(slack_api, monkeypatch, tmp_path):
    """Two Slack channels, as two Rasa processes (or one before and after a restart) run them: their own
    memory each, sharing only the tracker store's SQLite file."""
    from sanic import Sanic

    monkeypatch.setattr(Sanic, "test_mode", True)
    secret = secrets.token_hex(16)
    tracker_db = f"sqlite:///{tmp_path / 'var' / 'tracker.db'}"
    servers, hooks = [], []
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            received: list = []
            channel = SchoolGuideSlackInput(
                SLACK_TOKEN, secret, slack_api.base_url, "lunsford", dedupe_database_url=tracker_db
            )
            server, url = await _serve(channel, received)
            servers.append(server)
            hooks.append(Webhook(url, secret, received, session))
        yield hooks
    for server in servers:
        await server.close()


async def test_a_retry_reaching_another_process_is_not_answered_again(two_processes):
    first, second = two_processes
    body = encode(message_event("can staff follow pupils on instagram?", user="U200", channel="D200"))
    assert (await first.post(body))[0] == 200
    for number, reason in [("1", "http_timeout"), ("2", "http_error")]:
        status, _, headers = await second.post(
            body, {"X-Slack-Retry-Num": number, "X-Slack-Retry-Reason": reason}
        )
        assert status == 200 and headers.get("X-Slack-No-Retry") == "1"
    assert len(first.received) == 1 and second.received == []
    # A new event is still answered by whichever process gets it.
    other = encode(message_event("and on tiktok?", user="U200", channel="D200"))
    assert (await second.post(other))[0] == 200
    assert [m.text for m in second.received] == ["and on tiktok?"]


async def test_two_processes_given_the_same_event_at_once_answer_it_once(two_processes):
    first, second = two_processes
    for n in range(5):
        body = encode(message_event(f"question {n}", user="U201", channel="D201"))
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        results = await asyncio.gather(first.post(body), second.post(body, retry))
        assert [status for status, _, _ in results] == [200, 200]
        assert sum(1 for _, _, headers in results if headers.get("X-Slack-No-Retry") == "1") == 1
    assert sorted(m.text for m in first.received + second.received) == [f"question {n}" for n in range(5)]


async def test_one_message_as_two_events_in_two_processes_is_answered_once(two_processes):
    first, second = two_processes
    ts = "1700000000.000900"
    await first.post(encode(message_event("hi", user="U202", channel="D202", ts=ts)))
    await second.post(encode(message_event("hi", user="U202", channel="D202", ts=ts, kind="app_mention")))
    assert len(first.received) + len(second.received) == 1


async def test_a_button_clicked_once_is_answered_once_across_processes(two_processes):
    first, second = two_processes
    payload = {"type": "block_actions", "user": {"id": "U203"}, "channel": {"id": "D203"},
               "trigger_id": "9.8.7", "message": {"ts": "1.0"},
               "actions": [{"type": "button", "value": "/policy_minimum_age"}]}  # fmt: skip
    body = urlencode({"payload": json.dumps(payload)}).encode()
    await first.post(body, content_type=FORM)
    status, _, headers = await second.post(body, content_type=FORM)
    assert status == 200 and headers.get("X-Slack-No-Retry") == "1"
    assert len(first.received) == 1 and second.received == []


@pytest.mark.parametrize(
    "forgery",
    [
        "unsigned",
        "wrong secret",
        "stale",
        "future",
        "tampered",
        "timestamp not a number",
        "non-ascii signature",
    ],
)
async def test_unsigned_or_forged_requests_are_rejected(webhook, forgery, caplog):
    body = encode(message_event("hello", user="U1", channel="D1"))
    if forgery == "future":
        status, _, _ = await webhook.post(body, timestamp=int(time.time()) + 6 * 60)
    elif forgery == "timestamp not a number":
        headers = {**signed_headers(webhook.secret, body), "X-Slack-Request-Timestamp": "now"}
        status, _, _ = await webhook.post(body, signed=False, headers=headers)
    elif forgery == "non-ascii signature":
        headers = {**signed_headers(webhook.secret, body)}
        headers["X-Slack-Signature"] = headers["X-Slack-Signature"][:-1] + "é"
        status, _, _ = await webhook.post(body, signed=False, headers=headers)
    elif forgery == "unsigned":
        status, _, _ = await webhook.post(body, signed=False)
    elif forgery == "wrong secret":
        status, _, _ = await webhook.post(body, signed=False, headers=signed_headers("guess", body))
    elif forgery == "stale":
        status, _, _ = await webhook.post(body, timestamp=int(time.time()) - 6 * 60)
    else:
        headers = signed_headers(webhook.secret, body)
        status, _, _ = await webhook.post(body.replace(b"hello", b"HELLO"), signed=False, headers=headers)
    assert status == 401
    assert webhook.received == []
    assert webhook.secret not in caplog.text  # the signing secret is never logged


async def test_a_signed_body_that_is_not_utf8_cannot_be_verified_and_is_refused(webhook):
    # slack_sdk verifies the body as text; Slack only sends UTF-8, so anything else is not from Slack.
    for body in (b"\xff\xfe", b'{"type": "event_callback", "x": "\xe9"}'):
        status, text, _ = await webhook.post(body)
        assert status == 401 and "UTF-8" in text
    assert webhook.received == []


async def test_url_verification_echoes_the_challenge(webhook):
    status, text, _ = await webhook.post(
        encode({"token": "t", "challenge": "3eZbrw1aBm2rZgRN", "type": "url_verification"})
    )
    assert (status, text) == (200, "3eZbrw1aBm2rZgRN")


@pytest.mark.parametrize(
    "body, content_type",
    [(b"{not json", JSON), (b"[1, 2]", JSON), (b"", JSON),
     (b'{"type": "event_callback", "event": 5}', JSON),
     (b"payload=%7Bbroken", FORM), (b"nothing=here", FORM)],
)  # fmt: skip
async def test_malformed_bodies_get_a_400(webhook, body, content_type):
    status, _, _ = await webhook.post(body, content_type=content_type)
    assert status == 400
    assert webhook.received == []


async def test_a_direct_message_reaches_the_bot_as_staff(webhook):
    body = message_event("Can I accept a friend request from a former pupil?", user="U100", channel="D100")
    status, _, _ = await webhook.post(encode(body))
    assert status == 200
    [message] = webhook.received
    assert message.text == "Can I accept a friend request from a former pupil?"
    assert message.sender_id == "slack:U100" and message.input_channel == "slack"
    assert message.metadata["audience"] == "staff"
    assert message.metadata["school"] == "lunsford" and message.metadata["channel"] == "slack"
    assert message.output_channel.slack_channel == "D100" and message.output_channel.thread_id is None


async def test_a_channel_mention_is_answered_in_a_thread_without_the_mention(webhook):
    body = message_event(f"<@{BOT_USER}> can staff post photos of pupils?", user="U101", channel="C100",
                         kind="app_mention", channel_type=None, ts="1700000000.000200")  # fmt: skip
    await webhook.post(encode(body))
    [message] = webhook.received
    assert message.text == "can staff post photos of pupils?"
    assert message.output_channel.slack_channel == "C100"
    assert message.output_channel.thread_id == "1700000000.000200"


@pytest.mark.parametrize(
    "event",
    [
        {"bot_id": "B1"},  # another bot, or our own reply
        {"user": BOT_USER},  # our own user
        {"subtype": "bot_message"},
        {"subtype": "message_changed"},
        {"subtype": "message_deleted"},
        {"subtype": "channel_join"},
        {"channel_type": "channel"},  # channel chatter that does not mention SchoolGuide
        {"type": "reaction_added"},
        {"text": None},
    ],
)
async def test_messages_not_for_the_bot_are_ignored(webhook, event):
    body = message_event("hello", user="U102", channel="D102")
    body["event"].update(event)
    status, _, _ = await webhook.post(encode(body))
    assert status == 200
    assert webhook.received == []


async def test_a_retried_event_is_answered_once(webhook):
    body = encode(message_event("what is the policy on snapchat?", user="U103", channel="D103"))
    assert (await webhook.post(body))[0] == 200
    for number, reason in [("1", "http_timeout"), ("2", "http_error"), ("3", "unknown_error")]:
        status, _, headers = await webhook.post(
            body, {"X-Slack-Retry-Num": number, "X-Slack-Retry-Reason": reason}
        )
        assert status == 200 and headers.get("X-Slack-No-Retry") == "1"
    assert (await webhook.post(body))[0] == 200  # the same event id again, without retry headers
    assert len(webhook.received) == 1


async def test_a_retry_of_an_event_we_never_received_is_answered(webhook):
    body = encode(message_event("is whatsapp allowed?", user="U104", channel="D104"))
    await webhook.post(body, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"})
    await webhook.post(body, {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_error"})
    assert len(webhook.received) == 1


async def test_one_message_delivered_as_two_events_is_answered_once(webhook):
    first = message_event("hi", user="U105", channel="D105", ts="1700000000.000300")
    second = message_event("hi", user="U105", channel="D105", ts="1700000000.000300", kind="app_mention")
    await webhook.post(encode(first))
    await webhook.post(encode(second))
    assert len(webhook.received) == 1


async def test_a_button_click_is_sent_as_its_payload(webhook):
    payload = {"type": "block_actions", "user": {"id": "U106"}, "channel": {"id": "D106"},
               "trigger_id": "1.2.3", "message": {"ts": "1.0"},
               "actions": [{"type": "button", "value": "/ask_staff_befriend_pupils"}]}  # fmt: skip
    body = urlencode({"payload": json.dumps(payload)}).encode()
    status, _, _ = await webhook.post(body, content_type=FORM)
    assert status == 200
    await webhook.post(body, content_type=FORM)  # the same click again
    [message] = webhook.received
    assert message.text == "/ask_staff_befriend_pupils" and message.sender_id == "slack:U106"
    assert message.metadata["audience"] == "staff"


# --- Message length and rate limits, as on the web channels ------------------------------------------------


async def test_a_long_message_is_cut_to_the_web_channels_limit_not_refused(webhook):
    text = "a year 5 girl just told me an adult asked her for photos. " + "x" * (MAX_MESSAGE_CHARS + 2000)
    status, _, _ = await webhook.post(encode(message_event(text, user="U300", channel="D300")))
    assert status == 200
    [message] = webhook.received  # cut, not refused: a long disclosure still reaches the detector
    assert message.text == text[:MAX_MESSAGE_CHARS]


async def test_broken_unicode_and_control_characters_are_cleaned(webhook):
    status, _, _ = await webhook.post(
        encode(message_event("ok?\ud83d\x00 thanks", user="U301", channel="D301"))
    )
    assert status == 200
    [message] = webhook.received
    assert message.text == "ok?\ufffd  thanks"


@pytest.fixture
async def make_webhook(slack_api, monkeypatch):
    """Serve channels built with the given options (``limits=...``); closed at the end of the test."""
    from sanic import Sanic

    monkeypatch.setattr(Sanic, "test_mode", True)
    servers = []
    async with aiohttp.ClientSession() as session:

        async def make(**options) -> Webhook:
            received: list = []
            secret = secrets.token_hex(16)
            channel = SchoolGuideSlackInput(SLACK_TOKEN, secret, slack_api.base_url, "lunsford", **options)
            server, url = await _serve(channel, received)
            servers.append(server)
            return Webhook(url, secret, received, session)

        yield make
    for server in servers:
        await server.close()


async def _told_to_wait(slack_api, channel: str, count: int = 1) -> list[str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        told = [t for t in slack_api.texts(channel) if "send it again" in t]
        if len(told) >= count:
            await asyncio.sleep(0.2)
            return [t for t in slack_api.texts(channel) if "send it again" in t]
        await asyncio.sleep(0.05)
    return []


async def test_a_person_over_the_rate_limit_is_told_once_and_not_handled(make_webhook, slack_api):
    hook = await make_webhook(limits=WebLimits(per_sender=2, per_ip=0, may_be_disclosure=lambda text: False))
    for n in range(5):
        status, _, headers = await hook.post(
            encode(message_event(f"question {n}", user="U310", channel="D310"))
        )
        assert status == 200
        if n >= 2:  # acknowledged, so Slack does not retry it
            assert headers.get("X-Slack-No-Retry") == "1"
    assert [m.text for m in hook.received] == ["question 0", "question 1"]
    [told] = await _told_to_wait(slack_api, "D310")  # once, not once per refused message
    assert "seconds" in told
    # A button click counts too; someone else is not held up.
    click = {
        "type": "block_actions",
        "user": {"id": "U310"},
        "channel": {"id": "D310"},
        "trigger_id": "5.5.5",
        "actions": [{"type": "button", "value": "/policy_minimum_age"}],
    }
    status, _, headers = await hook.post(
        urlencode({"payload": json.dumps(click)}).encode(), content_type=FORM
    )
    assert status == 200 and headers.get("X-Slack-No-Retry") == "1"
    await hook.post(encode(message_event("hello", user="U311", channel="D311")))
    assert [m.sender_id for m in hook.received] == ["slack:U310", "slack:U310", "slack:U311"]


async def test_the_rate_limit_never_swallows_a_first_disclosure(make_webhook):
    from bot.safeguarding.detector import get_detector

    get_detector()  # loaded before the buckets start (the Rasa server loads it at start-up)
    hook = await make_webhook(limits=WebLimits(per_sender=1, per_ip=0))  # the real detector decides
    disclosure = "a year 5 girl just told me an adult asked her for photos"
    for text in ("hello", "what about tiktok?", disclosure):
        assert (await hook.post(encode(message_event(text, user="U320", channel="D320"))))[0] == 200
    assert [m.text for m in hook.received] == ["hello", disclosure]


async def test_without_its_own_limits_slack_uses_the_web_channels_per_sender_limit(
    make_webhook, monkeypatch, fresh_settings
):
    from bot.channels import limits as limits_module
    from bot.settings import get_settings

    monkeypatch.setenv("SCHOOLGUIDE_RATE_LIMIT_PER_SENDER", "1")
    get_settings.cache_clear()
    limits_module._shared.cache_clear()
    try:
        hook = await make_webhook()
        await hook.post(encode(message_event("first", user="U330", channel="D330")))
        _, _, headers = await hook.post(encode(message_event("second", user="U330", channel="D330")))
        assert headers.get("X-Slack-No-Retry") == "1"
        assert [m.text for m in hook.received] == ["first"]
    finally:
        limits_module._shared.cache_clear()


# --- End to end: the real stack with Slack switched on ----------------------------------------------------


def _e2e_helpers():
    """The shared ``start_stack`` / ``stop_stack`` (a conftest is not importable by name: find its module)."""
    tests = Path(__file__).resolve().parent.parent
    for path in (tests / "conftest.py", tests / "e2e" / "conftest.py"):
        if not path.exists():
            continue
        loaded = [m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(path)]
        if not loaded:  # pytest has not imported it (or under another path): load it ourselves
            name = f"schoolguide_stack_helpers_{path.parent.name}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            loaded = [module]
        if hasattr(loaded[0], "start_stack"):
            return loaded[0]
    raise RuntimeError("no conftest with start_stack found")


class SlackStack:
    def __init__(self, stack, api: FakeSlackAPI, secret: str) -> None:
        self.stack, self.api, self.secret = stack, api, secret
        self.url = f"{stack.rasa_url}/webhooks/slack/webhook"

    def post(self, body, headers: dict | None = None, signed: bool = True) -> requests.Response:
        raw = body if isinstance(body, bytes) else encode(body)
        all_headers = signed_headers(self.secret, raw) if signed else {"Content-Type": "application/json"}
        all_headers.update(headers or {})
        return requests.post(self.url, data=raw, headers=all_headers, timeout=30)

    def ask(self, text: str, *, user: str, channel: str, **event) -> requests.Response:
        return self.post(message_event(text, user=user, channel=channel, **event))

    def wait_for_posts(self, channel: str, condition, timeout: float = 90) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            texts = self.api.texts(channel)
            if condition(texts):
                return texts
            time.sleep(0.25)
        raise AssertionError(f"no matching reply in {channel} within {timeout}s: {self.api.posts(channel)}")


@pytest.fixture(scope="module")
def slack_stack(project_root, tmp_path_factory):
    helpers = _e2e_helpers()
    secret = secrets.token_hex(16)
    with FakeSlackAPI() as api:
        env = {
            "SCHOOLGUIDE_SLACK_TOKEN": SLACK_TOKEN,
            "SCHOOLGUIDE_SLACK_SIGNING_SECRET": secret,
            "SCHOOLGUIDE_SLACK_API_BASE_URL": api.base_url,
        }
        stack, proc = helpers.start_stack(project_root, tmp_path_factory.mktemp("slack") / "var", env)
        try:
            yield SlackStack(stack, api, secret)
        finally:
            helpers.stop_stack(proc)


def _buttons(post: dict) -> dict[str, str]:
    """A post's buttons, title -> value."""
    return {
        element["text"]["text"]: element["value"]
        for block in post.get("blocks") or []
        if block.get("type") == "actions"
        for element in block["elements"]
    }


@pytest.mark.e2e
def test_e2e_staff_question_gets_the_cited_staff_answer(slack_stack):
    from bot.knowledge import get_knowledge

    question = "Can I accept a friend request from a former pupil?"
    user, channel = unique("U"), unique("D")
    assert slack_stack.ask(question, user=user, channel=channel).status_code == 200

    def answered_or_offered(texts):
        return any("Source:" in t for t in texts) or any(_buttons(p) for p in slack_stack.api.posts(channel))

    slack_stack.wait_for_posts(channel, answered_or_offered)
    said = question
    offered = [_buttons(p) for p in slack_stack.api.posts(channel) if _buttons(p)]
    if offered:
        # The model was not sure and offered topics as buttons (the first stage of the fallback): click the
        # one for former pupils, as a member of staff would, through Slack's signed interactivity request.
        [value] = [v for title, v in offered[0].items() if "former pupils" in title.lower()]
        click = {"type": "block_actions", "user": {"id": user}, "channel": {"id": channel},
                 "trigger_id": unique("trigger."), "message": {"ts": f"{time.time():.6f}"},
                 "actions": [{"type": "button", "value": value}]}  # fmt: skip
        raw = urlencode({"payload": json.dumps(click)}).encode()
        clicked = slack_stack.post(raw, signed=False, headers=signed_headers(slack_stack.secret, raw, FORM))
        assert clicked.status_code == 200
        said = value
    texts = slack_stack.wait_for_posts(
        channel, lambda t: any("Source:" in x for x in t) and any(x.startswith("Clauses cited:") for x in t)
    )
    [answer_text] = [t for t in texts if "Source:" in t]
    [context] = [t for t in texts if t.startswith("Clauses cited:")]

    # The default school's staff answer, with its citation: the same as the REST channel gives staff.
    school = slack_stack.stack.env.get("SCHOOLGUIDE_DEFAULT_SCHOOL", "lunsford")
    rest = slack_stack.stack.say(unique("rest-staff-"), said, {"school": school, "audience": "staff"})
    [payload] = [m["custom"] for m in rest if "custom" in m]
    assert payload["type"] == "policy_answer"
    assert (payload["school"], payload["audience"]) == (school, "staff")
    if offered:
        assert payload["topic"] == "staff-befriend-former-pupils"
    kb = get_knowledge()
    expected = kb.answer(school, payload["topic"], "staff")
    rest_texts = [m["text"] for m in rest if "text" in m]
    assert answer_text == "\n\n".join(rest_texts)  # one Slack message: the answer and its citation
    assert answer_text.startswith(f"{expected.text}\n\nSource: {kb.schools[school].name}")
    assert expected.clauses[0].quote[:30] in answer_text
    assert context == "Clauses cited: " + "; ".join(f"{c['id']} ({c['section']})" for c in payload["clauses"])
    posts = slack_stack.api.posts(channel)
    assert all(p.get("mrkdwn") is False or "blocks" in p for p in posts)
    assert all("thread_ts" not in p for p in posts)  # a DM is answered in the DM


@pytest.mark.e2e
def test_e2e_forged_and_stale_requests_are_rejected_and_nothing_is_posted(slack_stack):
    user, channel = unique("U"), unique("D")
    body = message_event("Can I accept a friend request from a former pupil?", user=user, channel=channel)
    raw = encode(body)
    forged = slack_stack.post(raw, signed=False, headers=signed_headers("not-the-secret", raw))
    unsigned = slack_stack.post(raw, signed=False)
    stale = slack_stack.post(
        raw, signed=False, headers=signed_headers(slack_stack.secret, raw, timestamp=int(time.time()) - 400)
    )
    assert (forged.status_code, unsigned.status_code, stale.status_code) == (401, 401, 401)
    # A genuine message afterwards is answered; the forged ones never were.
    slack_stack.ask("hello", user=user, channel=channel)
    texts = slack_stack.wait_for_posts(channel, bool)
    time.sleep(2)
    assert not any("Source:" in t for t in slack_stack.api.texts(channel)), texts


@pytest.mark.e2e
def test_e2e_a_retried_event_is_answered_exactly_once(slack_stack):
    # A disclosure, so "once" can be checked where it matters most: one reply, one case for the DSL.
    user, channel = unique("U"), unique("D")
    message = "a year 5 girl just told me an adult asked her for photos"
    body = message_event(message, user=user, channel=channel)
    assert slack_stack.post(body).status_code == 200
    for number, reason in [("1", "http_error"), ("2", "http_timeout"), ("3", "unknown_error")]:
        retry = slack_stack.post(body, {"X-Slack-Retry-Num": number, "X-Slack-Retry-Reason": reason})
        assert retry.status_code == 200 and retry.headers.get("X-Slack-No-Retry") == "1"
    slack_stack.wait_for_posts(channel, lambda t: "SG-" in " ".join(t))
    # A later message from the same person is handled after everything before it (Rasa's per-sender lock).
    before = len(slack_stack.api.posts(channel))
    slack_stack.ask("hello", user=user, channel=channel)
    slack_stack.wait_for_posts(channel, lambda t: len(t) > before)
    time.sleep(3)
    texts = slack_stack.api.texts(channel)
    assert len([t for t in texts if "Do not investigate" in t]) == 1, texts
    records = [d for d in _disclosures(slack_stack.stack.env) if d["sender_id"] == f"slack:{user}"]
    assert len(records) == 1 and records[0]["text"] == message


@pytest.mark.e2e
def test_e2e_url_verification_and_malformed_requests(slack_stack):
    challenge = secrets.token_urlsafe(24)
    verification = slack_stack.post({"token": "t", "challenge": challenge, "type": "url_verification"})
    assert (verification.status_code, verification.text) == (200, challenge)
    assert slack_stack.post(b"{this is not json").status_code == 400
    assert slack_stack.post(b'["an", "array"]').status_code == 400
    channel = unique("D")
    own = message_event("Clauses cited: x", user=BOT_USER, channel=channel, bot_id="B0SCHOOLGUIDE")
    assert slack_stack.post(own).status_code == 200
    assert requests.get(f"{slack_stack.stack.rasa_url}/webhooks/slack/", timeout=10).json() == {
        "status": "ok"
    }
    time.sleep(2)
    assert slack_stack.api.posts(channel) == []  # its own message is not answered (no loop)


def _disclosures(env: dict) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "disclosures", "list", "--json", "--by", "e2e-slack-test"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(out.stdout)


@pytest.mark.e2e
def test_e2e_staff_disclosure_gets_the_safe_staff_reply_and_reference(slack_stack):
    user, channel = unique("U"), unique("C")
    message = "a year 5 girl just told me an adult asked her for photos"
    body = message_event(f"<@{BOT_USER}> {message}", user=user, channel=channel, kind="app_mention",
                         channel_type=None)  # fmt: skip
    assert slack_stack.post(body).status_code == 200
    texts = slack_stack.wait_for_posts(
        channel, lambda t: "Do not investigate" in " ".join(t) and "SG-" in " ".join(t)
    )
    posts = slack_stack.api.posts(channel)
    assert all(p.get("thread_ts") == body["event"]["ts"] for p in posts)  # in a thread under the mention
    assert not any(t.startswith("Clauses cited:") for t in texts)  # never a policy answer
    [record] = [d for d in _disclosures(slack_stack.stack.env) if d["sender_id"] == f"slack:{user}"]
    assert record["text"] == message
    assert (record["audience"], record["school"]) == ("staff", "lunsford")
    assert record["reference"] in " ".join(texts)
