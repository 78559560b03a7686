"""SchoolGuide's custom actions, loaded by the Rasa action server (``python -m bot.action_server --actions
actions``: Rasa SDK's own server, without TensorFlow).

Each area keeps its actions in its own module; import it here so the action server registers them.
"""

from actions.policy import (
    ActionAfterDisclosure,
    ActionAnswerPolicy,
    ActionDefaultAskAffirmation,
    ActionDefaultAskRephrase,
    ActionDefaultFallback,
    ActionFollowUp,
)
from actions.safeguarding import ActionDisclosureReference, ActionLogDisclosure, maybe_start_worker

__all__ = [
    "ActionAfterDisclosure",
    "ActionAnswerPolicy",
    "ActionDefaultAskAffirmation",
    "ActionDefaultAskRephrase",
    "ActionDefaultFallback",
    "ActionDisclosureReference",
    "ActionFollowUp",
    "ActionLogDisclosure",
]

# The action server is where disclosures arrive, so it also runs the alert worker (SCHOOLGUIDE_WORKER=off
# to run it separately with `schoolguide disclosures worker`).
maybe_start_worker()
