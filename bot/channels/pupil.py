"""The ``pupil`` channel: the kid-safe chat page for children (about 7 to 16), at ``/webhooks/pupil/``.

Same machinery as the parent widget (:mod:`bot.channels.website`), with the audience fixed to ``pupil``, and a
page of its own (``static/pupil.html``) built for children and the ICO Children's Code:

* big text and simple words; pupils get the short "This is from our school's rules (...)" line, not quotes;
* a "Leave quickly" link (also: Esc three times) that swaps the page for a neutral site and clears the tab's
  storage; the neutral site is the channel's ``leave_url`` (default: the BBC weather page);
* an always-visible "Talk to a grown-up" button that sends ``/disclose`` straight to the disclosure route;
* one honest line saying who will be told, in the chat's words: "a safe adult at school (the Designated
  Safeguarding Lead)";
* no tracking, no third-party requests, nothing stored beyond the tab (sessionStorage holds the sender id),
  geolocation, camera and microphone switched off (Permissions-Policy), no external links except the
  helplines (999, Childline) written as plain text.

``?school=<slug>`` picks the school for the page; without it the page is the deployment's default school's.
A slug we do not know gets a 404 page ("This link is not right. Please ask a teacher for the right link."),
never another school's page or its DSL's name.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from bot.channels.website import WebsiteInput
from bot.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_LEAVE_URL = "https://www.bbc.co.uk/weather"
# Who the notice says a disclosure goes to: the words of the chat's safe reply ("I am telling a safe
# adult at school ... They are called the Designated Safeguarding Lead"), for every school. Children do not
# know the DSL's name, so a name alone would tell them nothing.
WHO_WILL_BE_TOLD = "a safe adult at school (the Designated Safeguarding Lead)"


def safe_leave_url(url: Any) -> str:
    """``url`` if it is a plain http(s) address, else the default (never ``javascript:`` or relative)."""
    if isinstance(url, str):
        parts = urlsplit(url.strip())
        if parts.scheme in ("https", "http") and parts.hostname and not parts.username:
            return url.strip()
        logger.warning(
            "pupil channel: leave_url %r is not an http(s) address; using %s", url, DEFAULT_LEAVE_URL
        )
    return DEFAULT_LEAVE_URL


class PupilInput(WebsiteInput):
    """Pupil chat page; the audience is always ``pupil``."""

    AUDIENCE = "pupil"
    PAGE_TEMPLATE = "pupil.html"
    UNKNOWN_TEMPLATE = "pupil-unknown.html"

    @classmethod
    def name(cls) -> str:
        return "pupil"

    def page_values(self, school: str) -> dict[str, str]:
        return super().page_values(school) | {
            "dsl": WHO_WILL_BE_TOLD,
            "leave_url": safe_leave_url(self.config.get("leave_url")),
        }

    def unknown_page_values(self) -> dict[str, str]:
        return super().unknown_page_values() | {"leave_url": safe_leave_url(self.config.get("leave_url"))}


def credentials_entry(settings: Settings) -> tuple[str, dict | None]:
    """Always on. The neutral "Leave quickly" site comes from ``settings.pupil_leave_url``."""
    return f"{__name__}.{PupilInput.__name__}", {"leave_url": settings.pupil_leave_url}
