"""SchoolGuide: answers social-media-policy questions from a cited clause base and hands safeguarding
disclosures to the school's Designated Safeguarding Lead."""

__version__ = "0.1.0"
