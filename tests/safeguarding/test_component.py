"""DisclosureDetector, the Rasa NLU component: called directly, then inside a real trained Rasa pipeline."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.constants import SPACY_DOCS
from rasa.shared.core.events import UserUttered
from rasa.shared.nlu.constants import ENTITIES, INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from bot.safeguarding import component as component_module
from bot.safeguarding.component import DisclosureDetector
from bot.safeguarding.detector import assess, assessment_from_parse_data, get_detector

DISCLOSURE = "my step dad hits me"
QUESTION = "what does the policy say about staff adding pupils on snapchat?"


def make_component(**config) -> DisclosureDetector:
    return DisclosureDetector.create({**DisclosureDetector.get_default_config(), **config}, None, None, None)


def classified(text: str, intent: str = "ask_policy", confidence: float = 0.93, **extra) -> Message:
    """A message as the classifiers before us leave it."""
    ranking = [
        {"name": intent, "confidence": confidence},
        {"name": "greet", "confidence": round(1 - confidence, 2)},
    ]
    data = {TEXT: text, INTENT: {"name": intent, "confidence": confidence}, INTENT_RANKING_KEY: ranking}
    data.update(extra)
    return Message(data=data, output_properties={TEXT, INTENT, INTENT_RANKING_KEY, ENTITIES})


def ours(message: Message) -> list[dict]:
    return [e for e in message.get(ENTITIES) or [] if e.get("extractor") == "DisclosureDetector"]


def test_component_is_registered_as_an_untrainable_intent_classifier():
    registered = DefaultV1Recipe._from_registry("bot.safeguarding.component.DisclosureDetector")
    assert registered.clazz is DisclosureDetector
    assert DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER in registered.types
    assert registered.is_trainable is False


@pytest.mark.parametrize("previous", ["ask_policy", "greet", "nlu_fallback"])
def test_rules_firing_force_disclose_whatever_the_classifier_said(previous):
    message = classified(DISCLOSURE, intent=previous)
    make_component().process([message])
    assert message.get(INTENT) == {"name": "disclose", "confidence": 1.0}
    ranking = message.get(INTENT_RANKING_KEY)
    assert ranking[0] == {"name": "disclose", "confidence": 1.0}
    assert ranking[1]["name"] == previous  # what the classifier thought is kept below
    assert [r["name"] for r in ranking].count("disclose") == 1


def test_assessment_is_recorded_as_entities_and_parse_data():
    message = classified(DISCLOSURE)
    make_component().process([message])
    expected = assess(DISCLOSURE)
    entities = ours(message)
    assert [e["value"] for e in entities if e["entity"] == "safeguarding_category"] == list(
        expected.categories
    )
    assert [e["value"] for e in entities if e["entity"] == "safeguarding_risk"] == [expected.risk]
    for entity in entities:
        # whole-message facts: an empty span, so Rasa's entity evaluation never sees overlapping spans
        assert (entity["start"], entity["end"], entity["confidence"]) == (0, 0, 1.0)
    output = message.as_dict(only_output_properties=True)  # what reaches parse_data and the tracker
    assert output["intent"]["name"] == "disclose"
    assert output["safeguarding"] == expected.as_dict()
    assert assessment_from_parse_data(output) == expected


def test_classifier_only_disclosure_is_left_alone_and_recorded_as_unknown_high():
    message = classified(
        "something is going on with me and i need to talk to the safe adult", intent="disclose"
    )
    assert not assess(message.get(TEXT)).is_disclosure  # the rules alone would not fire here
    make_component().process([message])
    assert message.get(INTENT) == {"name": "disclose", "confidence": 0.93}  # not inflated to 1.0
    assert message.get("safeguarding")["matched"] == ["intent_classifier"]
    assert {(e["entity"], e["value"]) for e in ours(message)} == {
        ("safeguarding_category", "other"),
        ("safeguarding_risk", "high"),
    }


def test_ordinary_message_passes_through_untouched():
    message = classified(
        QUESTION, entities=[{"entity": "platform", "value": "snapchat", "start": 60, "end": 68}]
    )
    before = dict(message.data)
    make_component().process([message])
    assert message.data == before
    assert "safeguarding" not in message.as_dict(only_output_properties=True)


def test_other_extractors_entities_are_kept_and_reprocessing_is_idempotent():
    platform = {"entity": "platform", "value": "snapchat", "start": 0, "end": 4, "extractor": "EntityRuler"}
    message = classified("sir added me on snap and keeps dming me", entities=[platform])
    component = make_component()
    component.process([message])
    first = list(message.get(ENTITIES))
    component.process([message])
    assert message.get(ENTITIES) == first
    assert platform in first and len(ours(message)) >= 2


def test_reuses_the_spacy_doc_from_spacynlp(monkeypatch):
    """The doc SpacyNLP put on the message is what assess() receives (and uses, see test_detector)."""
    doc = get_detector().nlp("my uncle hits me")
    seen = []

    def spy(text, doc=None):
        seen.append(doc)
        return assess(text, doc)

    monkeypatch.setattr(component_module, "assess", spy)
    with_doc = classified("My uncle hits me", **{SPACY_DOCS[TEXT]: doc})
    without_doc = classified("My uncle hits me")
    make_component().process([with_doc, without_doc])
    assert seen == [doc, None]
    assert with_doc.get(INTENT)["name"] == without_doc.get(INTENT)["name"] == "disclose"
    assert with_doc.get("safeguarding") == without_doc.get("safeguarding")


@pytest.mark.parametrize("text", [None, "", "   ", 42, ["a", "list"]])
def test_odd_messages_pass_through(text):
    message = Message(data={TEXT: text, INTENT: {"name": "greet", "confidence": 0.9}})
    make_component().process([message])
    assert message.get(INTENT) == {"name": "greet", "confidence": 0.9}


def test_process_never_raises_when_the_detector_breaks(monkeypatch, caplog):
    def broken(text, doc=None):
        raise RuntimeError("vocabulary missing")

    monkeypatch.setattr(component_module, "assess", broken)
    messages = [classified(DISCLOSURE), classified(QUESTION)]
    assert make_component().process(messages) == messages
    assert messages[0].get(INTENT)["name"] == "ask_policy"
    assert "DisclosureDetector failed" in caplog.text


def test_create_survives_a_detector_that_cannot_load(monkeypatch):
    def cannot_load():
        raise OSError("no spaCy")

    monkeypatch.setattr(component_module, "get_detector", cannot_load)
    assert isinstance(make_component(), DisclosureDetector)


# --- a real, trained Rasa NLU pipeline ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_agent(tmp_path_factory):
    """Whitespace tokens + count vectors + DIET (1 epoch) + FallbackClassifier + DisclosureDetector.

    The training data has NO `disclose` intent, so the classifier can never predict it: any `disclose` in a
    parse result was forced by the component.
    """
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu

    work = tmp_path_factory.mktemp("rasa")
    (work / "config.yml").write_text(
        textwrap.dedent(
            """\
            recipe: default.v1
            language: en
            assistant_id: safeguarding-component-test
            pipeline:
              - name: WhitespaceTokenizer
              - name: CountVectorsFeaturizer
              - name: DIETClassifier
                epochs: 1
              - name: FallbackClassifier
                threshold: 0.7
              - name: bot.safeguarding.component.DisclosureDetector
            policies: []
            """
        ),
        encoding="utf-8",
    )
    (work / "nlu.yml").write_text(
        textwrap.dedent(
            """\
            version: "3.1"
            nlu:
            - intent: greet
              examples: |
                - hello
                - hi there
                - good morning
            - intent: ask_policy
              examples: |
                - what does the policy say about snapchat
                - can staff follow pupils on instagram
                - how do i report a post
            """
        ),
        encoding="utf-8",
    )
    model = train_nlu(
        str(work / "config.yml"), str(work / "nlu.yml"), str(work / "models"), fixed_model_name="m"
    )
    assert model and Path(model).exists()
    return Agent.load(model)


def test_real_pipeline_forces_disclose_for_a_disclosure_the_classifier_cannot_know(trained_agent):
    parse = asyncio.run(trained_agent.parse_message("sir added me on insta and keeps dming me"))
    assert parse["intent"] == {"name": "disclose", "confidence": 1.0}
    assert parse["intent_ranking"][0]["name"] == "disclose"
    assert {e["value"] for e in parse["entities"] if e["entity"] == "safeguarding_category"} == {
        "adult_boundary_breach",
        "allegation_about_adult",
    }
    assert parse["safeguarding"]["risk"] == "high"
    # What Rasa stores in the tracker keeps it, so actions can read tracker.latest_message
    event = UserUttered(parse["text"], parse["intent"], parse["entities"], parse)
    stored = event.as_dict()["parse_data"]
    assert assessment_from_parse_data(stored) == assess("sir added me on insta and keeps dming me")


def test_real_pipeline_leaves_ordinary_questions_to_the_classifier(trained_agent):
    parse = asyncio.run(trained_agent.parse_message("what does the policy say about sexting?"))
    assert parse["intent"]["name"] in {"greet", "ask_policy", "nlu_fallback"}
    assert "safeguarding" not in parse
    assert not [e for e in parse["entities"] if e.get("extractor") == "DisclosureDetector"]
