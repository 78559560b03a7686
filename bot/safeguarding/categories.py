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
    # A concern or allegation about an adult in a position of trust (staff, supply staff, volunteer, coach,
    # the headteacher): Keeping Children Safe in Education Part 4 routes it to the headteacher (the chair of
    # governors when it is about the headteacher), who involves the LADO. The staff reply says so.
    "allegation_about_adult",
    "other",
)
# How the DSL's alerts and the desk name each category.
CATEGORY_LABELS = {
    "sexual_abuse_grooming": "Sexual abuse / grooming",
    "image_sharing_sextortion": "Image sharing / sextortion",
    "adult_boundary_breach": "Adult boundary breach",
    "bullying": "Bullying",
    "self_harm_suicide": "Self-harm / suicide",
    "physical_abuse_neglect": "Physical abuse / neglect",
    "radicalisation": "Radicalisation",
    "allegation_about_adult": "Allegation about an adult in a position of trust (KCSIE Part 4)",
    "other": "Other concern",
}
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
    "allegation_about_adult": "grooming",
}
# Staff get their own reply for an allegation about an adult (KCSIE Part 4); otherwise the staff text.
ALLEGATION_KIND = "allegation"
STAFF_REPLY_KINDS = (ALLEGATION_KIND,)
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


def staff_reply_kind(categories: Iterable[str] | None) -> str:
    """The staff reply that fits: the KCSIE Part 4 one when the concern is about an adult in a position of
    trust, else the generic staff text."""
    return ALLEGATION_KIND if "allegation_about_adult" in set(categories or ()) else GENERIC_KIND


def kind_for(
    audience: str | None, categories: Iterable[str] | None, risk: str | None = None, *, button: bool = False
) -> str:
    """The ``disclosure_kind`` for this audience: the pupil's kinds for pupils (and an unknown audience, who
    get the pupil's texts), the allegation reply or generic for staff, generic for parents."""
    if audience == "staff":
        return GENERIC_KIND if button else staff_reply_kind(categories)
    if audience == "parent":
        return GENERIC_KIND
    return reply_kind(categories, risk, button=button)


def reply_kind(categories: Iterable[str] | None, risk: str | None = None, *, button: bool = False) -> str:
    """The pupil reply that fits a disclosure with these categories and risk (``button``: /disclose)."""
    if button:
        return LISTEN_KIND
    kinds = {CATEGORY_KIND[c] for c in categories or () if isinstance(c, str) and c in CATEGORY_KIND}
    if risk == "immediate":
        kinds.add(DANGER_NOW_KIND)
    return next((kind for kind in _PRECEDENCE if kind in kinds), GENERIC_KIND)
