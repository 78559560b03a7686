"""The clause base: each school's policy as quoted clauses, and cited answers per topic and audience.

Typical use (the Rasa action)::

    kb = get_knowledge()
    answer = kb.answer("lunsford", "staff-befriend-pupils", "parent", variant="whatsapp")
    answer.text, kb.citation_text(answer), answer.payload()
"""

from bot.knowledge.base import KnowledgeBase
from bot.knowledge.loader import check_knowledge, get_knowledge, load_knowledge, read_knowledge
from bot.knowledge.models import (
    Answer,
    Clause,
    Contact,
    ContactRoute,
    Helpline,
    OfficialAccount,
    Person,
    Review,
    School,
    Topic,
    TopicAnswer,
    Variant,
)
from bot.knowledge.problems import KnowledgeError, Problem

__all__ = [
    "Answer",
    "Clause",
    "Contact",
    "ContactRoute",
    "Helpline",
    "KnowledgeBase",
    "KnowledgeError",
    "OfficialAccount",
    "Person",
    "Problem",
    "Review",
    "School",
    "Topic",
    "TopicAnswer",
    "Variant",
    "check_knowledge",
    "get_knowledge",
    "load_knowledge",
    "read_knowledge",
]
