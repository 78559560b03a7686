"""What the person is told after the safe reply, once their disclosure is recorded.

Staff and parents get the reference so they can quote it to the school. Pupils get no jargon, just a gentle,
optional offer: they do not have to say who they are for the concern to reach the right adult.
"""

from __future__ import annotations

REFERENCE_GIVEN = (
    "I have passed this to the school's Designated Safeguarding Lead. Your reference is {reference}."
)
# Used when nothing could be stored (the log is the only trace): never claim a hand-off that did not happen.
REFERENCE_UNAVAILABLE = (
    "Please also contact the school's Designated Safeguarding Lead directly, so that this reaches them "
    "as quickly as possible."
)
PUPIL_OFFER = (
    "If you would like to, you can tell me your name and your class, so the right adult at school can find "
    "you and help. You don't have to."
)


def handoff_text(audience: str | None, reference: str | None) -> str:
    """The single follow-up message for ``audience`` ("staff", "parent" or "pupil")."""
    if audience == "pupil":
        return PUPIL_OFFER
    if reference:
        return REFERENCE_GIVEN.format(reference=reference)
    return REFERENCE_UNAVAILABLE
