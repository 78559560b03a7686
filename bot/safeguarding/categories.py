"""What a disclosure can be about and how urgent it is: shared by detection, storage and evaluation."""

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
