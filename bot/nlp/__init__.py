"""The project's own spaCy pipeline (no downloaded model) and the entity vocabulary behind it."""
