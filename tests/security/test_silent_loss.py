"""Finding 4, silent loss: whatever fails while the Rasa server handles a message, a possible disclosure gets
the safe reply and exactly one encrypted record, and nothing is answered with silence (``[]``).

These drive ``Agent.handle_message`` as ``bot.rasa_server`` installs it, with a processor that raises (no
trained model needed); tests/e2e/test_property_silent_loss.py does the same through the real servers. The last
section drives the web channels' blueprints: a request refused for its metadata still records a disclosure.
"""

from __future__ import annotations

import copy
import json

import pytest
from rasa.core.agent import Agent
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import rasa_server
from bot.safeguarding import failsafe
from bot.safeguarding.component import DisclosureDetector
from bot.safeguarding.crypto import load_cipher
from bot.safeguarding.handoff_texts import REFERENCE_GIVEN
from bot.safeguarding.replies import all_safe_replies, safe_reply
from bot.safeguarding.store import Disclosure, get_engine
from bot.untrusted import bounded_metadata, clean_text

DISCLOSURE = "my step dad hits me"  # danger at home: pupils get that reply (safe_reply kind "danger_at_home")
BROKEN_EMOJI = "\ud83d"  # half of a surrogate pair: what a cut-off emoji looks like after JSON decoding
QUESTION = "how old do you have to be for whatsapp"


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


class Processor:
    """Stands in for Rasa's MessageProcessor: handle_message raises (or answers), parse_message classifies."""

    def __init__(self, error: BaseException | None = None, intent: str = "ask_policy", reply: str = "ok"):
        self.error, self.intent, self.reply = error, intent, reply
        self.seen: list[UserMessage] = []

    async def handle_message(self, message: UserMessage):
        self.seen.append(message)
        if self.error is not None:
            raise self.error
        await message.output_channel.send_text_message(message.sender_id, self.reply)
        return message.output_channel.messages

    async def parse_message(self, message: UserMessage, tracker=None, only_output_properties=True):
        return {"text": message.text, "intent": {"name": self.intent, "confidence": 0.9}}


@pytest.fixture
def safety_net():
    """Agent.handle_message as the server runs it; restored afterwards."""
    original = Agent.handle_message
    rasa_server.apply_safety_net()
    yield
    Agent.handle_message = original


def agent_with(processor: Processor | None) -> Agent:
    agent = Agent()
    agent.processor = processor
    return agent


async def send(agent: Agent, text, metadata=None, sender="conv-1", message_id=None):
    message = UserMessage(
        text,
        CollectingOutputChannel(),
        sender,
        input_channel="rest",
        metadata=metadata,
        message_id=message_id,
    )
    return await agent.handle_message(message), message


def records(settings) -> list[Disclosure]:
    with Session(get_engine(settings.database_url), future=True) as session:
        return list(session.execute(select(Disclosure)).scalars())


def texts(replies) -> list[str]:
    """The replies as sent, whole again: Rasa's channels send each paragraph as a message of its own."""
    whole, parts = [], [reply["text"] for reply in replies or []]
    for text in [*all_safe_replies(), None]:  # every audience's, every pupil kind's
        if text is not None and parts[: len(text.split("\n\n"))] == text.split("\n\n"):
            whole.append(text)
            parts = parts[len(text.split("\n\n")) :]
    return whole + parts


# --- input is cleaned before NLU, so odd input takes the normal path ----------------------------------------


def test_lone_surrogates_become_replacement_characters_and_split_pairs_are_rejoined():
    assert clean_text(f"{DISCLOSURE} {BROKEN_EMOJI}") == f"{DISCLOSURE} \ufffd"
    assert clean_text("\udc00 start") == "\ufffd start"
    assert clean_text("smile \ud83d\ude00") == "smile \U0001f600"
    assert clean_text("a\x00b\x1bc\x7fd\x85e\tf\ng") == "a b c d e\tf\ng"
    assert clean_text(None) is None and clean_text(7) == 7
    clean_text(f"x{BROKEN_EMOJI}").encode("utf-8")  # what spaCy, Fernet and PostgreSQL need


def test_metadata_of_any_depth_is_bounded_without_recursion():
    deep = nested(100_000)
    bounded = bounded_metadata({"school": "lunsford", "deep": deep})
    copy.deepcopy(bounded)  # Rasa copies metadata recursively; this overflowed at a few hundred levels
    json.dumps(bounded)
    assert bounded["school"] == "lunsford"
    depth, value = 0, bounded["deep"]
    while isinstance(value, dict):
        depth, value = depth + 1, value.get("a")
    assert depth < 20


def test_ordinary_metadata_is_kept_as_it_is():
    metadata = {"school": "lunsford", "audience": "pupil", "users": ["U1", "U2"], "thread": {"ts": "1.2"}}
    assert bounded_metadata(metadata) == metadata
    assert bounded_metadata("not a mapping") is None


def test_the_detector_component_still_catches_a_disclosure_with_a_broken_emoji():
    from rasa.shared.nlu.training_data.message import Message

    message = Message(data={"text": f"{DISCLOSURE} {BROKEN_EMOJI}", "intent": {"name": "greet"}})
    DisclosureDetector.create(DisclosureDetector.get_default_config(), None, None, None).process([message])
    assert message.get("intent")["name"] == "disclose"
    assert message.get("safeguarding")["is_disclosure"] is True


async def test_the_server_hands_nlu_cleaned_text_and_bounded_metadata(safety_net, fresh_settings):
    processor = Processor()
    replies, _ = await send(agent_with(processor), f"{DISCLOSURE} {BROKEN_EMOJI}", {"deep": nested(500)})
    [seen] = processor.seen
    assert seen.text == f"{DISCLOSURE} \ufffd"
    copy.deepcopy(seen.metadata)
    assert texts(replies) == ["ok"]


# --- when handling fails anyway -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed"), RecursionError(), KeyError("x")],
)
async def test_a_disclosure_that_breaks_handling_gets_the_safe_reply_and_one_encrypted_record(
    safety_net, fresh_settings, error
):
    agent = agent_with(Processor(error))
    metadata = {"school": "lunsford", "audience": "pupil"}
    replies, message = await send(agent, f"{DISCLOSURE} {BROKEN_EMOJI}", metadata)

    # Pupils get the reply for danger at home (999 first) and no reference, as on the normal path.
    assert texts(replies) == [safe_reply("pupil", kind="danger_at_home")]
    [record] = records(fresh_settings)
    assert (record.source, record.school, record.audience, record.channel) == (
        "failsafe",
        "lunsford",
        "pupil",
        "rest",
    )
    assert (record.sender_id, record.message_id) == ("conv-1", message.message_id)
    assert "physical_abuse_neglect" in record.categories
    assert DISCLOSURE not in record.text_encrypted
    assert load_cipher(fresh_settings).decrypt(record.text_encrypted) == f"{DISCLOSURE} \ufffd"

    # The same message again (a retry inside the server) is still one record.
    again, _ = await send(agent, f"{DISCLOSURE} {BROKEN_EMOJI}", metadata, message_id=message.message_id)
    assert texts(again) == [safe_reply("pupil", kind="danger_at_home")]
    assert len(records(fresh_settings)) == 1


async def test_staff_get_their_safe_reply_and_the_reference(safety_net, fresh_settings):
    agent = agent_with(Processor(RuntimeError("nlu broke")))
    replies, _ = await send(
        agent, "a pupil told me her uncle hits her", {"school": "scotts", "audience": "staff"}
    )
    [record] = records(fresh_settings)
    assert texts(replies) == [safe_reply("staff"), REFERENCE_GIVEN.format(reference=record.reference)]


async def test_unknown_audience_gets_the_reply_that_is_safe_for_anyone(safety_net, fresh_settings):
    replies, _ = await send(agent_with(Processor(RuntimeError())), DISCLOSURE, {"audience": "hacker"})
    assert texts(replies) == [safe_reply(None)] == [safe_reply("pupil")]
    assert len(records(fresh_settings)) == 1


async def test_a_message_that_is_clearly_not_a_disclosure_gets_an_apology_not_silence(
    safety_net, fresh_settings
):
    replies, _ = await send(agent_with(Processor(RuntimeError())), QUESTION, {"audience": "parent"})
    assert texts(replies) == [failsafe.GENERIC_ERROR_REPLY]
    assert records(fresh_settings) == []


async def test_the_classifier_alone_is_enough(safety_net, fresh_settings):
    words = "something happened and i need to talk to someone"
    replies, _ = await send(agent_with(Processor(RuntimeError(), intent="disclose")), words)
    assert texts(replies) == [safe_reply(None)]
    [record] = records(fresh_settings)
    assert (record.categories, record.risk) == (["other"], "high")


async def test_when_the_detector_fails_too_any_message_is_treated_as_a_disclosure(
    safety_net, fresh_settings, monkeypatch
):
    def broken():
        raise RuntimeError("vocabulary missing")

    monkeypatch.setattr(failsafe, "get_detector", broken)
    replies, _ = await send(agent_with(Processor(RuntimeError())), QUESTION, {"audience": "parent"})
    [record] = records(fresh_settings)
    assert record.source == "failsafe"
    assert texts(replies)[0] == safe_reply("parent")


async def test_the_disclose_button_is_a_disclosure(safety_net, fresh_settings):
    replies, _ = await send(agent_with(Processor(RuntimeError())), "/disclose", {"audience": "pupil"})
    assert texts(replies) == [safe_reply("pupil", kind="listen")]  # the listening opener
    assert len(records(fresh_settings)) == 1


async def test_a_safe_reply_already_sent_is_not_repeated(safety_net, fresh_settings):
    class FailsAfterReplying(Processor):
        async def handle_message(self, message):
            await message.output_channel.send_text_message(message.sender_id, safe_reply("pupil"))
            raise RuntimeError("tracker store down")

    replies, _ = await send(agent_with(FailsAfterReplying()), DISCLOSURE, {"audience": "pupil"})
    assert texts(replies) == [safe_reply("pupil")]
    assert len(records(fresh_settings)) == 1


async def test_a_disclosure_before_the_model_has_loaded_is_recorded_and_answered(safety_net, fresh_settings):
    replies, _ = await send(agent_with(None), DISCLOSURE, {"audience": "pupil"})
    assert texts(replies) == [safe_reply("pupil", kind="danger_at_home")]
    assert len(records(fresh_settings)) == 1
    # Anything else keeps Rasa's answer while loading (start-up probes wait for a real reply).
    assert (await send(agent_with(None), "hello"))[0] is None
    assert len(records(fresh_settings)) == 1


async def test_when_the_database_is_down_the_record_is_spooled_encrypted(
    safety_net, fresh_settings, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    from bot.safeguarding import service
    from bot.safeguarding.spool import Spool

    def down(*args, **kwargs):
        raise OperationalError("connect", {}, Exception("down"))

    monkeypatch.setattr(service, "store_in_database", down)
    replies, _ = await send(agent_with(Processor(RecursionError())), DISCLOSURE, {"audience": "pupil"})
    assert texts(replies) == [safe_reply("pupil", kind="danger_at_home")]
    [spooled] = Spool(fresh_settings.spool_dir).records()
    assert spooled["source"] == "failsafe" and spooled["text_encrypted"]
    assert DISCLOSURE not in Spool(fresh_settings.spool_dir).path.read_text()


async def test_if_the_failure_path_itself_breaks_the_reply_is_still_the_safe_one(
    safety_net, fresh_settings, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("spool and database both gone")

    monkeypatch.setattr(failsafe, "recover", broken)
    replies, _ = await send(agent_with(Processor(RuntimeError())), QUESTION, {"audience": "parent"})
    assert texts(replies) == [safe_reply(None)]


# --- A disclosure in a request the web channels refuse (metadata too deep or too large) is not lost ---------
# The REST, website and pupil blueprints served in-process, with the dialogue engine replaced by a recorder: a
# refused request never reaches it, but a possible disclosure in it still gets the safe reply and one record.

CHANNEL_AUDIENCE = {"rest": None, "website": "parent", "pupil": "pupil"}


class WebChannels:
    def __init__(self, base: str, session, received: list) -> None:
        self.base, self.session, self.received = base, session, received

    async def post(self, channel: str, body=None, raw: bytes | None = None):
        data = raw if raw is not None else json.dumps(body).encode()
        url = f"{self.base}/webhooks/{channel}/webhook"
        async with self.session.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
            return resp.status, await resp.json()

    async def sender(self, channel: str) -> tuple[str, str]:
        """(what the client sends as ``sender``, the conversation the server stores)."""
        if channel == "rest":
            return "s1", "rest-s1"
        async with self.session.post(f"{self.base}/webhooks/{channel}/conversation", json={}) as resp:
            issued = (await resp.json())["sender"]
        return issued, f"{channel}-{issued.split('.')[0]}"


@pytest.fixture
async def web(fresh_settings, monkeypatch):
    import socket
    import uuid

    import aiohttp
    from sanic import Sanic

    from bot.channels import limits as limits_module
    from bot.channels.identity import ConversationIds
    from bot.channels.limits import WebLimits
    from bot.channels.pupil import PupilInput
    from bot.channels.rest import ValidatingRestInput
    from bot.channels.website import WebsiteInput
    from bot.safeguarding.detector import get_detector

    monkeypatch.setattr(Sanic, "test_mode", True)
    limits_module._shared.cache_clear()
    get_detector()
    received: list = []

    async def on_new_message(message):
        received.append(message)
        await message.output_channel.send_text_message(message.sender_id, "reply")

    limits = WebLimits(per_sender=1000, per_ip=1000)
    app = Sanic(f"silent_loss_channels_{uuid.uuid4().hex[:12]}")
    channels = [ValidatingRestInput(limits=limits), WebsiteInput(), PupilInput(leave_url=None)]
    for channel in channels[1:]:
        channel.ids, channel.limits = ConversationIds(b"k" * 32), limits
    for channel in channels:
        app.blueprint(channel.blueprint(on_new_message), url_prefix=f"/webhooks/{channel.name()}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    await server.startup()
    await server.start_serving()
    async with aiohttp.ClientSession() as session:
        yield WebChannels(f"http://127.0.0.1:{port}", session, received)
    server.close()
    await server.wait_closed()


def deep_metadata_body(sender: str, message: str, depth: int = 500, **metadata) -> bytes:
    head = json.dumps({"sender": sender, "message": message, "metadata": metadata})[:-2]
    return head.encode() + b', "junk": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}}"


@pytest.mark.parametrize("channel", ["rest", "website", "pupil"])
async def test_a_disclosure_with_500_deep_metadata_gets_the_safe_reply_and_one_record(
    web, fresh_settings, channel
):
    sender, stored = await web.sender(channel)
    raw = deep_metadata_body(sender, f"{DISCLOSURE} {BROKEN_EMOJI}", school="scotts")
    status, payload = await web.post(channel, raw=raw)

    assert status == 400 and "nested too deeply" in payload["error"]
    [record] = records(fresh_settings)
    audience = CHANNEL_AUDIENCE[channel]
    assert (record.source, record.channel, record.sender_id) == ("failsafe", channel, stored)
    assert (record.school, record.audience) == ("scotts", audience or fresh_settings.default_audience)
    assert load_cipher(fresh_settings).decrypt(record.text_encrypted) == f"{DISCLOSURE} \ufffd"
    # The failure path's replies: the safe reply, and for adults the reference.
    reference = [REFERENCE_GIVEN.format(reference=record.reference)] if audience == "parent" else []
    assert texts(payload["messages"]) == [safe_reply(audience, kind="danger_at_home"), *reference]
    assert {m["recipient_id"] for m in payload["messages"]} == {stored}
    assert web.received == []  # refused: the dialogue engine never saw it

    # The client retries the identical request: the same reply, still one record.
    assert await web.post(channel, raw=raw) == (status, payload)
    assert len(records(fresh_settings)) == 1


@pytest.mark.parametrize("channel", ["rest", "website", "pupil"])
async def test_a_disclosure_with_metadata_over_16_kb_is_salvaged_too(web, fresh_settings, channel):
    sender, stored = await web.sender(channel)
    body = {"sender": sender, "message": DISCLOSURE, "metadata": {"audience": "staff", "pad": "x" * 17_000}}
    status, payload = await web.post(channel, body)
    assert status == 413 and "'metadata' is too large" in payload["error"]
    [record] = records(fresh_settings)
    assert record.sender_id == stored
    # REST takes a valid top-level metadata audience; a widget's audience is the channel's, whatever is sent.
    audience = CHANNEL_AUDIENCE[channel] or "staff"
    assert record.audience == audience
    reference = [] if audience == "pupil" else [REFERENCE_GIVEN.format(reference=record.reference)]
    assert texts(payload["messages"]) == [safe_reply(audience, kind="danger_at_home"), *reference]


async def test_rest_records_only_a_valid_school_and_audience_from_refused_metadata(web, fresh_settings):
    raw = deep_metadata_body("s2", DISCLOSURE, school="hogwarts", audience="governor")
    status, payload = await web.post("rest", raw=raw)
    assert status == 400
    [record] = records(fresh_settings)
    assert (record.school, record.audience) == (
        fresh_settings.default_school,
        fresh_settings.default_audience,
    )
    assert texts(payload["messages"]) == [safe_reply(None)]  # unknown audience: the reply safe for anyone


@pytest.mark.parametrize("channel", ["rest", "website", "pupil"])
async def test_an_ordinary_question_with_deep_metadata_keeps_its_plain_400(web, fresh_settings, channel):
    sender, _ = await web.sender(channel)
    status, payload = await web.post(channel, raw=deep_metadata_body(sender, QUESTION))
    assert status == 400 and payload == {"error": payload["error"]} and payload["error"]
    assert records(fresh_settings) == []


@pytest.mark.parametrize("channel", ["website", "pupil"])
async def test_a_widget_disclosure_with_deep_metadata_and_a_forged_id_is_refused_unrecorded(
    web, fresh_settings, channel
):
    genuine, _ = await web.sender(channel)
    random_part, signature = genuine.split(".")
    other = "pupil" if channel == "website" else "website"
    forged = [
        random_part,
        f"{random_part}.{'0' * len(signature)}",
        f"{'f' * 32}.{signature}",
        (await web.sender(other))[0],  # signed, but for the other widget
        None,
    ]
    for sender in forged:
        body = {"message": DISCLOSURE, "metadata": {"deep": nested(50)}}
        if sender is not None:
            body["sender"] = sender
        status, payload = await web.post(channel, body)
        assert status == 400 and "messages" not in payload, sender
    assert records(fresh_settings) == []


@pytest.mark.parametrize("channel", ["rest", "website", "pupil"])
async def test_a_disclosure_in_a_body_over_the_size_limit_is_never_read(web, fresh_settings, channel):
    sender, _ = await web.sender(channel)
    status, payload = await web.post(channel, raw=deep_metadata_body(sender, DISCLOSURE, depth=100_000))
    assert status == 413 and "messages" not in payload
    assert records(fresh_settings) == []


async def test_a_refused_disclosure_with_a_bad_sender_or_message_is_not_salvaged(web, fresh_settings):
    for body in (
        {"sender": "a\u0000b", "message": DISCLOSURE, "metadata": {"deep": nested(50)}},
        {"sender": "x" * 200, "message": DISCLOSURE, "metadata": []},
        {"sender": "s", "message": [DISCLOSURE], "metadata": {"deep": nested(50)}},
    ):
        status, payload = await web.post("rest", body)
        assert status == 400 and "messages" not in payload
    assert records(fresh_settings) == []


async def test_when_recording_a_refused_disclosure_fails_the_reply_is_still_the_safe_one(
    web, fresh_settings, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("spool and database both gone")

    monkeypatch.setattr(failsafe, "recover", broken)
    status, payload = await web.post("rest", raw=deep_metadata_body("s3", DISCLOSURE, audience="parent"))
    assert status == 400 and texts(payload["messages"]) == [safe_reply(None)]
