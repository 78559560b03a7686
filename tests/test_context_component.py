"""ConversationContext: school and audience entities from message metadata, validated."""

import pytest
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message

from bot.nlp.context import ConversationContext, context_entities


def _values(entities):
    return {e["entity"]: e["value"] for e in entities}


def test_valid_metadata_becomes_entities():
    assert _values(context_entities({"school": "Scotts", "audience": "pupil"})) == {
        "school": "scotts",
        "audience": "pupil",
    }


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        "lunsford",
        [],
        {},
        {"school": "hogwarts", "audience": "governor"},
        {"school": 5, "audience": None},
    ],
)
def test_missing_or_invalid_metadata_adds_nothing(metadata):
    assert context_entities(metadata) == []


def test_only_the_valid_half_is_used():
    assert _values(context_entities({"school": "nowhere", "audience": "staff"})) == {"audience": "staff"}


def test_process_keeps_other_entities_and_replaces_its_own():
    message = Message(
        data={
            TEXT: "can my teacher add me on snap",
            "metadata": {"school": "lseat", "audience": "pupil"},
            ENTITIES: [
                {"entity": "platform", "value": "snap", "extractor": "SpacyEntityExtractor"},
                {"entity": "school", "value": "stale", "extractor": "ConversationContext"},
            ],
        }
    )
    [out] = ConversationContext().process([message])
    assert sorted((e["entity"], e["value"]) for e in out.get(ENTITIES)) == [
        ("audience", "pupil"),
        ("platform", "snap"),
        ("school", "lseat"),
    ]


def test_process_never_raises_on_odd_messages():
    odd = [Message(data={TEXT: ""}), Message(data={TEXT: "x", "metadata": object()}), Message(data={})]
    assert ConversationContext().process(odd) == odd


def test_metadata_nested_thousands_deep_is_read_without_overflowing():
    deep: dict = {}
    for _ in range(100_000):
        deep = {"a": deep}
    # str() of such a value raised RecursionError, and the component then dropped the valid audience too.
    assert _values(context_entities({"school": deep, "audience": "pupil"})) == {"audience": "pupil"}
    assert context_entities({"school": "lunsford", "audience": [deep]})[0]["value"] == "lunsford"
