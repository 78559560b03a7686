"""What a disclosure can be about and how urgent it is: shared by detection, storage and evaluation.

It also decides which of the pupil's safe replies fits a disclosure (``reply_kind``): the texts are in
``replies.yml`` (``pupil_kinds``), and domain.yml's ``utter_disclosure_safe`` picks one by the
``disclosure_kind`` slot, which ``action_log_disclosure`` sets (the failsafe uses the same function).
"""

from __future__ import annotations

from collections.abc import Iterable

CATEGORIES = (
    "sexual_abuse_grooming",
    "image_sharing_sextortion",
    "adult_boundary_breach",
    "bullying",
    "self_harm_suicide",
    "physical_abuse_neglect",
    "radicalisation",
    "other",
)
# Risk of a disclosure, most urgent first.
RISKS = ("immediate", "high", "medium")

# The pupil's safe reply, by what was said. "generic": nothing more specific is known (also the reply when
# the action server is down); "listen": the "Talk to a grown-up" button, before anything was said.
GENERIC_KIND = "generic"
LISTEN_KIND = "listen"
DANGER_NOW_KIND = "danger_now"
REPLY_KINDS = (
    GENERIC_KIND,
    LISTEN_KIND,
    "bullying",
    "images",
    "grooming",
    "self_harm",
    "danger_at_home",
    DANGER_NOW_KIND,
    "radicalisation",
)
CATEGORY_KIND = {
    "self_harm_suicide": "self_harm",
    "physical_abuse_neglect": "danger_at_home",
    "image_sharing_sextortion": "images",
    "sexual_abuse_grooming": "grooming",
    "adult_boundary_breach": "grooming",
    "radicalisation": "radicalisation",
    "bullying": "bullying",
}
# When a message is about several things, the reply for the most urgent one. Self-harm and danger at home
# already lead with 999; any other disclosure the detector rates "immediate" gets the reply that does.
_PRECEDENCE = (
    "self_harm",
    DANGER_NOW_KIND,
    "danger_at_home",
    "images",
    "grooming",
    "radicalisation",
    "bullying",
)


def reply_kind(categories: Iterable[str] | None, risk: str | None = None, *, button: bool = False) -> str:
    """The pupil reply that fits a disclosure with these categories and risk (``button``: /disclose)."""
    if button:
        return LISTEN_KIND
    kinds = {CATEGORY_KIND[c] for c in categories or () if isinstance(c, str) and c in CATEGORY_KIND}
    if risk == "immediate":
        kinds.add(DANGER_NOW_KIND)
    return next((kind for kind in _PRECEDENCE if kind in kinds), GENERIC_KIND)
