"""Rasa NLU component: the conversation's school and audience, from the client's message metadata.

It adds the entities ``school`` and ``audience`` when the metadata carries a valid value (a known school
slug; staff, parent or pupil). The domain fills the ``school`` and ``audience`` slots from them
(``from_entity``), so the slots are right from the first message, inside the Rasa server, with no custom
action: audience-specific replies such as the safe reply to a disclosure still work when the action server
is down. A message without (valid) metadata adds nothing, so the slots keep what earlier messages set; the
actions fall back to the deployment defaults when a slot is still empty.
"""

from __future__ import annotations

import logging
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import ENTITIES, EXTRACTOR
from rasa.shared.nlu.training_data.message import Message

from bot.conversation import Context, resolve_context
from bot.settings import get_settings

logger = logging.getLogger(__name__)
EXTRACTOR_NAME = "ConversationContext"
METADATA = "metadata"


def _known_schools() -> tuple[str, ...]:
    from bot.knowledge import get_knowledge

    return tuple(get_knowledge().schools)


def _sent(value: Any) -> str:
    return value.strip().lower() if isinstance(value, str) else ""


def context_entities(metadata: Any) -> list[dict[str, Any]]:
    """The ``school`` and ``audience`` entities the metadata validly names (none for invalid values)."""
    if not isinstance(metadata, dict):
        return []
    # resolve_context validates; a value only counts if it survived as the one the client sent.
    context: Context = resolve_context(get_settings(), _known_schools(), metadata)
    # Only strings count: str() of a value nested thousands deep would overflow the stack.
    sent = {key: _sent(metadata.get(key)) for key in ("school", "audience")}
    return [
        {"entity": key, "value": value, "start": 0, "end": 0, EXTRACTOR: EXTRACTOR_NAME}
        for key, value in (("school", context.school), ("audience", context.audience))
        if sent[key] == value
    ]


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=False)
class ConversationContext(GraphComponent, EntityExtractorMixin):
    """Adds ``school`` and ``audience`` entities taken from the message metadata."""

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> ConversationContext:
        return cls()

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            try:
                entities = [e for e in message.get(ENTITIES) or [] if e.get(EXTRACTOR) != EXTRACTOR_NAME]
                entities += context_entities(message.get(METADATA))
                message.set(ENTITIES, entities, add_to_output=True)
            except Exception:  # never take the conversation down; the slots keep their last values
                logger.exception("could not read the conversation context from the metadata")
        return messages
