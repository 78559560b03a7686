"""Rasa NLU component: a question the policy does not touch is out of scope, not a policy topic.

The intent classifier has to put every message somewhere, and a question about dinner money or the heating
lands on whichever policy topic is nearest. This component runs after it: when the classifier chose a policy
topic (``policy_*``) but the message has none of the words that every topic's questions share (``scope.yml``:
posting, messaging, accounts, apps, devices, images, online harm, the policy itself) and names no platform,
the intent becomes ``out_of_scope``. The dialogue then says the policy does not cover it and who to ask,
rather than quoting a clause (data/rules/conversation.yml). A disclosure is still forced afterwards by the
DisclosureDetector, which runs last.

It changes nothing else: a message with one of those words keeps the classifier's answer, and so does every
intent that is not a policy topic.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_TYPE,
    INTENT,
    INTENT_NAME_KEY,
    INTENT_RANKING_KEY,
    PREDICTED_CONFIDENCE_KEY,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message

logger = logging.getLogger(__name__)

SCOPE_PATH = Path(__file__).with_name("scope.yml")
ENTITIES_PATH = Path(__file__).resolve().parents[2] / "knowledge" / "entities.yml"
OUT_OF_SCOPE = "out_of_scope"
POLICY_PREFIX = "policy_"
# Entities that put a message in scope on their own (a platform: "is yt ok for an 11 year old?").
IN_SCOPE_ENTITIES = frozenset({"platform"})


def platform_forms(path: Path = ENTITIES_PATH) -> list[str]:
    """Every way of typing a platform in knowledge/entities.yml, but the everyday words among them ("in a
    fortnight", "threads") and two-letter forms other than the usual short names."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    everyday = set((data.get("everyday_words") or {}).get("platform") or {}) - {"snap"}
    forms = [str(f).lower() for values in (data.get("platform") or {}).values() for f in values or []]
    return [f for f in forms if f not in everyday and (len(f) > 2 or f in {"ig", "yt", "fb"})]


@lru_cache(maxsize=2)
def scope_pattern(path: Path = SCOPE_PATH) -> re.Pattern[str]:
    """One pattern matching any term in ``path`` (or a platform's name) as whole words; ValueError names a bad
    term."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    terms = [str(t).strip() for t in data.get("terms") or [] if str(t).strip()]
    if not terms:
        raise ValueError(f"{path}: no terms")
    terms += [re.escape(form).replace("\\ ", " ?") + "s?" for form in platform_forms()]
    for term in terms:
        try:
            re.compile(term)
        except re.error as error:
            raise ValueError(f"{path}: bad term {term!r}: {error}") from error
    return re.compile(r"(?<!\w)(?:" + "|".join(f"(?:{t})" for t in terms) + r")(?!\w)", re.IGNORECASE)


def in_scope(text: str, entities: list[dict[str, Any]] | None = None) -> bool:
    """The message has a word the policy's topics share, or names a platform."""
    if any(e.get(ENTITY_ATTRIBUTE_TYPE) in IN_SCOPE_ENTITIES for e in entities or []):
        return True
    words = re.sub(r"[\u2018\u2019`]", "'", text or "")
    return bool(scope_pattern().search(words))


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class PolicyScope(GraphComponent, IntentClassifier):
    """Turns a policy topic with no sign of the policy's subject into ``out_of_scope``."""

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> PolicyScope:
        scope_pattern()  # a broken scope.yml fails when the model loads, not on a message
        return cls()

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            try:
                self._process_one(message)
            except Exception:  # never take the conversation down; the classifier's intent stands
                logger.exception("PolicyScope failed on a message; leaving the NLU result unchanged")
        return messages

    @staticmethod
    def _process_one(message: Message) -> None:
        intent = message.get(INTENT) or {}
        name = str(intent.get(INTENT_NAME_KEY) or "")
        if not name.startswith(POLICY_PREFIX):
            return
        text = message.get(TEXT)
        if not isinstance(text, str) or in_scope(text, message.get(ENTITIES)):
            return
        forced = {INTENT_NAME_KEY: OUT_OF_SCOPE, PREDICTED_CONFIDENCE_KEY: 1.0}
        ranking = [
            dict(entry)
            for entry in message.get(INTENT_RANKING_KEY) or []
            if entry.get(INTENT_NAME_KEY) != OUT_OF_SCOPE
        ]
        message.set(INTENT, forced, add_to_output=True)
        message.set(INTENT_RANKING_KEY, [dict(forced)] + ranking, add_to_output=True)
