"""Rasa input channels: REST (an integration channel), the parent and pupil widgets, Slack and Teams.

Each channel module exposes ``credentials_entry(settings) -> (class path, config) | None``;
``schoolguide run`` writes ``var/credentials.yml`` from them, so secrets stay in the settings (the
environment), never in files in git.
A channel whose settings are missing (e.g. no Slack token) is simply not enabled; so is REST when the server
binds beyond loopback without ``SCHOOLGUIDE_REST_TOKEN`` (see :mod:`bot.channels.rest`).
"""

from __future__ import annotations

import importlib
from typing import Any

from bot.settings import Settings

# Add a channel by adding its module here.
CHANNEL_MODULES = (
    "bot.channels.rest",
    "bot.channels.website",
    "bot.channels.pupil",
    "bot.channels.slack",
    "bot.channels.teams",
)


def credentials(settings: Settings) -> dict[str, Any]:
    """The Rasa credentials mapping for every enabled channel."""
    entries: dict[str, Any] = {}
    for name in CHANNEL_MODULES:
        entry = importlib.import_module(name).credentials_entry(settings)
        if entry is not None:
            class_path, config = entry
            entries[class_path] = config
    return entries
