"""Rasa input channels: the REST channel with input checks, and (later) the widgets, Slack and Teams."""
