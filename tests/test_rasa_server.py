"""bot.rasa_server's speed fixes give exactly Rasa's results (the speed itself is measured by make bench)."""

from dataclasses import replace

import pytest
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction
from rasa.shared.core.events import Event
from rasa.shared.utils.common import all_subclasses

from bot import rasa_server
from bot.runner import server_commands
from bot.settings import Settings

ORIGINAL = RemoteAction._validate_action_result
ORIGINAL_RESOLVE = Event.resolve_by_type

GOOD = [
    {"events": [], "responses": []},
    {
        "events": [{"event": "slot", "name": "topic", "value": "report-post", "timestamp": None}],
        "responses": [{"text": "hi", "custom": {"type": "policy_answer"}}],
    },
    {},
]
BAD = [
    {"events": "not a list", "responses": []},
    {"events": [{"event": "no-such-event"}], "responses": []},
    {"events": [], "responses": ["text instead of an object"]},
    {"events": [{"event": "slot", "name": 7}], "responses": []},
]


def _outcome(validate, result):
    action = RemoteAction("action_answer_policy", None)
    try:
        return validate(action, result)
    except ValidationError as error:
        return ("invalid", error.message, tuple(error.path))


@pytest.mark.parametrize("result", GOOD + BAD)
def test_action_result_validation_is_unchanged(result):
    assert _outcome(rasa_server._validate_action_result, result) == _outcome(ORIGINAL, result)


def test_bad_results_are_still_rejected_with_rasas_hint():
    for result in BAD:
        outcome = _outcome(rasa_server._validate_action_result, result)
        assert outcome[0] == "invalid" and "Failed to validate Action server response" in outcome[1]


def test_event_classes_resolve_as_before():
    rasa_server._ORIGINAL_RESOLVE = ORIGINAL_RESOLVE
    names = sorted({cls.type_name for cls in all_subclasses(Event)})
    assert "user" in names and "slot" in names and len(names) > 20
    for _ in range(2):  # second round comes from the cache
        for name in names:
            assert rasa_server._resolve_by_type(name) is ORIGINAL_RESOLVE(name)
    assert rasa_server._resolve_by_type("topic") is None  # Rasa's backwards-compatibility case
    assert rasa_server._resolve_by_type("no-such-event", default=Event) is Event
    with pytest.raises(ValueError, match="Unknown event name"):
        rasa_server._resolve_by_type("no-such-event")


def test_a_stored_conversation_loads_the_same(tmp_path):
    from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered

    events = [
        ActionExecuted("action_listen"),
        UserUttered("how old for whatsapp", {"name": "policy_minimum_age", "confidence": 0.9}),
        SlotSet("platform", "whatsapp"),
        BotUttered("13", {"custom": {"type": "policy_answer"}}),
    ]
    dumped = [event.as_dict() for event in events]
    rasa_server._ORIGINAL_RESOLVE = ORIGINAL_RESOLVE
    loaded = [rasa_server._resolve_by_type(d["event"]).from_parameters(d) for d in dumped]
    assert loaded == events


def test_speedups_are_installed_and_the_server_starts_through_them(tmp_path):
    settings = replace(Settings.from_env(), var_dir=tmp_path / "var")
    try:
        rasa_server.apply_speedups()
        assert RemoteAction._validate_action_result is rasa_server._validate_action_result
        assert Event.resolve_by_type is rasa_server._resolve_by_type
    finally:
        RemoteAction._validate_action_result = ORIGINAL
        Event.resolve_by_type = ORIGINAL_RESOLVE
    command = server_commands(settings, tmp_path / "m.tar.gz")["rasa server"]
    assert command[1:4] == ["-m", "bot.rasa_server", "run"]


# --- the safety net (its security tests are in tests/security/test_silent_loss.py) --------------------------


class _Processor:
    async def handle_message(self, message):
        await message.output_channel.send_text_message(message.sender_id, f"echo {message.text}")
        return message.output_channel.messages


async def test_the_safety_net_changes_nothing_when_handling_succeeds():
    from rasa.core.agent import Agent
    from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

    original = Agent.handle_message
    agent = Agent()
    agent.processor = _Processor()
    results = []
    try:
        for install in (False, True):
            if install:
                rasa_server.apply_safety_net()
                rasa_server.apply_safety_net()  # idempotent: wraps once
                assert rasa_server._ORIGINAL_HANDLE_MESSAGE is original
            message = UserMessage("how old for whatsapp", CollectingOutputChannel(), "s", metadata={"a": [1]})
            results.append((await agent.handle_message(message), message.text, message.metadata))
    finally:
        Agent.handle_message = original
    assert results[0] == results[1]


def test_main_installs_the_safety_net(monkeypatch):
    import rasa.__main__
    from rasa.core.agent import Agent

    original = Agent.handle_message
    monkeypatch.setattr(rasa.__main__, "main", lambda: None)
    try:
        rasa_server.main(["--version"])
        assert Agent.handle_message is rasa_server._handle_message_safely
    finally:
        Agent.handle_message = original
        RemoteAction._validate_action_result = ORIGINAL
        Event.resolve_by_type = ORIGINAL_RESOLVE
