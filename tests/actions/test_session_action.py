"""action_session_start copies the client's school and audience into slots (defaults when invalid)."""

import pytest
from rasa_sdk import Tracker

from actions.session import ActionSessionStart


def _tracker(metadata, slots=None):
    return Tracker(
        "s1",
        {"session_started_metadata": metadata, "school": None, "audience": None, **(slots or {})},
        {},
        [],
        False,
        None,
        {},
        "action_listen",
    )


def _slots(events):
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}


async def test_metadata_becomes_slots(dispatcher):
    events = await ActionSessionStart().run(
        dispatcher, _tracker({"school": "lseat", "audience": "staff"}), {}
    )
    assert events[0]["event"] == "session_started"
    assert _slots(events) == {"school": "lseat", "audience": "staff"}
    assert (events[-1]["event"], events[-1]["name"]) == ("action", "action_listen")


@pytest.mark.parametrize(
    "metadata", [None, {}, {"school": "nowhere", "audience": "alien"}, ["lunsford"], "x"]
)
async def test_missing_or_invalid_metadata_gives_the_defaults(dispatcher, metadata):
    events = await ActionSessionStart().run(dispatcher, _tracker(metadata), {})
    assert _slots(events) == {"school": "lunsford", "audience": "parent"}


async def test_a_new_session_keeps_who_is_talking(dispatcher):
    events = await ActionSessionStart().run(
        dispatcher, _tracker(None, {"school": "scotts", "audience": "pupil"}), {}
    )
    assert _slots(events) == {"school": "scotts", "audience": "pupil"}
