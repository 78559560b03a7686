"""The ``pupil`` channel: the kid-safe chat page for children (about 7 to 16), at ``/webhooks/pupil/``.

Same machinery as the parent widget (:mod:`bot.channels.website`), with the audience fixed to ``pupil``, and a
page of its own (``static/pupil.html``) built for children and the ICO Children's Code:

* big text and simple words; pupils get the short "This is from our school's rules (...)" line, not quotes;
* a "Leave quickly" link (also: Esc three times) that swaps the page for a neutral site and clears the tab's
  storage; the neutral site is the channel's ``leave_url`` (default: the BBC weather page);
* an always-visible "Talk to a grown-up" button that sends ``/disclose`` straight to the disclosure route;
* one honest line saying who will be told: the Designated Safeguarding Lead the school's policy names, or
  "a safe adult at school" when it names none;
* no tracking, no third-party requests, nothing stored beyond the tab (sessionStorage holds the sender id),
  geolocation, camera and microphone switched off (Permissions-Policy), no external links except the
  helplines (999, Childline) written as plain text.

``?school=<slug>`` picks the school for the page (a known slug only; otherwise the deployment's default).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from bot.channels.website import WebsiteInput, known_schools
from bot.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_LEAVE_URL = "https://www.bbc.co.uk/weather"
NO_NAMED_DSL = "a safe adult at school"


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


def dsl_names(school_slug: str) -> str:
    """Who a pupil's disclosure goes to, as the policy names them: "Elizabeth Lomax", or the safe default."""
    school = known_schools()[school_slug]
    names = [person.name for person in school.dsl if person.name]
    if not names:
        return NO_NAMED_DSL
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


class PupilInput(WebsiteInput):
    """Pupil chat page; the audience is always ``pupil``."""

    AUDIENCE = "pupil"
    PAGE_TEMPLATE = "pupil.html"

    @classmethod
    def name(cls) -> str:
        return "pupil"

    def page_values(self, school: str) -> dict[str, str]:
        return super().page_values(school) | {
            "dsl": dsl_names(school),
            "leave_url": safe_leave_url(self.config.get("leave_url")),
        }


def credentials_entry(settings: Settings) -> tuple[str, dict | None]:
    """Always on. The neutral "Leave quickly" site comes from ``settings.pupil_leave_url``."""
    return f"{__name__}.{PupilInput.__name__}", {"leave_url": settings.pupil_leave_url}
