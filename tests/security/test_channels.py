"""Finding 2 (sender ids not bound to a channel) and finding 5 (unbounded input, no rate limit), through the
REST, website and pupil channels' real Sanic blueprints served in-process, with the dialogue engine replaced
by a recorder: what reaches ``on_new_message`` is what Rasa would store."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import aiohttp
import pytest

from bot.channels import credentials
from bot.channels.identity import ConversationIds
from bot.channels.limits import WebLimits
from bot.channels.pupil import PupilInput
from bot.channels.rest import ValidatingRestInput
from bot.channels.website import WebsiteInput

DISCLOSURE = "my teacher touched me and told me to keep it a secret"
OTHER_CHANNELS = ["website-0123456789abcdef0123456789abcdef", "pupil-abc", "slack:U100", "teams:29:1abc"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """The three web channels on one in-process server; ``received`` holds every message handed over."""

    def __init__(self, port: int, session: aiohttp.ClientSession, received: list) -> None:
        self.base, self.session, self.received = f"http://127.0.0.1:{port}", session, received

    async def post(self, path: str, body=None, raw: bytes | None = None, headers: dict | None = None):
        data = raw if raw is not None else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        async with self.session.post(self.base + path, data=data, headers=all_headers) as resp:
            text = await resp.text()
            try:
                payload = json.loads(text)
            except ValueError:
                payload = text
            return resp.status, payload, resp.headers

    async def new_conversation(self, channel: str) -> str:
        status, payload, _ = await self.post(f"/webhooks/{channel}/conversation", {})
        assert status == 200, payload
        return payload["sender"]


@pytest.fixture
def limits():
    # The real detector decides what may be a disclosure; generous limits unless a test sets its own.
    return WebLimits(per_sender=1000, per_ip=1000)


@pytest.fixture
async def served(fresh_settings, monkeypatch, limits):
    from sanic import Sanic

    from bot.channels import limits as limits_module

    monkeypatch.setattr(Sanic, "test_mode", True)  # several Sanic apps in one process
    from bot.safeguarding.detector import get_detector

    limits_module._shared.cache_clear()  # each test starts with empty process-wide buckets
    get_detector()  # loaded at start-up in the Rasa server; loading it here would let buckets refill
    received: list = []

    async def on_new_message(message):
        received.append(message)
        await message.output_channel.send_text_message(message.sender_id, "reply")

    ids = ConversationIds(b"k" * 32)
    app = Sanic(f"security_channels_{uuid.uuid4().hex[:12]}")
    channels = [ValidatingRestInput(limits=limits), WebsiteInput(), PupilInput(leave_url=None)]
    for channel in channels[1:]:
        channel.ids, channel.limits = ids, limits
    for channel in channels:
        app.blueprint(channel.blueprint(on_new_message), url_prefix=f"/webhooks/{channel.name()}")
    port = _free_port()
    server = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    await server.startup()
    await server.start_serving()
    async with aiohttp.ClientSession() as session:
        yield Served(port, session, received)
    server.close()
    await server.wait_closed()


# --- Finding 2: the server decides the conversation, the channel and the audience ---------------------------


@pytest.mark.parametrize("sender", OTHER_CHANNELS)
async def test_a_rest_sender_never_reaches_another_channels_conversation(served, sender):
    status, replies, _ = await served.post(
        "/webhooks/rest/webhook", {"sender": sender, "message": "no thanks", "input_channel": "website"}
    )
    assert status == 200 and replies[0]["text"] == "reply"
    [message] = served.received
    assert message.sender_id == f"rest-{sender}"
    assert message.input_channel == "rest"


async def test_rest_keeps_only_school_and_audience_and_ignores_the_clients_channel(served):
    metadata = {"school": "lunsford", "audience": "staff", "channel": "slack", "slack_user": "U1", "x": [1]}
    status, _, _ = await served.post(
        "/webhooks/rest/webhook",
        {"sender": "s1", "message": "hello", "input_channel": "slack", "metadata": metadata},
    )
    assert status == 200
    [message] = served.received
    assert message.input_channel == "rest"
    assert message.metadata == {"school": "lunsford", "audience": "staff"}


@pytest.mark.parametrize(
    ("metadata", "status"),
    [
        ({"school": "lunsford", "padding": "x" * 17_000}, 413),
        ({"school": "lunsford", "deep": json.loads("[" * 50 + "]" * 50)}, 400),
    ],
)
async def test_rest_metadata_too_large_or_too_deep_is_refused(served, metadata, status):
    got, payload, _ = await served.post("/webhooks/rest/webhook", {"sender": "s", "message": DISCLOSURE,
                                                                    "metadata": metadata})  # fmt: skip
    assert got == status and payload["error"]
    assert served.received == []


@pytest.mark.parametrize("channel", ["rest", "website", "pupil"])
@pytest.mark.parametrize(("depth", "status"), [(500, 400), (100_000, 413)])
async def test_deeply_nested_bodies_get_a_4xx_not_a_server_error(served, channel, depth, status):
    raw = b'{"sender": "s", "message": "hi", "metadata": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    got, payload, _ = await served.post(f"/webhooks/{channel}/webhook", raw=raw)
    assert got == status and payload["error"]
    assert served.received == []


@pytest.mark.parametrize(
    ("channel", "size"), [("rest", 100 * 1024), ("website", 90 * 1024), ("pupil", 90 * 1024)]
)
async def test_bodies_over_the_channels_limit_get_a_413(served, channel, size):
    body = {"sender": "s", "message": "hi", "metadata": {"school": "x" * size}}
    status, payload, _ = await served.post(f"/webhooks/{channel}/webhook", body)
    assert status == 413 and "too large" in payload["error"]
    assert served.received == []


@pytest.mark.parametrize("channel", ["website", "pupil"])
async def test_a_widget_conversation_is_one_the_server_issued(served, channel):
    sender = await served.new_conversation(channel)
    status, _, _ = await served.post(f"/webhooks/{channel}/webhook", {"sender": sender, "message": "hello"})
    assert status == 200
    [message] = served.received
    random_part = sender.split(".")[0]
    assert message.sender_id == f"{channel}-{random_part}" and message.input_channel == channel
    assert sender.split(".")[1] not in message.sender_id  # the signature is never stored


@pytest.mark.parametrize("channel", ["website", "pupil"])
async def test_a_made_up_forged_or_other_channels_widget_id_never_reaches_that_conversation(served, channel):
    other = "pupil" if channel == "website" else "website"
    genuine = await served.new_conversation(channel)
    random_part, signature = genuine.split(".")
    forged = [
        random_part,  # the bare id a page could guess or copy from a record
        "0123456789abcdef0123456789abcdef",
        f"{random_part}.{'0' * len(signature)}",
        f"{'f' * 32}.{signature}",
        await served.new_conversation(other),  # signed, but for the other widget
    ]
    for sender in forged:
        status, payload, _ = await served.post(
            f"/webhooks/{channel}/webhook", {"sender": sender, "message": "hi"}
        )
        assert status == 400 and payload["code"] == "new_conversation", sender
    assert served.received == []


async def test_the_client_cannot_choose_the_widget_audience_or_add_metadata(served):
    sender = await served.new_conversation("pupil")
    metadata = {"school": "scotts", "audience": "staff", "channel": "slack", "extra": "x"}
    await served.post("/webhooks/pupil/webhook", {"sender": sender, "message": "hi", "metadata": metadata,
                                                   "input_channel": "slack"})  # fmt: skip
    [message] = served.received
    assert message.metadata == {"school": "scotts", "audience": "pupil", "channel": "pupil"}
    assert message.input_channel == "pupil"


# --- REST is an integration channel: a token, or loopback only --------------------------------------------


async def test_with_a_rest_token_only_requests_carrying_it_are_answered(fresh_settings, monkeypatch):
    from sanic import Sanic

    monkeypatch.setattr(Sanic, "test_mode", True)
    received: list = []

    async def on_new_message(message):
        received.append(message)

    app = Sanic(f"security_rest_token_{uuid.uuid4().hex[:12]}")
    channel = ValidatingRestInput.from_credentials({"token": "s3cret-token"})
    channel.limits = WebLimits(1000, 1000)
    app.blueprint(channel.blueprint(on_new_message), url_prefix="/webhooks/rest")
    port = _free_port()
    server = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    await server.startup()
    await server.start_serving()
    url = f"http://127.0.0.1:{port}/webhooks/rest/webhook"
    body = {"sender": "a", "message": DISCLOSURE}
    try:
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
                async with session.post(url, json=body, headers=headers) as resp:
                    assert resp.status == 401, headers
            assert received == []
            async with session.post(url, json=body, headers={"Authorization": "Bearer s3cret-token"}) as resp:
                assert resp.status == 200
            assert len(received) == 1
    finally:
        server.close()
        await server.wait_closed()


def _settings(monkeypatch, **env):
    from bot.settings import Settings

    for name in ("REST_TOKEN", "BIND_HOST"):
        monkeypatch.delenv(f"SCHOOLGUIDE_{name}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(f"SCHOOLGUIDE_{name}", value)
    return Settings.from_env()


def test_rest_without_a_token_is_on_only_while_bound_to_loopback(monkeypatch):
    rest = "bot.channels.rest.ValidatingRestInput"
    assert credentials(_settings(monkeypatch))[rest] is None
    assert credentials(_settings(monkeypatch, BIND_HOST="::1"))[rest] is None
    assert rest not in credentials(_settings(monkeypatch, BIND_HOST="0.0.0.0"))
    assert rest not in credentials(_settings(monkeypatch, BIND_HOST="192.168.1.10"))
    on = credentials(_settings(monkeypatch, BIND_HOST="0.0.0.0", REST_TOKEN="tok"))
    assert on[rest] == {"token": "tok"}


async def test_rest_mounted_without_a_token_on_a_public_interface_refuses(served, monkeypatch):
    from bot.settings import get_settings

    monkeypatch.setenv("SCHOOLGUIDE_BIND_HOST", "0.0.0.0")
    get_settings.cache_clear()
    status, _, _ = await served.post("/webhooks/rest/webhook", {"sender": "a", "message": "hi"})
    assert status == 403 and served.received == []


# --- Finding 4 (in the channels): lone surrogates and control characters are cleaned before NLU -----------


@pytest.mark.parametrize("channel", ["rest", "website", "pupil"])
async def test_a_disclosure_with_a_broken_emoji_reaches_the_dialogue_engine_cleaned(served, channel):
    sender = "s" if channel == "rest" else await served.new_conversation(channel)
    # A lone high surrogate (half an emoji), a NUL, a bell and a carriage return, as raw JSON escapes.
    message = r"\ud83d my teacher\u0000touched me\u0007\r\nhelp\tme"
    raw = ('{"sender": "' + sender + '", "message": "' + message + '"}').encode()
    status, replies, _ = await served.post(f"/webhooks/{channel}/webhook", raw=raw)
    assert status == 200 and replies
    [message] = served.received
    assert message.text == "\ufffd my teacher touched me \nhelp\tme"
    message.text.encode("utf-8")  # would raise on a lone surrogate


@pytest.mark.parametrize("channel", ["rest", "website", "pupil"])
async def test_a_sender_with_control_characters_is_refused(served, channel):
    raw = b'{"sender": "a\\u0000b\\ud800", "message": "hi"}'
    status, payload, _ = await served.post(f"/webhooks/{channel}/webhook", raw=raw)
    assert status == 400 and "'sender'" in payload["error"]


# --- Finding 5: rate limits, which never swallow a first disclosure ----------------------------------------


@pytest.mark.parametrize("limits", [pytest.param(None, id="defaults")])
async def test_fifty_rapid_messages_from_one_sender_get_429s_while_others_are_answered(
    fresh_settings, served
):
    # limits=None: the channels use the process-wide limits built from the default settings (20 a minute).
    results = await asyncio.gather(
        *(served.post("/webhooks/rest/webhook", {"sender": "flood", "message": f"hi {i}"}) for i in range(50))
    )
    statuses = [status for status, _, _ in results]
    # 20 a minute refill one every 3 s: a slow run may see one more get through, never more.
    assert fresh_settings.rate_limit_per_sender == 20
    assert 20 <= statuses.count(200) <= 21 and statuses.count(200) + statuses.count(429) == 50
    limited = [headers for status, _, headers in results if status == 429]
    assert all(int(h["Retry-After"]) >= 1 for h in limited)
    status, replies, _ = await served.post(
        "/webhooks/rest/webhook", {"sender": "someone-else", "message": "hi"}
    )
    assert status == 200 and replies
    assert len([m for m in served.received if m.sender_id == "rest-flood"]) == statuses.count(200)


@pytest.mark.parametrize("limits", [pytest.param(None, id="defaults")])
@pytest.mark.parametrize("channel", ["rest", "pupil"])
async def test_a_disclosure_sent_while_limited_is_not_refused(fresh_settings, served, channel):
    sender = "limited" if channel == "rest" else await served.new_conversation(channel)
    url = f"/webhooks/{channel}/webhook"
    for i in range(25):
        await served.post(url, {"sender": sender, "message": f"what about snapchat {i}"})
    assert (await served.post(url, {"sender": sender, "message": "and tiktok?"}))[0] == 429
    status, replies, _ = await served.post(url, {"sender": sender, "message": DISCLOSURE})
    assert status == 200 and replies
    assert served.received[-1].text == DISCLOSURE


@pytest.mark.parametrize("limits", [pytest.param(None, id="defaults")])
async def test_new_widget_conversations_are_limited_per_address_too(fresh_settings, served, monkeypatch):
    # In-process requests come from loopback, which has no per-address limit; pretend to be a remote client.
    monkeypatch.setattr("bot.channels.website.client_address", lambda request: "203.0.113.9")
    statuses = [
        (await served.post("/webhooks/website/conversation", {}))[0]
        for _ in range(fresh_settings.rate_limit_per_ip + 5)
    ]
    assert statuses.count(200) == fresh_settings.rate_limit_per_ip and statuses[-1] == 429
