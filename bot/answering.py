"""Turn a classified question into what the assistant says: a short answer, then the clause it rests on.

Everything said about a policy comes from :mod:`bot.knowledge` (our own short wording of the cited clauses, or
"this school's policy does not cover this"); this module only chooses which answer and lays it out. The Rasa
actions in ``actions/`` are thin wrappers around these functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bot.conversation import Context
from bot.knowledge.models import Answer
from bot.knowledge.text import shorten

POLICY_INTENT_PREFIX = "policy_"
CITED_IN_TEXT = 2
PUPIL_CITATION = "This is from our school's rules ({section})."


@dataclass(frozen=True)
class Reply:
    """Messages to send (each a kwargs dict for ``dispatcher.utter_message``) and slots to set."""

    messages: tuple[dict[str, Any], ...]
    slots: dict[str, Any] = field(default_factory=dict)


def intent_for_topic(topic: str) -> str:
    return POLICY_INTENT_PREFIX + topic.replace("-", "_")


def topic_for_intent(kb: Any, intent: str | None) -> str | None:
    """The topic id behind a ``policy_*`` intent, or None if it is not one of the catalogue's."""
    if not intent or not intent.startswith(POLICY_INTENT_PREFIX):
        return None
    topic = intent.removeprefix(POLICY_INTENT_PREFIX).replace("_", "-")
    return topic if topic in kb.topics else None


def citation_line(kb: Any, answer: Answer) -> str | None:
    """One line naming where the answer comes from; None when nothing is cited (policy silent).

    Pupils get one section: that of the answer's lead clause (the first about pupils, so a staff rule cited
    first for the adults is not named to a child). Adults get the first two clauses; the payload carries all.
    """
    lead = answer.lead_clause
    if lead is None:
        return None
    if answer.audience == "pupil":
        return PUPIL_CITATION.format(section=lead.section)
    return kb.citation_text(replace(answer, clauses=answer.clauses[:CITED_IN_TEXT]))


def answer_messages(kb: Any, answer: Answer) -> tuple[dict[str, Any], ...]:
    """The answer text (with its citation line) and the machine-readable payload for widgets."""
    cite = citation_line(kb, answer)
    text = answer.text if cite is None else f"{answer.text}\n\n{cite}"
    payload = answer.payload() | {"audience": answer.audience}
    return ({"text": text}, {"json_message": payload})


def policy_reply(kb: Any, context: Context, topic: str, platform: str | None = None) -> Reply:
    """Answer ``topic`` for the conversation's school and audience (a platform variant when one exists)."""
    answer = kb.answer(context.school, topic, context.audience, variant=platform)
    return Reply(messages=answer_messages(kb, answer), slots={"topic": topic})


def _no_topic_yet(context: Context) -> Reply:
    if context.audience == "pupil":
        text = (
            "What would you like to know? You can ask me about apps, being safe online or our school's rules."
        )
    else:
        text = (
            "Could you tell me a bit more about what you'd like to know? For example: "
            "“Can staff follow pupils on Instagram?” or “How do I report a post?”"
        )
    return Reply(messages=({"text": text},))


def follow_up_reply(
    kb: Any, context: Context, intent: str, last_topic: str | None, platform: str | None
) -> Reply:
    """Answer "why?", "where does it say that?", "who do I tell?" and "what about Instagram?" in context."""
    if intent == "ask_who_to_tell":
        return policy_reply(kb, context, "who-to-contact")
    if last_topic is None or last_topic not in kb.topics:
        if intent == "ask_other_platform" and platform:
            return policy_reply(kb, context, "minimum-age", platform)
        return _no_topic_yet(context)
    if intent == "ask_other_platform":
        return policy_reply(kb, context, last_topic, platform)
    answer = kb.answer(context.school, last_topic, context.audience, variant=platform)
    if not answer.clauses:
        return Reply(messages=answer_messages(kb, answer), slots={"topic": last_topic})
    school = kb.schools[context.school]
    if context.audience == "pupil":
        lead = "Here is what our school's rules say:"
    elif intent == "ask_why":
        lead = f"The answer rests on what {school.policy_title} says:"
    else:
        lead = f"It is in {school.policy_title}:"
    quotes = "\n".join(f"• {c.section}: “{shorten(c.quote, 400)}”" for c in answer.clauses[:3])
    payload = answer.payload() | {"audience": answer.audience}
    return Reply(
        messages=({"text": f"{lead}\n{quotes}"}, {"json_message": payload}), slots={"topic": last_topic}
    )


def small_reply(context: Context, intent: str) -> Reply:
    """affirm / deny / thanks outside a fallback: acknowledge and invite the next question."""
    if intent == "thank":
        return Reply(
            messages=({"text": "You're welcome!" if context.audience == "pupil" else "You're welcome."},)
        )
    if context.audience == "pupil":
        text = "OK! Ask me anything else about apps or staying safe online."
    else:
        text = "OK. What else would you like to know about the social media policy?"
    return Reply(messages=({"text": text},))


def nearest_topics_reply(kb: Any, context: Context, intent_ranking: list[dict[str, Any]] | None) -> Reply:
    """First stage of the fallback: offer the nearest topics as buttons (never a guessed answer)."""
    topics: list[str] = []
    for ranked in intent_ranking or []:
        topic = topic_for_intent(kb, ranked.get("name") if isinstance(ranked, dict) else None)
        if topic and topic not in topics:
            topics.append(topic)
        if len(topics) == 3:
            break
    if not topics:
        topics = ["who-to-contact", "report-post", "minimum-age"]
    buttons = [{"title": kb.topics[t].title, "payload": "/" + intent_for_topic(t)} for t in topics]
    buttons.append({"title": "Something else" if context.audience != "pupil" else "None of these",
                    "payload": "/out_of_scope"})  # fmt: skip
    if context.audience == "pupil":
        text = "I'm not sure what you mean. Is it one of these?"
    else:
        text = "I'm not sure I understood. Did you mean one of these?"
    return Reply(messages=({"text": text, "buttons": buttons},))


def rephrase_reply(context: Context) -> Reply:
    """Second stage of the fallback: none of the offered topics fitted, so ask for other words."""
    if context.audience == "pupil":
        return Reply(messages=({"text": "Sorry, I'm not sure what you mean. Can you say it another way?"},))
    return Reply(
        messages=({"text": "Sorry, I'm not sure I understood. Could you put the question another way?"},)
    )


# A question the policy does not touch, by audience ({policy}: the policy title; {school}: the school).
OUT_OF_SCOPE = {
    "pupil": "I can't help with that one. I only know our school's rules about apps, phones and being "
    "online. Please ask your teacher.",
    "staff": "That isn't covered by {policy}, so I can't answer it. Please ask the school office or your "
    "line manager.",
    "parent": "That isn't covered by {policy}, so I can't answer it. The school office at {school} can help.",
}


def out_of_scope_reply(kb: Any, context: Context) -> Reply:
    """A question the policy does not touch (dinner money, the weather, homework): say so, and who to ask;
    never a clause."""
    school = kb.schools[context.school]
    template = OUT_OF_SCOPE.get(context.audience, OUT_OF_SCOPE["parent"])
    return Reply(messages=({"text": template.format(policy=school.policy_title, school=school.name)},))


def handoff_reply(kb: Any, context: Context) -> Reply:
    """Last stage of the fallback: say plainly we can't answer and point to the right person at the school."""
    contact = kb.answer(context.school, "who-to-contact", context.audience).contact
    school = kb.schools[context.school]
    who = contact.title if not contact.names else f"{', '.join(contact.names)} ({contact.title})"
    if context.audience == "pupil":
        text = (
            "Sorry, I can't answer that one. Please ask a grown-up you trust at school. "
            "If you are not safe, call Childline on 0800 1111 or 999 in an emergency."
        )
    else:
        text = (
            f"Sorry, I can't answer that from {school.policy_title}. "
            f"Please contact {who} at {school.name}, who can help."
        )
    return Reply(messages=({"text": text},))
