"""``DisclosureDetector``: the rules layer as a Rasa NLU component, placed LAST in the pipeline.

Two independent layers decide whether a message is a safeguarding disclosure: the trained intent classifier
(intent ``disclose``) and these rules (:mod:`bot.safeguarding.detector`). Either one is enough:

* rules fire -> the intent is forced to ``disclose`` with confidence 1.0, whatever the classifier (or the
  FallbackClassifier's ``nlu_fallback``) said;
* classifier said ``disclose``, rules did not fire -> the intent is left alone and recorded as
  :data:`~bot.safeguarding.detector.CLASSIFIER_ONLY` (category "other", risk "high").

The assessment travels with the message so actions can read it from ``tracker.latest_message``:

* entities ``safeguarding_category`` (one per category) and ``safeguarding_risk``, extractor
  ``DisclosureDetector``. They describe the whole message, not a span, so ``start``/``end`` are both 0: Rasa's
  NLU evaluation treats an empty span as covering no token (whole-message spans would "overlap" and make
  ``rasa test nlu`` raise);
* ``parse_data["safeguarding"]``: ``Assessment.as_dict()`` (rule names included), for the audit log.

``process`` never raises: a failure is logged and the message passes through unchanged. Lone surrogates are
replaced (``bot.untrusted.clean_text``) before the rules see the text, so a broken emoji cannot hide a
disclosure from them.
"""

from __future__ import annotations

import logging
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.nlu.constants import SPACY_DOCS
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_CONFIDENCE,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    EXTRACTOR,
    INTENT,
    INTENT_NAME_KEY,
    INTENT_RANKING_KEY,
    PREDICTED_CONFIDENCE_KEY,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message

from bot.safeguarding.detector import (
    CATEGORY_ENTITY,
    CLASSIFIER_ONLY,
    DISCLOSE_INTENT,
    EXTRACTOR_NAME,
    PARSE_DATA_KEY,
    RISK_ENTITY,
    Assessment,
    assess,
    get_detector,
)
from bot.untrusted import clean_text

logger = logging.getLogger(__name__)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class DisclosureDetector(GraphComponent, IntentClassifier):
    """Forces intent ``disclose`` when the safeguarding rules fire; records the assessment in the message."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            # the intent the domain routes to the disclosure rule/story
            "intent": DISCLOSE_INTENT,
            # load the spaCy pipeline and rules when the model loads, not on the first message
            "warm_up": True,
        }

    def __init__(self, config: dict[str, Any]) -> None:
        self.component_config = config
        self.intent = str(config.get("intent") or DISCLOSE_INTENT)

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> DisclosureDetector:
        if config.get("warm_up", True):
            try:
                get_detector()
            except Exception:  # better the first message retries (and logs) than the model fails to load
                logger.exception("could not load the safeguarding detector at start-up")
        return cls(config)

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            try:
                self._process_one(message)
            except Exception:  # never take the conversation down; the classifier's intent stands
                logger.exception("DisclosureDetector failed on a message; leaving the NLU result unchanged")
        return messages

    def _process_one(self, message: Message) -> None:
        # spaCy cannot encode a lone surrogate (a broken emoji): assess the cleaned words, not nothing.
        text = clean_text(message.get(TEXT))
        if not isinstance(text, str) or not text.strip():
            return
        assessment = assess(text, message.get(SPACY_DOCS[TEXT]))
        if assessment.is_disclosure:
            self._force_intent(message)
        elif (message.get(INTENT) or {}).get(INTENT_NAME_KEY) == self.intent:
            assessment = CLASSIFIER_ONLY
        else:
            return
        self._record(message, assessment)
        logger.info(
            "safeguarding disclosure detected: risk=%s categories=%s rules=%s",
            assessment.risk,
            ",".join(assessment.categories),
            ",".join(assessment.matched),
        )

    def _force_intent(self, message: Message) -> None:
        forced = {INTENT_NAME_KEY: self.intent, PREDICTED_CONFIDENCE_KEY: 1.0}
        ranking = [
            dict(entry)
            for entry in message.get(INTENT_RANKING_KEY) or []
            if entry.get(INTENT_NAME_KEY) != self.intent
        ]
        message.set(INTENT, forced, add_to_output=True)
        message.set(INTENT_RANKING_KEY, [dict(forced)] + ranking, add_to_output=True)

    def _record(self, message: Message, assessment: Assessment) -> None:
        entities = [
            entity for entity in message.get(ENTITIES) or [] if entity.get(EXTRACTOR) != EXTRACTOR_NAME
        ]
        entities += [self._entity(CATEGORY_ENTITY, category) for category in assessment.categories]
        entities.append(self._entity(RISK_ENTITY, assessment.risk))
        message.set(ENTITIES, entities, add_to_output=True)
        message.set(PARSE_DATA_KEY, assessment.as_dict(), add_to_output=True)

    @staticmethod
    def _entity(name: str, value: str) -> dict[str, Any]:
        return {
            ENTITY_ATTRIBUTE_TYPE: name,
            ENTITY_ATTRIBUTE_VALUE: value,
            ENTITY_ATTRIBUTE_START: 0,
            ENTITY_ATTRIBUTE_END: 0,
            ENTITY_ATTRIBUTE_CONFIDENCE: 1.0,
            EXTRACTOR: EXTRACTOR_NAME,
        }
