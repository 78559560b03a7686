"""The Teams channel, for real: JWTs signed with a test RSA key, checked against keys served over HTTP.

Microsoft's cloud cannot run here, so three local HTTP servers stand in for it: the Bot Framework's OpenID
metadata + JWKS (login.botframework.com), the tenant's token endpoint (login.microsoftonline.com) and the Bot
Connector service URL that replies are posted to. Everything else is the real code: the validator and token
provider on their own, the channel's webhook served by Sanic, and (marked e2e) the whole stack started with
``schoolguide run``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from bot.channels import teams
from bot.channels.limits import WebLimits
from bot.channels.teams import (
    AuthError,
    JwtValidator,
    KeysUnavailable,
    TeamsInput,
    TeamsOutput,
    TokenError,
    TokenProvider,
)
from bot.channels.validation import MAX_MESSAGE_CHARS

APP_ID = "5a4d1c7e-0b9f-4c1e-9d55-1f2e3a4b5c6d"
APP_PASSWORD = "test-client-secret~not-a-real-one"
TENANT_ID = "8c1f0e52-3b7a-4d2e-a1c4-7e9d6b2f0a13"
OTHER_TENANT_ID = "00000000-1111-2222-3333-444444444444"
ISSUER = "https://api.botframework.com"
ACCESS_TOKEN = "eyJ0eXAi.test-access-token.for-the-bot-connector"
CONVERSATION = "19:3f2a9c1b@thread.tacv2;messageid=1700000000001"
STAFF_AAD_ID = "d3b07384-d9a0-4c9b-8f1e-2a7c5e4b6f10"  # the person's Entra object id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private_key: rsa.RSAPrivateKey, kid: str, endorsements=("msteams", "webchat")) -> dict:
    jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "kty": "RSA"})
    if endorsements is not None:
        jwk["endorsements"] = list(endorsements)
    return jwk


# --- Local stand-ins for Microsoft's servers ---------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    def form(self) -> dict:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


class FakeServer:
    """A real HTTP server on 127.0.0.1: ``route(request) -> (status, json body)``; records every request."""

    def __init__(self, route):
        self.route = route
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(self.command, self.path, dict(self.headers.items()), body)
                with server.lock:
                    server.requests.append(recorded)
                status, payload = server.route(recorded)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def recorded(self, method=None, path_prefix="") -> list[Recorded]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and r.path.startswith(path_prefix)
            ]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class FakeMicrosoft:
    """(1) OpenID metadata + JWKS, (2) the tenant's token endpoint, (3) a Bot Connector service URL."""

    key: rsa.RSAPrivateKey = field(default_factory=new_key)
    kid: str = "test-key-1"
    token_status: int = 200
    service_status: list = field(default_factory=list)  # statuses to answer posts with, in turn (then 200)
    jwks_down: bool = False  # the keys endpoint answers 503 (the metadata document is still served)

    def __post_init__(self):
        self.jwks = [public_jwk(self.key, self.kid)]
        self.login = FakeServer(self._login)
        self.token_server = FakeServer(self._token)
        self.service = FakeServer(self._service)
        self.metadata_url = f"{self.login.url}/v1/.well-known/openidconfiguration"
        self.token_url = f"{self.token_server.url}/{TENANT_ID}/oauth2/v2.0/token"
        self.service_url = f"{self.service.url}/emea/"

    def _login(self, request: Recorded):
        if request.path == "/v1/.well-known/openidconfiguration":
            return 200, {
                "issuer": ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": f"{self.login.url}/v1/.well-known/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        if request.path == "/v1/.well-known/keys":
            if self.jwks_down:
                return 503, {"error": "unavailable"}
            return 200, {"keys": list(self.jwks)}
        return 404, {"error": "not found"}

    def _token(self, request: Recorded):
        if request.method != "POST" or request.path != f"/{TENANT_ID}/oauth2/v2.0/token":
            return 404, {"error": "not found"}
        if self.token_status != 200:
            return self.token_status, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: bad secret",
            }
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3600,
            "ext_expires_in": 3600,
            "access_token": ACCESS_TOKEN,
        }

    def _service(self, request: Recorded):
        if self.service_status:
            return self.service_status.pop(0), {"error": {"code": "test"}}
        return 200, {"id": uuid.uuid4().hex}

    # What the Bot Framework would send.

    def jwt(self, key=None, kid=None, **claims) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": APP_ID,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 600,
            "serviceurl": self.service_url,
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})

    def activity(self, text: str, conversation: str = CONVERSATION, **extra) -> dict:
        activity = {
            "type": "message",
            "id": f"1700000{uuid.uuid4().int % 10**6}",
            "timestamp": "2024-01-15T09:30:00.000Z",
            "serviceUrl": self.service_url,
            "channelId": "msteams",
            "from": {"id": "29:1staffmember-abc", "name": "Ms Example", "aadObjectId": STAFF_AAD_ID},
            "conversation": {"id": conversation, "conversationType": "channel", "tenantId": TENANT_ID},
            "recipient": {"id": f"28:{APP_ID}", "name": "SchoolGuide"},
            "text": text,
            "textFormat": "plain",
            "channelData": {"tenant": {"id": TENANT_ID}, "teamsChannelId": "19:3f2a9c1b@thread.tacv2"},
        }
        activity.update(extra)
        return activity

    def posted(self, conversation: str = CONVERSATION) -> list[Recorded]:
        prefix = "/emea/v3/conversations/"
        return [
            r
            for r in self.service.recorded("POST", prefix)
            if unquote(r.path[len(prefix) :].removesuffix("/activities")) == conversation
        ]

    def close(self):
        for server in (self.login, self.token_server, self.service):
            server.close()


@pytest.fixture
def ms():
    fake = FakeMicrosoft()
    yield fake
    fake.close()


async def wait_until(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not met")


# --- The validator on its own -------------------------------------------------------------------------------


async def test_a_valid_bot_framework_token_is_accepted(ms):
    validator = JwtValidator(APP_ID, ms.metadata_url)
    token = await validator.validate(f"Bearer {ms.jwt()}")
    assert token.claims["aud"] == APP_ID and token.claims["iss"] == ISSUER
    assert token.endorsements == ("msteams", "webchat")
    validator.check_activity(token, ms.activity("hi"))
    # Keys were fetched once, by way of the metadata document's jwks_uri.
    assert [r.path for r in ms.login.requests] == [
        "/v1/.well-known/openidconfiguration",
        "/v1/.well-known/keys",
    ]
    await validator.validate(f"Bearer {ms.jwt()}")
    assert len(ms.login.requests) == 2  # cached


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda ms: None, id="no header"),
        pytest.param(lambda ms: "", id="empty header"),
        pytest.param(lambda ms: ms.jwt(), id="no Bearer prefix"),
        pytest.param(lambda ms: "Basic dXNlcjpwYXNz", id="basic auth"),
        pytest.param(lambda ms: "Bearer not-a-jwt", id="garbage"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(key=new_key()), id="signed with another key, same kid"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(key=new_key(), kid="attacker-key"), id="unknown key id"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(aud="some-other-bot"), id="wrong audience"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(aud=None), id="no audience"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(iss="https://sts.windows.net/evil/"), id="wrong issuer"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(iss=None), id="no issuer"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(exp=int(time.time()) - 3600), id="expired an hour ago"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(exp=int(time.time()) - 400), id="expired beyond the skew"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(exp=None), id="no expiry"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(nbf=int(time.time()) + 3600), id="not valid yet"),
        pytest.param(
            lambda ms: (
                "Bearer "
                + jwt.encode(
                    {"iss": ISSUER, "aud": APP_ID, "exp": int(time.time()) + 600},
                    "a-shared-secret-of-at-least-32-bytes!",
                    algorithm="HS256",
                    headers={"kid": ms.kid},
                )
            ),
            id="HS256 instead of RS256",
        ),  # fmt: skip
        pytest.param(
            lambda ms: (
                "Bearer "
                + jwt.encode(
                    {"iss": ISSUER, "aud": APP_ID, "exp": int(time.time()) + 600},
                    None,
                    algorithm="none",
                    headers={"kid": ms.kid},
                )
            ),
            id="unsigned (alg none)",
        ),  # fmt: skip
    ],
)
async def test_bad_tokens_are_refused(ms, make_header):
    validator = JwtValidator(APP_ID, ms.metadata_url)
    with pytest.raises(AuthError):
        await validator.validate(make_header(ms))


async def test_expiry_allows_a_little_clock_skew(ms):
    validator = JwtValidator(APP_ID, ms.metadata_url)
    await validator.validate("Bearer " + ms.jwt(exp=int(time.time()) - 60))
    strict = JwtValidator(APP_ID, ms.metadata_url, leeway=0)
    with pytest.raises(AuthError):
        await strict.validate("Bearer " + ms.jwt(exp=int(time.time()) - 60))


async def test_accepted_issuers_can_be_configured(ms):
    emulator_issuer = f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"
    validator = JwtValidator(APP_ID, ms.metadata_url, issuers=[ISSUER, emulator_issuer])
    await validator.validate("Bearer " + ms.jwt(iss=emulator_issuer))
    await validator.validate("Bearer " + ms.jwt())
    only_emulator = JwtValidator(APP_ID, ms.metadata_url, issuers=[emulator_issuer])
    with pytest.raises(AuthError):
        await only_emulator.validate("Bearer " + ms.jwt())


async def test_by_default_the_issuer_comes_from_the_metadata_document(ms):
    validator = JwtValidator(APP_ID, ms.metadata_url)
    await validator.validate("Bearer " + ms.jwt())
    assert validator.accepted_issuers() == (ISSUER,)


async def test_a_new_signing_key_is_fetched_when_a_token_names_it(ms):
    validator = JwtValidator(APP_ID, ms.metadata_url, unknown_key_refresh=0)
    await validator.validate("Bearer " + ms.jwt())
    assert validator.refreshes == 1
    # Microsoft rotates its keys: a token signed with the new one makes us fetch the keys again.
    rotated = new_key()
    ms.jwks.append(public_jwk(rotated, "test-key-2"))
    await validator.validate("Bearer " + ms.jwt(key=rotated, kid="test-key-2"))
    assert validator.refreshes == 2
    await validator.validate("Bearer " + ms.jwt(key=rotated, kid="test-key-2"))
    assert validator.refreshes == 2


async def test_unknown_key_ids_cannot_make_us_refetch_keys_in_a_loop(ms):
    # PyJWKClient's cooldown: after a fetch, an unknown key id fetches again only once the cooldown is over.
    junk_key = new_key()
    validator = JwtValidator(APP_ID, ms.metadata_url, unknown_key_refresh=2.0)
    await validator.validate("Bearer " + ms.jwt())
    for i in range(5):
        with pytest.raises(AuthError, match="unknown key"):
            await validator.validate("Bearer " + ms.jwt(key=junk_key, kid=f"junk-{i}"))
    assert validator.refreshes == 1
    await asyncio.sleep(2.1)
    with pytest.raises(AuthError, match="unknown key"):
        await validator.validate("Bearer " + ms.jwt(key=junk_key, kid="junk-later"))
    assert validator.refreshes == 2
    assert len(ms.login.recorded("GET", "/v1/.well-known/openidconfiguration")) == 1  # metadata kept


async def test_keys_are_refreshed_when_they_expire_and_cached_keys_survive_an_outage(ms):
    validator = JwtValidator(APP_ID, ms.metadata_url, keys_max_age=0.5)
    await validator.validate("Bearer " + ms.jwt())
    await asyncio.sleep(0.6)
    await validator.validate("Bearer " + ms.jwt())
    assert validator.refreshes == 2
    ms.login.close()
    await asyncio.sleep(0.6)
    await validator.validate("Bearer " + ms.jwt())  # refresh failed; the last keys still check the token
    assert validator.refreshes == 2
    with pytest.raises(AuthError):  # ...and still refuse what they did not sign
        await validator.validate("Bearer " + ms.jwt(key=new_key()))


def _metadata_server(jwks_uri: str) -> FakeServer:
    """An OpenID metadata document naming ``jwks_uri``."""

    def route(request):
        return 200, {
            "issuer": ISSUER,
            "jwks_uri": jwks_uri,
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    return FakeServer(route)


async def test_unreachable_keys_are_reported_as_unavailable():
    login = _metadata_server(f"http://127.0.0.1:{free_port()}/keys")  # nothing listens there
    try:
        validator = JwtValidator(APP_ID, f"{login.url}/v1/.well-known/openidconfiguration")
        token = jwt.encode({"aud": APP_ID}, new_key(), algorithm="RS256", headers={"kid": "k"})
        with pytest.raises(KeysUnavailable):
            await validator.validate(f"Bearer {token}")
    finally:
        login.close()


async def test_a_keys_endpoint_that_answers_nonsense_is_reported_as_unavailable():
    keys = FakeServer(lambda request: (200, ["not", "a", "key", "set"]))
    login = _metadata_server(f"{keys.url}/keys")
    try:
        validator = JwtValidator(APP_ID, f"{login.url}/meta")
        token = jwt.encode({"aud": APP_ID}, new_key(), algorithm="RS256", headers={"kid": "k"})
        with pytest.raises(KeysUnavailable):
            await validator.validate(f"Bearer {token}")
    finally:
        login.close()
        keys.close()


class HangingServer:
    """Accepts connections and never answers (a keys endpoint that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self):
        self.sock.close()


async def test_a_hanging_keys_endpoint_times_out_without_blocking_the_event_loop():
    hanging = HangingServer()
    login = _metadata_server(f"{hanging.url}/keys")
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    running = asyncio.ensure_future(ticker())
    try:
        validator = JwtValidator(APP_ID, f"{login.url}/meta", timeout=1.0)
        token = jwt.encode({"aud": APP_ID}, new_key(), algorithm="RS256", headers={"kid": "k"})
        started = time.monotonic()
        with pytest.raises(KeysUnavailable):
            await validator.validate(f"Bearer {token}")
        waited = time.monotonic() - started
        assert 0.9 <= waited < 5  # PyJWKClient's timeout, not forever
        assert ticks >= 10  # the event loop kept running while urllib waited (in a worker thread)
    finally:
        running.cancel()
        login.close()
        hanging.close()


async def test_the_openid_metadata_is_kept_while_a_refresh_fails(ms):
    validator = JwtValidator(APP_ID, ms.metadata_url, keys_max_age=0.5, unknown_key_refresh=60)
    await validator.validate("Bearer " + ms.jwt())
    ms.login.close()
    await asyncio.sleep(0.6)
    for _ in range(3):
        await validator.validate("Bearer " + ms.jwt())
    assert validator.accepted_issuers() == (ISSUER,)


async def test_no_keys_at_all_is_reported_as_unavailable_not_as_a_bad_token():
    validator = JwtValidator(APP_ID, f"http://127.0.0.1:{free_port()}/v1/.well-known/openidconfiguration")
    token = jwt.encode({"aud": APP_ID}, new_key(), algorithm="RS256", headers={"kid": "k"})
    with pytest.raises(KeysUnavailable):
        await validator.validate(f"Bearer {token}")


async def test_the_token_must_name_the_activitys_service_url_and_channel(ms):
    validator = JwtValidator(APP_ID, ms.metadata_url)
    token = await validator.validate("Bearer " + ms.jwt())
    validator.check_activity(token, ms.activity("hi"))
    validator.check_activity(token, ms.activity("hi", serviceUrl=ms.service_url.rstrip("/")))
    with pytest.raises(AuthError):
        validator.check_activity(token, ms.activity("hi", serviceUrl="https://attacker.example/"))
    with pytest.raises(AuthError):
        validator.check_activity(token, {k: v for k, v in ms.activity("hi").items() if k != "serviceUrl"})
    with pytest.raises(AuthError):  # the key is not endorsed for this channel
        validator.check_activity(token, ms.activity("hi", channelId="slack"))
    without_claim = await validator.validate("Bearer " + ms.jwt(serviceurl=None))
    validator.check_activity(without_claim, ms.activity("hi"))


def test_replies_only_go_to_https_or_this_machine():
    assert teams.service_url_allowed("https://smba.trafficmanager.net/emea/")
    assert teams.service_url_allowed("http://127.0.0.1:3978/")
    assert teams.service_url_allowed("http://localhost:3978/")
    assert not teams.service_url_allowed("http://smba.trafficmanager.net/emea/")
    assert not teams.service_url_allowed("ftp://example.org/")
    assert not teams.service_url_allowed("not a url")


# --- The outgoing token -------------------------------------------------------------------------------------


def test_the_token_url_is_the_tenants_own():
    assert (
        teams.token_url_for(TENANT_ID) == f"https://login.microsoftonline.com/{TENANT_ID}/oauth2/v2.0/token"
    )
    assert "botframework.com" not in teams.token_url_for(TENANT_ID)


async def test_the_token_is_a_client_credentials_grant_and_is_cached_until_it_expires(ms):
    now = [0.0]
    tokens = TokenProvider(APP_ID, APP_PASSWORD, ms.token_url, clock=lambda: now[0])
    assert await tokens.token() == ACCESS_TOKEN
    [request] = ms.token_server.requests
    assert request.method == "POST" and request.path == f"/{TENANT_ID}/oauth2/v2.0/token"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.form() == {
        "grant_type": "client_credentials",
        "client_id": APP_ID,
        "client_secret": APP_PASSWORD,
        "scope": "https://api.botframework.com/.default",
    }
    now[0] = 3000  # well within the hour: cached
    assert await tokens.token() == ACCESS_TOKEN
    assert len(ms.token_server.requests) == 1
    now[0] = 3600 - 299  # within 5 minutes of expiry: renewed
    await tokens.token()
    assert len(ms.token_server.requests) == 2


async def test_concurrent_replies_share_one_token_request(ms):
    tokens = TokenProvider(APP_ID, APP_PASSWORD, ms.token_url)
    assert set(await asyncio.gather(*(tokens.token() for _ in range(10)))) == {ACCESS_TOKEN}
    assert len(ms.token_server.requests) == 1


async def test_a_refused_token_request_says_why(ms):
    ms.token_status = 401
    tokens = TokenProvider(APP_ID, "wrong secret", ms.token_url)
    with pytest.raises(TokenError, match="AADSTS7000215"):
        await tokens.token()


# --- Replies ------------------------------------------------------------------------------------------------


def _output(ms) -> TeamsOutput:
    tokens = TokenProvider(APP_ID, APP_PASSWORD, ms.token_url)
    activity = ms.activity("hi")
    return TeamsOutput(
        tokens,
        activity["conversation"],
        activity["recipient"],
        activity["serviceUrl"],
        activity["from"],
        "1:x",
    )


async def test_a_reply_is_posted_to_the_service_url_with_the_token(ms):
    out = _output(ms)
    await out.send_text_message(f"teams:{STAFF_AAD_ID}", "No.\n\nSource: Lunsford, 4.2")
    [post] = ms.posted()
    assert post.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    body = post.json()
    assert body["type"] == "message" and body["text"] == "No.\n\nSource: Lunsford, 4.2"
    assert body["recipient"] == {"id": "29:1staffmember-abc", "name": "Ms Example"}  # the Teams account
    assert body["from"] == {"id": f"28:{APP_ID}", "name": "SchoolGuide"}
    assert body["conversation"] == {"id": CONVERSATION} and body["replyToId"] == "1:x"


async def test_buttons_become_a_hero_card_that_sends_the_payload(ms):
    out = _output(ms)
    buttons = [
        {"title": "Minimum ages", "payload": "/policy_minimum_age"},
        {"title": "Something else", "payload": "/deny"},
    ]
    await out.send_text_with_buttons("29:u", "Did you mean one of these?", buttons)
    [card] = ms.posted()[0].json()["attachments"]
    assert card["contentType"] == "application/vnd.microsoft.card.hero"
    assert card["content"]["text"] == "Did you mean one of these?"
    assert card["content"]["buttons"][0] == {
        "type": "messageBack",
        "title": "Minimum ages",
        "text": "/policy_minimum_age",
        "displayText": "Minimum ages",
    }


async def test_widget_payloads_are_not_sent_to_teams(ms):
    out = _output(ms)
    await out.send_custom_json("29:u", {"type": "policy_answer", "school": "lunsford", "clauses": []})
    assert ms.posted() == []
    await out.send_custom_json(
        "29:u", {"attachments": [{"contentType": "application/vnd.microsoft.card.adaptive"}]}
    )
    [post] = ms.posted()
    assert post.json()["type"] == "message" and post.json()["recipient"]["id"] == "29:1staffmember-abc"


async def test_a_rejected_token_is_renewed_once(ms):
    ms.service_status.append(401)
    out = _output(ms)
    await out.send_text_message("29:u", "hello")
    assert len(ms.posted()) == 2  # refused, then sent again with a fresh token
    assert len(ms.token_server.requests) == 2


# --- The webhook, served by Sanic (the dialogue engine replaced by an echo) --------------------------------


async def _serve(ms, received: list, limits=None, **credentials):
    """A Teams channel (``credentials`` added to the test ones; its own rate ``limits`` if given) served by
    its own Sanic app, echoing every message; returns (server, post) where
    ``post(activity=None, auth=None, body=None)`` -> (status, text)."""
    from sanic import Sanic

    channel = TeamsInput.from_credentials(
        {
            "app_id": APP_ID,
            "app_password": APP_PASSWORD,
            "tenant_id": TENANT_ID,
            "openid_metadata_url": ms.metadata_url,
            "token_url": ms.token_url,
            "school": "lunsford",
            **credentials,
        }
    )
    channel.limits = limits

    async def on_new_message(message):
        received.append(message)
        await message.output_channel.send_text_message(message.sender_id, f"echo: {message.text}")

    app = Sanic(f"teams_test_{uuid.uuid4().hex[:12]}")
    app.blueprint(channel.blueprint(on_new_message), url_prefix=f"/webhooks/{channel.name()}")
    port = free_port()
    server = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    await server.startup()
    await server.start_serving()

    async def post(activity=None, auth=None, body=None):
        headers = {"Content-Type": "application/json"}
        if auth is not None:
            headers["Authorization"] = auth
        data = body if body is not None else json.dumps(activity)
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"http://127.0.0.1:{port}/webhooks/teams/webhook", data=data, headers=headers
            ) as r:
                return r.status, await r.text()

    return server, post


@pytest.fixture
async def webhook(ms, monkeypatch):
    from sanic import Sanic

    # Sanic's own switch for starting several apps in one process (it keeps its start-up rewrites reusable).
    monkeypatch.setattr(Sanic, "test_mode", True)
    received: list = []
    server, post = await _serve(ms, received)
    yield post, received
    server.close()
    await server.wait_closed()


async def test_webhook_answers_a_signed_message_via_the_service_url(ms, webhook):
    post, received = webhook
    status, _ = await post(ms.activity("<at>SchoolGuide</at> can staff follow pupils?"), f"Bearer {ms.jwt()}")
    assert status == 202
    [reply] = await wait_until(ms.posted)
    assert reply.json()["text"] == "echo: can staff follow pupils?"
    assert reply.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    [message] = received
    assert message.metadata == {"audience": "staff", "channel": "teams", "school": "lunsford"}
    assert message.sender_id == f"teams:{STAFF_AAD_ID}" and message.input_channel == "teams"


async def test_webhook_answers_a_redelivered_activity_only_once(ms, webhook):
    post, received = webhook
    activity = ms.activity("who do I tell?")
    assert (await post(activity, f"Bearer {ms.jwt()}"))[0] == 202
    assert (await post(activity, f"Bearer {ms.jwt()}"))[0] == 200  # the Bot Framework retried
    await wait_until(ms.posted)
    await asyncio.sleep(0.3)
    assert len(received) == 1 and len(ms.posted()) == 1
    assert (await post(ms.activity("who do I tell?"), f"Bearer {ms.jwt()}"))[0] == 202  # a new activity id


@pytest.fixture
async def two_processes(ms, monkeypatch, tmp_path):
    """Two Teams channels, as two Rasa processes (or one before and after a restart) run them: their own
    memory each, sharing only the tracker store's SQLite file."""
    from sanic import Sanic

    monkeypatch.setattr(Sanic, "test_mode", True)
    tracker_db = f"sqlite:///{tmp_path / 'var' / 'tracker.db'}"
    servers, posts, received = [], [], []
    for _ in range(2):
        handled: list = []
        server, post = await _serve(ms, handled, dedupe_database_url=tracker_db)
        servers.append(server)
        received.append(handled)

        async def signed(activity, post=post):
            return await post(activity, f"Bearer {ms.jwt()}")

        posts.append(signed)
    yield posts, received
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_a_redelivery_reaching_another_process_is_not_answered_again(ms, two_processes):
    (first, second), (first_handled, second_handled) = two_processes
    activity = ms.activity("can I accept a friend request from a parent?")
    assert (await first(activity))[0] == 202
    status, text = await second(activity)  # the Bot Framework retried, and the retry went elsewhere
    assert status == 200 and json.loads(text) == {"status": "duplicate"}
    await wait_until(ms.posted)
    await asyncio.sleep(0.3)
    assert len(first_handled) == 1 and second_handled == [] and len(ms.posted()) == 1
    assert (await second(ms.activity("who do I tell?")))[0] == 202  # a new activity is answered


async def test_two_processes_given_the_same_activity_at_once_answer_it_once(ms, two_processes):
    (first, second), (first_handled, second_handled) = two_processes
    activities = [ms.activity(f"question {n}") for n in range(4)]
    for activity in activities:
        statuses = sorted(status for status, _ in await asyncio.gather(first(activity), second(activity)))
        assert statuses == [200, 202]
    await asyncio.sleep(0.3)
    assert sorted(m.text for m in first_handled + second_handled) == [f"question {n}" for n in range(4)]


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(lambda ms: None, id="missing"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(key=new_key()), id="other key"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(aud="another-bot"), id="wrong audience"),
        pytest.param(lambda ms: "Bearer " + ms.jwt(exp=int(time.time()) - 3600), id="expired"),
        pytest.param(
            lambda ms: "Bearer " + ms.jwt(serviceurl="https://smba.trafficmanager.net/amer/"),
            id="other serviceurl",
        ),
    ],
)
async def test_webhook_refuses_bad_tokens_and_processes_nothing(ms, webhook, auth):
    post, received = webhook
    status, _ = await post(ms.activity("can staff follow pupils?"), auth(ms))
    assert status == 401
    await asyncio.sleep(0.3)
    assert received == [] and ms.posted() == [] and ms.token_server.requests == []


async def test_webhook_refuses_bad_tokens_before_reading_the_body(ms, webhook):
    post, received = webhook
    status, _ = await post(body="{not json", auth=None)
    assert status == 401


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("{not json", id="malformed JSON"),
        pytest.param("[1, 2]", id="not an object"),
        pytest.param("", id="empty"),
    ],
)
async def test_webhook_rejects_malformed_bodies_with_400(ms, webhook, body):
    post, received = webhook
    status, text = await post(body=body, auth=f"Bearer {ms.jwt()}")
    assert status == 400 and "error" in json.loads(text)
    assert received == []


async def test_webhook_rejects_incomplete_activities_with_400(ms, webhook):
    post, received = webhook
    for broken in (
        {**ms.activity("hi"), "conversation": None},
        {**ms.activity("hi"), "from": {}},
        {**ms.activity("hi"), "text": ["x"]},
    ):
        status, _ = await post(broken, f"Bearer {ms.jwt()}")
        assert status == 400
    # Our access token is only ever sent to an https service URL (or this machine).
    plain_http = "http://smba.trafficmanager.net/emea/"
    status, _ = await post(
        {**ms.activity("hi"), "serviceUrl": plain_http}, f"Bearer {ms.jwt(serviceurl=plain_http)}"
    )
    assert status == 400
    assert received == []


async def test_webhook_ignores_other_activity_types_and_other_tenants(ms, webhook):
    post, received = webhook
    status, _ = await post(ms.activity("", type="conversationUpdate"), f"Bearer {ms.jwt()}")
    assert status == 200
    other = ms.activity("hi", channelData={"tenant": {"id": OTHER_TENANT_ID}})
    other["conversation"]["tenantId"] = OTHER_TENANT_ID
    status, _ = await post(other, f"Bearer {ms.jwt()}")
    assert status == 403
    await asyncio.sleep(0.3)
    assert received == [] and ms.posted() == []


async def test_webhook_says_503_when_the_keys_cannot_be_fetched(ms, webhook):
    post, _ = webhook
    ms.login.close()
    status, _ = await post(ms.activity("hi"), f"Bearer {ms.jwt()}")
    assert status == 503


async def test_webhook_says_503_when_only_the_keys_endpoint_is_down(ms, webhook):
    post, received = webhook
    ms.jwks_down = True
    status, _ = await post(ms.activity("hi"), f"Bearer {ms.jwt()}")
    assert status == 503 and received == []


# --- Message length and rate limits, as on the web channels -------------------------------------------------


async def test_webhook_cuts_a_long_message_to_the_web_channels_limit(ms, webhook):
    post, received = webhook
    text = "A year 5 girl just told me an adult asked her for photos. " + "x" * (MAX_MESSAGE_CHARS + 5000)
    status, _ = await post(ms.activity(text), f"Bearer {ms.jwt()}")
    assert status == 202  # cut, not refused: a long disclosure still reaches the detector
    [message] = received
    assert message.text == text[:MAX_MESSAGE_CHARS]


async def test_webhook_cleans_broken_unicode_and_control_characters(ms, webhook):
    post, received = webhook
    status, _ = await post(ms.activity("is this ok?\ud83d\x00 thanks"), f"Bearer {ms.jwt()}")
    assert status == 202
    [message] = received
    assert message.text == "is this ok?\ufffd  thanks"


def _told_to_wait(ms) -> list[str]:
    return [p.json()["text"] for p in ms.posted() if "send it again" in p.json().get("text", "")]


@pytest.fixture
async def limited_webhook(ms, monkeypatch):
    """The webhook with 2 messages a minute per person; "told me" marks a possible disclosure."""
    from sanic import Sanic

    monkeypatch.setattr(Sanic, "test_mode", True)
    received: list = []
    limits = WebLimits(per_sender=2, per_ip=0, may_be_disclosure=lambda text: "told me" in text)
    server, post = await _serve(ms, received, limits=limits)
    yield post, received
    server.close()
    await server.wait_closed()


async def test_a_person_over_the_rate_limit_is_told_once_and_not_handled(ms, limited_webhook):
    post, received = limited_webhook
    statuses = []
    for n in range(5):
        status, text = await post(ms.activity(f"question {n}"), f"Bearer {ms.jwt()}")
        statuses.append(status)
        if status == 200:
            assert json.loads(text)["status"] == "too many messages" and json.loads(text)["retry_after"] >= 1
    assert statuses == [202, 202, 200, 200, 200]
    await wait_until(lambda: len(ms.posted()) >= 3)
    await asyncio.sleep(0.3)
    assert [m.text for m in received] == ["question 0", "question 1"]
    [told] = _told_to_wait(ms)  # once, not once per refused message
    assert "seconds" in told
    # Someone else is not held up.
    other = {"id": "29:another-staff-member", "aadObjectId": "0f0e0d0c-aaaa-bbbb-cccc-000000000001"}
    status, _ = await post(ms.activity("question from someone else", **{"from": other}), f"Bearer {ms.jwt()}")
    assert status == 202 and received[-1].sender_id == f"teams:{other['aadObjectId']}"


async def test_the_rate_limit_never_swallows_a_first_disclosure(ms, limited_webhook):
    post, received = limited_webhook
    for n in range(3):
        await post(ms.activity(f"question {n}"), f"Bearer {ms.jwt()}")
    disclosure = "A pupil just told me an adult asked her for photos"
    status, _ = await post(ms.activity(disclosure), f"Bearer {ms.jwt()}")
    assert status == 202 and received[-1].text == disclosure
    # The exemption is once a minute per person: a flood of look-alikes is still limited.
    status, _ = await post(ms.activity(disclosure + " again"), f"Bearer {ms.jwt()}")
    assert status == 200
    assert [m.text for m in received] == ["question 0", "question 1", disclosure]


async def test_without_its_own_limits_teams_uses_the_web_channels_per_sender_limit(
    ms, webhook, monkeypatch, fresh_settings
):
    from bot.channels import limits as limits_module
    from bot.settings import get_settings

    post, received = webhook
    monkeypatch.setenv("SCHOOLGUIDE_RATE_LIMIT_PER_SENDER", "1")
    get_settings.cache_clear()
    limits_module._shared.cache_clear()
    try:
        assert (await post(ms.activity("first"), f"Bearer {ms.jwt()}"))[0] == 202
        assert (await post(ms.activity("second"), f"Bearer {ms.jwt()}"))[0] == 200
        assert [m.text for m in received] == ["first"]
    finally:
        limits_module._shared.cache_clear()


# --- Settings -> credentials -------------------------------------------------------------------------------


def _settings(fresh_settings, **changes):
    from dataclasses import replace

    return replace(fresh_settings, **changes)


def test_teams_is_off_unless_app_id_password_and_tenant_are_all_set(fresh_settings):
    full = dict(teams_app_id=APP_ID, teams_app_password=APP_PASSWORD, teams_tenant_id=TENANT_ID)
    assert teams.credentials_entry(_settings(fresh_settings, **dict.fromkeys(full))) is None
    for missing in full:
        assert teams.credentials_entry(_settings(fresh_settings, **{**full, missing: None})) is None
    class_path, config = teams.credentials_entry(_settings(fresh_settings, **full))
    assert class_path == "bot.channels.teams.TeamsInput"
    assert config["token_url"] == f"https://login.microsoftonline.com/{TENANT_ID}/oauth2/v2.0/token"
    assert (
        config["openid_metadata_url"] == "https://login.botframework.com/v1/.well-known/openidconfiguration"
    )
    assert config["school"] == fresh_settings.default_school
    assert config["dedupe_database_url"] == fresh_settings.tracker_database_url
    channel = TeamsInput.from_credentials(config)  # what Rasa does with the entry; fetches nothing yet
    assert channel.name() == "teams" and channel.tokens.token_url == config["token_url"]
    assert channel.dedupe.durable is not None  # re-deliveries are remembered across processes


def test_settings_from_the_environment_enable_the_channel(monkeypatch, tmp_path):
    from bot.channels import credentials
    from bot.settings import Settings

    monkeypatch.setenv("SCHOOLGUIDE_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("SCHOOLGUIDE_TEAMS_APP_ID", APP_ID)
    monkeypatch.setenv("SCHOOLGUIDE_TEAMS_APP_PASSWORD", APP_PASSWORD)
    monkeypatch.setenv("SCHOOLGUIDE_TEAMS_TENANT_ID", TENANT_ID)
    monkeypatch.setenv("SCHOOLGUIDE_TEAMS_TOKEN_URL", "http://127.0.0.1:1/token")
    entries = credentials(Settings.from_env())
    assert entries["bot.channels.teams.TeamsInput"]["token_url"] == "http://127.0.0.1:1/token"
    assert entries["bot.channels.teams.TeamsInput"]["app_password"] == APP_PASSWORD


# --- The app package in docs/teams -------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "teams"


def _manifest() -> dict:
    return json.loads((DOCS / "manifest.json").read_text())


def test_the_manifest_example_follows_the_teams_schema_limits():
    manifest = _manifest()
    assert manifest["$schema"].endswith(f"/v{manifest['manifestVersion']}/MicrosoftTeams.schema.json")
    assert tuple(int(n) for n in manifest["manifestVersion"].split(".")) >= (1, 16)
    for key in ("version", "id", "developer", "name", "description", "icons", "accentColor", "bots"):
        assert key in manifest, key
    assert set(manifest["developer"]) >= {"name", "websiteUrl", "privacyUrl", "termsOfUseUrl"}
    assert len(manifest["name"]["short"]) <= 30 and len(manifest["name"]["full"]) <= 100
    assert len(manifest["description"]["short"]) <= 80 and len(manifest["description"]["full"]) <= 4000
    [bot] = manifest["bots"]
    assert bot["botId"] == manifest["id"] == "{{MICROSOFT_APP_ID}}"
    assert bot["scopes"] == ["personal", "team"] and not bot["isNotificationOnly"]
    for command_list in bot["commandLists"]:
        assert set(command_list["scopes"]) <= set(bot["scopes"])
        assert 0 < len(command_list["commands"]) <= 10
        for command in command_list["commands"]:
            assert len(command["title"]) <= 32 and len(command["description"]) <= 128
    assert manifest["validDomains"] == ["{{HOST}}"]
    placeholders = {
        "{{MICROSOFT_APP_ID}}",
        "{{HOST}}",
        "{{SCHOOL_NAME}}",
        "{{SCHOOL_WEBSITE}}",
        "{{PRIVACY_NOTICE_URL}}",
    }
    import re

    found = set(re.findall(r"\{\{[A-Z_]+\}\}", (DOCS / "manifest.json").read_text()))
    assert found == placeholders
    readme = (DOCS / "README.md").read_text()
    assert all(p in readme for p in placeholders)  # the guide says what to put in each


def test_the_manifest_icons_are_the_sizes_teams_requires():
    from PIL import Image

    icons = _manifest()["icons"]
    with Image.open(DOCS / icons["color"]) as color:
        assert color.format == "PNG" and color.size == (192, 192)
    with Image.open(DOCS / icons["outline"]) as outline:
        assert outline.format == "PNG" and outline.size == (32, 32)
        pixels = list(outline.convert("RGBA").getdata())
        assert pixels[0][3] == 0  # transparent background
        assert all(p[:3] == (255, 255, 255) for p in pixels if p[3] > 0)  # white outline


def test_the_guide_gives_the_webhook_this_channel_serves():
    readme = (DOCS / "README.md").read_text()
    assert f"https://<host>/webhooks/{TeamsInput.name()}/webhook" in readme
    for name in ("SCHOOLGUIDE_TEAMS_APP_ID", "SCHOOLGUIDE_TEAMS_APP_PASSWORD", "SCHOOLGUIDE_TEAMS_TENANT_ID"):
        assert name in readme


# --- The whole stack ----------------------------------------------------------------------------------------


def _e2e_helpers():
    """The module with the shared ``start_stack`` / ``stop_stack`` (a conftest cannot be imported by name)."""
    tests = Path(__file__).resolve().parents[1]
    for path in (tests / "conftest.py", tests / "e2e" / "conftest.py"):
        if not path.exists():
            continue
        module = next(
            (m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(path)), None
        )
        if module is None:  # not imported by pytest under this path: load it ourselves
            name = f"schoolguide_teams_stack_helpers_{path.parent.name}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        if hasattr(module, "start_stack"):
            return module
    raise RuntimeError("no conftest with start_stack found")


@pytest.fixture(scope="module")
def teams_stack(project_root, tmp_path_factory):
    helpers = _e2e_helpers()
    fake = FakeMicrosoft()
    env = {
        "SCHOOLGUIDE_TEAMS_APP_ID": APP_ID,
        "SCHOOLGUIDE_TEAMS_APP_PASSWORD": APP_PASSWORD,
        "SCHOOLGUIDE_TEAMS_TENANT_ID": TENANT_ID,
        "SCHOOLGUIDE_TEAMS_OPENID_METADATA_URL": fake.metadata_url,
        "SCHOOLGUIDE_TEAMS_TOKEN_URL": fake.token_url,
        "SCHOOLGUIDE_DEFAULT_SCHOOL": "lunsford",
        "SCHOOLGUIDE_DEFAULT_AUDIENCE": "parent",
    }
    stack, proc = helpers.start_stack(project_root, tmp_path_factory.mktemp("teams") / "var", env)
    try:
        yield stack, fake
    finally:
        helpers.stop_stack(proc)
        fake.close()


def _post(stack, activity, auth=None, body=None):
    import requests

    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    data = body if body is not None else json.dumps(activity)
    return requests.post(f"{stack.rasa_url}/webhooks/teams/webhook", data=data, headers=headers, timeout=30)


def _wait_for_posts(fake, conversation, count=1, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        posts = fake.posted(conversation)
        if len(posts) >= count:
            return posts
        time.sleep(0.2)
    raise TimeoutError(f"no reply posted to {conversation} within {timeout}s")


@pytest.mark.e2e
def test_stack_answers_a_staff_question_from_teams_with_the_cited_clause(teams_stack):
    from bot.knowledge import get_knowledge

    stack, fake = teams_stack
    conversation = "a:1personal-chat-staff-e2e"
    question = "Are teachers allowed to add current pupils on their personal Instagram?"
    response = _post(stack, fake.activity(question, conversation), f"Bearer {fake.jwt()}")
    assert response.status_code == 202, response.text
    [reply] = _wait_for_posts(fake, conversation)
    assert reply.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    body = reply.json()
    assert body["type"] == "message" and body["recipient"]["id"] == "29:1staffmember-abc"
    answer, source = body["text"].split("\n\n", 1)
    # The staff wording (the deployment's default audience is parent: the channel said "staff").
    kb = get_knowledge()
    staff = {
        kb.answer("lunsford", t, "staff").text for t in ("staff-befriend-pupils", "pupils-befriend-staff")
    }
    assert answer in staff
    assert source.startswith("Source: Lunsford Primary School")

    # The outgoing token came from the tenant's endpoint with the client-credentials grant...
    [token_request] = fake.token_server.requests
    assert token_request.path == f"/{TENANT_ID}/oauth2/v2.0/token"
    assert token_request.form()["grant_type"] == "client_credentials"
    assert token_request.form()["client_id"] == APP_ID
    assert token_request.form()["scope"] == "https://api.botframework.com/.default"

    # ...and is reused for the next reply.
    response = _post(stack, fake.activity("where does it say that?", conversation), f"Bearer {fake.jwt()}")
    assert response.status_code == 202
    second = _wait_for_posts(fake, conversation, count=2)[1]
    assert "Lunsford Primary School Social Media Policy" in second.json()["text"]
    assert len(fake.token_server.requests) == 1


@pytest.mark.e2e
def test_stack_answers_the_commands_the_manifest_suggests(teams_stack):
    stack, fake = teams_stack
    [command_list] = _manifest()["bots"][0]["commandLists"]
    for i, command in enumerate(command_list["commands"]):
        conversation = f"a:1manifest-command-{i}"
        activity = fake.activity(
            command["title"], conversation, **{"from": {"id": f"29:cmd{i}", "aadObjectId": f"cmd-{i}"}}
        )
        assert _post(stack, activity, f"Bearer {fake.jwt()}").status_code == 202
        [reply] = _wait_for_posts(fake, conversation)
        assert "Source:" in reply.json()["text"], (command["title"], reply.json()["text"])


@pytest.mark.e2e
@pytest.mark.parametrize(
    "name, auth",
    [
        ("missing", lambda fake: None),
        ("other-key", lambda fake: "Bearer " + fake.jwt(key=new_key())),
        ("unknown-kid", lambda fake: "Bearer " + fake.jwt(key=new_key(), kid="not-microsofts")),
        ("wrong-audience", lambda fake: "Bearer " + fake.jwt(aud="another-bots-app-id")),
        ("expired", lambda fake: "Bearer " + fake.jwt(exp=int(time.time()) - 3600)),
        ("wrong-issuer", lambda fake: "Bearer " + fake.jwt(iss="https://example.org")),
    ],
)
def test_stack_refuses_requests_without_a_valid_token(teams_stack, name, auth):
    stack, fake = teams_stack
    conversation = f"a:1refused-{name}"
    response = _post(stack, fake.activity("can staff follow pupils on instagram?", conversation), auth(fake))
    assert response.status_code == 401
    # Give a wrongly accepted message time to be answered; nothing may reach the service URL.
    time.sleep(2)
    assert fake.posted(conversation) == []


@pytest.mark.e2e
def test_stack_hands_a_disclosure_from_teams_to_the_dsl(teams_stack):
    import subprocess

    stack, fake = teams_stack
    conversation, object_id = "a:1personal-chat-disclosure", "6f1c2d3e-4a5b-4c6d-9e8f-0a1b2c3d4e5f"
    message = "A year 5 girl just told me an adult she met on Roblox asked her for photos"
    sender = {"id": "29:1staffmember-disclosure", "name": "Mr Example", "aadObjectId": object_id}
    activity = fake.activity(message, conversation, **{"from": sender})
    assert _post(stack, activity, f"Bearer {fake.jwt()}").status_code == 202
    posts = _wait_for_posts(fake, conversation, count=2)
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "disclosures", "list", "--json", "--by", "e2e-test"],
        env=stack.env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    # The record names the person by Entra object id, which IT can look up (Entra admin centre -> Users).
    [record] = [d for d in json.loads(out.stdout) if d["sender_id"] == f"teams:{object_id}"]
    assert record["channel"] == "teams"
    assert (record["school"], record["audience"], record["text"]) == ("lunsford", "staff", message)
    text = " ".join(p.json().get("text", "") for p in posts)
    assert "Do not investigate" in text and record["reference"] in text


@pytest.mark.e2e
def test_stack_rejects_a_malformed_body_with_400(teams_stack):
    stack, fake = teams_stack
    response = _post(stack, None, f"Bearer {fake.jwt()}", body="{not json")
    assert response.status_code == 400
    assert _post(stack, None, None, body="{not json").status_code == 401
