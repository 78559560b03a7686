"""What the person is told after the safe reply, once their disclosure is recorded.

Staff and parents get the reference so they can quote it to the school. Pupils and parents are then asked,
once, for optional contact details (the contact form's question, ``contact_offer``): pupils with no jargon,
and told they do not have to say who they are for the concern to reach the right adult.

The replies to that question never repeat the details back: on a shared screen the next person could read
them. Details that arrive split over two messages ("jess", then "year 6 class 6B") are kept too, and the
second message is thanked briefly.
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

# The contact form's question (asked once, by action_ask_contact_details).
PUPIL_OFFER = (
    "If you would like to, you can tell me your name and your class, so the right adult at school can find "
    "you and help. You don't have to."
)
PARENT_OFFER = (
    "So that the Designated Safeguarding Lead can reach you, you can type a phone number or email address "
    "here. You don't have to: just say no if you would rather not."
)
# Asked again, once, when the answer was only "yes" or "ok".
PUPIL_PROMPT = "OK. Please type your name and your class."
PARENT_PROMPT = "OK. Please type the phone number or email address the school can use to contact you."

# Details given and kept (in the database, or in the spool until the database is back).
PUPIL_THANKS = "Thank you. I've passed that on too."
PARENT_THANKS = (
    "Thank you. I have added these contact details to your report, and the Designated Safeguarding Lead "
    "will use them to contact you."
)
# More details in the message after them ("jess", then "year 6 class 6B"): kept with the same report.
PUPIL_MORE_THANKS = "Thanks. I've passed that on as well."
PARENT_MORE_THANKS = "Thank you. I have added that to your report as well."
# Details given but nothing could keep them: say so, never pretend.
PUPIL_NOT_SAVED = (
    "Thank you. If you can, please also tell a teacher or another grown-up you trust at school, so they "
    "can help you."
)
PARENT_NOT_SAVED = (
    "Thank you. I'm sorry, I could not save those details just now. Please contact the school's Designated "
    "Safeguarding Lead directly so they can reach you."
)
# No details ("no", "no thanks", "I don't want to").
PUPIL_DECLINED = "That's OK. You don't have to. I have still told a safe adult at school what you said."
PUPIL_DECLINED_NO_REFERENCE = (
    "That's OK. You don't have to. If you can, please also tell a teacher or another grown-up you trust at "
    "school."
)
PARENT_DECLINED = (
    "That's OK. Your report has still been passed to the school's Designated Safeguarding Lead. If you "
    "would like to follow it up, contact the school and quote your reference {reference}."
)
PARENT_DECLINED_NO_REFERENCE = (
    "That's OK. If you would like to follow this up, please contact the school's Designated Safeguarding "
    "Lead directly."
)

CONTACT_AUDIENCES = ("pupil", "parent")


def handoff_text(audience: str | None, reference: str | None) -> str | None:
    """The follow-up message for ``audience`` ("staff", "parent" or "pupil"); None for pupils.

    Pupils get no reference (it means nothing to a child, and the offer that follows is all they need).
    """
    if audience == "pupil":
        return None
    if reference:
        return REFERENCE_GIVEN.format(reference=reference)
    return REFERENCE_UNAVAILABLE


def offers_contact(audience: str | None) -> bool:
    """Pupils and parents are asked for optional contact details; staff are at school already."""
    return audience in CONTACT_AUDIENCES


def contact_offer(audience: str | None) -> str:
    return PUPIL_OFFER if audience == "pupil" else PARENT_OFFER


def contact_prompt(audience: str | None) -> str:
    return PUPIL_PROMPT if audience == "pupil" else PARENT_PROMPT


def contact_thanks(audience: str | None, *, saved: bool) -> str:
    if audience == "pupil":
        return PUPIL_THANKS if saved else PUPIL_NOT_SAVED
    return PARENT_THANKS if saved else PARENT_NOT_SAVED


def contact_more_thanks(audience: str | None, *, saved: bool) -> str:
    if not saved:
        return contact_thanks(audience, saved=False)
    return PUPIL_MORE_THANKS if audience == "pupil" else PARENT_MORE_THANKS


def contact_declined(audience: str | None, reference: str | None) -> str:
    if audience == "pupil":
        return PUPIL_DECLINED if reference else PUPIL_DECLINED_NO_REFERENCE
    if reference:
        return PARENT_DECLINED.format(reference=reference)
    return PARENT_DECLINED_NO_REFERENCE
