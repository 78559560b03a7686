"""Policy answers, follow-ups and the two-stage fallback. Thin: the decisions live in bot.answering."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet, UserUtteranceReverted
from rasa_sdk.executor import CollectingDispatcher

from bot import answering
from bot.conversation import Context, resolve_context
from bot.knowledge import get_knowledge
from bot.nlp.entities import canonical
from bot.safeguarding import aftercare
from bot.settings import get_settings

logger = logging.getLogger(__name__)


def conversation_context(tracker: Tracker) -> Context:
    """School and audience: this message's metadata first, then the slots, then the deployment defaults."""
    slots = {"school": tracker.get_slot("school"), "audience": tracker.get_slot("audience")}
    metadata = tracker.latest_message.get("metadata")
    return resolve_context(get_settings(), get_knowledge().schools, metadata, slots)


def latest_platform(tracker: Tracker) -> str | None:
    """The platform named in this message (canonical key), else the one remembered in the slot."""
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") == "platform":
            key = canonical("platform", entity.get("value"))
            if key:
                return key
    return canonical("platform", tracker.get_slot("platform"))


def send(dispatcher: CollectingDispatcher, context: Context, reply: answering.Reply) -> list[EventType]:
    for message in reply.messages:
        dispatcher.utter_message(**message)
    events: list[EventType] = [SlotSet("school", context.school), SlotSet("audience", context.audience)]
    return events + [SlotSet(name, value) for name, value in reply.slots.items()]


def _school_facts(context: Context) -> dict[str, Any] | None:
    school = get_knowledge().schools.get(context.school)
    if school is None:
        return None
    return {"dsl": [{"name": person.name} for person in school.dsl]}


def after_disclosure(tracker: Tracker, context: Context, *, unclear: bool = False) -> answering.Reply | None:
    """The reply written for the turns straight after a disclosure (bot.safeguarding.aftercare), when the
    latest message is one of them and is about it; with ``unclear``, also when it is about nothing known (the
    fallback: no topic buttons then). None otherwise, or if the check fails (the usual reply follows)."""
    try:
        if not aftercare.just_after_a_disclosure(tracker.events):
            return None
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        kind = aftercare.follow_up_kind(str(tracker.latest_message.get("text") or ""), intent)
        if kind is None and not unclear:
            return None
        text = aftercare.reply_text(kind or aftercare.UNCLEAR, context.audience, _school_facts(context))
        return answering.Reply(messages=({"text": text},))
    except Exception:
        logger.exception("Could not check for a follow-up to a disclosure; answering as usual")
        return None


class ActionAfterDisclosure(Action):
    """ "What happens now?", "will I get in trouble?", "can you delete it?": the reply written for that moment
    (right after a disclosure), or what would happen if they told (any other time)."""

    def name(self) -> str:
        return "action_after_disclosure"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        context = conversation_context(tracker)
        reply = after_disclosure(tracker, context, unclear=True)
        if reply is None:
            text = aftercare.telling_text(context.audience, _school_facts(context))
            reply = answering.Reply(messages=({"text": text},))
        return send(dispatcher, context, reply)


class ActionAnswerPolicy(Action):
    def name(self) -> str:
        return "action_answer_policy"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        kb = get_knowledge()
        context = conversation_context(tracker)
        aftercare_reply = after_disclosure(tracker, context)
        if aftercare_reply is not None:
            return send(dispatcher, context, aftercare_reply)
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        topic = answering.topic_for_intent(kb, intent)
        if topic is None:
            return send(dispatcher, context, answering.handoff_reply(kb, context))
        platform = latest_platform(tracker) if _mentions_platform(tracker) else None
        return send(dispatcher, context, answering.policy_reply(kb, context, topic, platform))


def _mentions_platform(tracker: Tracker) -> bool:
    return any(e.get("entity") == "platform" for e in tracker.latest_message.get("entities") or [])


class ActionFollowUp(Action):
    def name(self) -> str:
        return "action_follow_up"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        kb = get_knowledge()
        context = conversation_context(tracker)
        aftercare_reply = after_disclosure(tracker, context)
        if aftercare_reply is not None:
            return send(dispatcher, context, aftercare_reply)
        intent = (tracker.latest_message.get("intent") or {}).get("name") or ""
        if intent in {"affirm", "deny", "thank"}:
            return send(dispatcher, context, answering.small_reply(context, intent))
        platform = latest_platform(tracker)
        reply = answering.follow_up_reply(kb, context, intent, tracker.get_slot("topic"), platform)
        return send(dispatcher, context, reply)


class ActionDefaultAskAffirmation(Action):
    """First stage of the two-stage fallback: the nearest topics as buttons."""

    def name(self) -> str:
        return "action_default_ask_affirmation"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        kb = get_knowledge()
        context = conversation_context(tracker)
        # Straight after a disclosure: no topic buttons, whatever the message was.
        aftercare_reply = after_disclosure(tracker, context, unclear=True)
        if aftercare_reply is not None:
            return send(dispatcher, context, aftercare_reply)
        ranking = tracker.latest_message.get("intent_ranking")
        return send(dispatcher, context, answering.nearest_topics_reply(kb, context, ranking))


class ActionDefaultAskRephrase(Action):
    """Second stage: none of the offered topics fitted; ask for the question in other words."""

    def name(self) -> str:
        return "action_default_ask_rephrase"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        context = conversation_context(tracker)
        return send(dispatcher, context, answering.rephrase_reply(context))


class ActionDefaultFallback(Action):
    """Last stage: hand off to a person at the school, and leave the conversation as it was."""

    def name(self) -> str:
        return "action_default_fallback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        kb = get_knowledge()
        context = conversation_context(tracker)
        aftercare_reply = after_disclosure(tracker, context)
        if aftercare_reply is not None:
            send(dispatcher, context, aftercare_reply)
            return [UserUtteranceReverted()]
        # A question outside the policy (typed, not the "None of these" button): say so and who to ask.
        typed = not str(tracker.latest_message.get("text") or "").startswith("/")
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        if intent == "out_of_scope" and typed:
            send(dispatcher, context, answering.out_of_scope_reply(kb, context))
        else:
            send(dispatcher, context, answering.handoff_reply(kb, context))
        return [UserUtteranceReverted()]
