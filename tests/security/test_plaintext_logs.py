"""Finding 3: "The log carries the words when handling fails." No message text in any log, from either server.

The redaction is installed as each server's ``main()`` installs it, then records go through a handler added
*afterwards* (as Rasa and Sanic add theirs), at DEBUG, with tracebacks that quote the words.
"""

from __future__ import annotations

import io
import logging

import pytest

from bot import logging_filters

DISCLOSURE = "my stepdad hits me when mum is at work"
CONTACT = "Jess Carter year 6"


@pytest.fixture
def captured(monkeypatch):
    """A DEBUG logger with its own handler; the record factory and patched classes are restored after."""
    from rasa.core.channels.channel import UserMessage
    from rasa_sdk.interfaces import Tracker

    monkeypatch.setattr(UserMessage, "__init__", UserMessage.__init__)
    monkeypatch.setattr(Tracker, "from_dict", Tracker.from_dict)
    monkeypatch.setattr(logging_filters, "_installed", set())
    factory = logging.getLogRecordFactory()
    logging_filters.forget_all()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    log = logging.getLogger("rasa.core.processor.test-redaction")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log, stream
    log.removeHandler(handler)
    logging.setLogRecordFactory(factory)
    logging_filters.forget_all()


def _log_everything(log: logging.Logger, words: str) -> None:
    log.debug("Received user message '%s' with intent 'disclose'", words)
    log.debug(f"Current slot values: contact_details: {words}")
    log.info({"event": "processor.message.parse", "parse_data_text": words})
    try:
        raise ValueError(f"could not handle {words!r}")
    except ValueError:
        log.exception("handling failed")


def test_without_the_redaction_the_words_reach_the_log(captured):
    """The finding as it was (and proof that the check below can see the words)."""
    log, stream = captured
    _log_everything(log, DISCLOSURE)
    assert stream.getvalue().count(DISCLOSURE) == 4


def test_rasa_server_logs_never_carry_a_message_it_received(captured):
    from rasa.core.channels.channel import UserMessage

    log, stream = captured
    logging_filters.install_log_redaction("rasa")
    UserMessage(DISCLOSURE, sender_id="rest-1", input_channel="rest")
    UserMessage("ok", sender_id="rest-1", input_channel="rest")  # too short to carry anything
    _log_everything(log, DISCLOSURE)
    log.info("ok then")

    out = stream.getvalue()
    assert DISCLOSURE not in out
    assert out.count(logging_filters.WITHHELD) == 4
    assert "Traceback" in out and "ValueError" in out  # the traceback itself is kept, without the words
    assert "ok then" in out


def test_action_server_logs_never_carry_the_latest_message_or_a_text_slot(captured):
    from rasa_sdk.interfaces import Tracker

    log, stream = captured
    logging_filters.install_log_redaction("actions")
    Tracker.from_dict(
        {
            "sender_id": "pupil-1",
            "slots": {"contact_details": CONTACT, "audience": "pupil"},
            "latest_message": {"text": DISCLOSURE},
            "events": [],
        }
    )
    _log_everything(log, DISCLOSURE)
    _log_everything(log, CONTACT)

    out = stream.getvalue()
    assert DISCLOSURE not in out and CONTACT not in out
    assert out.count("handling failed") == 2


def test_a_short_message_inside_a_longer_one_leaves_nothing_of_the_longer_one(captured):
    log, stream = captured
    logging_filters.install_log_redaction("actions")
    logging_filters.remember("Jess")
    logging_filters.remember(CONTACT)
    log.warning("details: %s", CONTACT)
    assert "Carter" not in stream.getvalue()


def test_non_ascii_words_are_withheld_in_structured_logs_too(captured):
    import json

    log, stream = captured
    logging_filters.install_log_redaction("actions")
    words = "mon beau-père me frappe 😢"
    logging_filters.remember(words)
    log.debug(json.dumps({"text": words}))
    log.debug("raw: %s", words)
    out = stream.getvalue()
    assert "beau-p" not in out and "frappe" not in out


def test_both_servers_install_it_first_thing():
    import inspect

    from bot import action_server, rasa_server

    rasa_main = inspect.getsource(rasa_server.main)
    assert rasa_main.index('install_log_redaction("rasa")') < rasa_main.index("rasa_main()")
    actions_main = inspect.getsource(action_server.main)
    assert actions_main.index('install_log_redaction("actions")') < actions_main.index("runpy.run_module")
