"""Finding 4, silent loss: whatever fails while the Rasa server handles a message, a possible disclosure gets
the safe reply and exactly one encrypted record, and nothing is answered with silence (``[]``).

These drive ``Agent.handle_message`` as ``bot.rasa_server`` installs it, with a processor that raises (no
trained model needed); tests/e2e/test_property_silent_loss.py does the same through the real servers.
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
from bot.safeguarding.replies import safe_reply
from bot.safeguarding.store import Disclosure, get_engine
from bot.untrusted import bounded_metadata, clean_text

DISCLOSURE = "my step dad hits me"
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
    for text in [safe_reply(a) for a in ("pupil", "staff", "parent")] + [None]:
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

    assert texts(replies) == [safe_reply("pupil")]  # pupils get no reference, as on the normal path
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
    assert texts(again) == [safe_reply("pupil")]
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
    assert texts(replies) == [safe_reply("pupil")]
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
    assert texts(replies) == [safe_reply("pupil")]
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
    assert texts(replies) == [safe_reply("pupil")]
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
