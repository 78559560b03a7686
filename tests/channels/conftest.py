"""Fixtures for the widget tests: Debian's Chromium driven by Playwright, against the real running stack.

The stack itself (``stack``) and the browser (``browser``) are fixtures in tests/conftest.py. The browser
never reaches the internet: every request that is not to the local stack is aborted and recorded, and the
tests check that the widgets made none (the "Leave quickly" site is fulfilled locally by the test that needs
it).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


class PageWatch:
    """What a page did that it must not: JS errors, CSP violations, dialogs, requests off this machine."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.outside_requests: list[str] = []


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 900, "height": 1000}, device_scale_factor=1)
    watch = PageWatch()

    def only_local(route):
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            watch.outside_requests.append(route.request.url)
            route.abort()

    context.route(re.compile(r"^https?://"), only_local)
    page = context.new_page()
    page.on("pageerror", lambda error: watch.errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            watch.errors.append(f"console: {message.text}")
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )

    def on_dialog(dialog):
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.watch = watch
    yield page
    context.close()
    assert not watch.errors, watch.errors
    assert not watch.dialogs, f"a dialog fired: {watch.dialogs}"


def _channel(value: str) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def parse_colour(text: str) -> tuple[int, int, int]:
    """``#rgb``, ``#rrggbb`` or ``rgb(r, g, b)`` / ``rgba(r, g, b, 1)`` -> (r, g, b)."""
    text = text.strip().lower()
    if text.startswith("#"):
        digits = text[1:]
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))
    match = re.fullmatch(r"rgba?\((\d+),\s*(\d+),\s*(\d+)(?:,\s*([\d.]+))?\)", text)
    assert match, f"not a colour: {text!r}"
    assert match.group(4) in (None, "1"), f"translucent colour {text!r}: compare against what is behind it"
    return tuple(int(match.group(i)) for i in (1, 2, 3))


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio between two colours (1 to 21)."""
    lum = []
    for colour in (foreground, background):
        r, g, b = (_channel(v) for v in parse_colour(colour))
        lum.append(0.2126 * r + 0.7152 * g + 0.0722 * b)
    light, dark = max(lum), min(lum)
    return (light + 0.05) / (dark + 0.05)


@pytest.fixture(scope="session")
def contrast():
    """``contrast(foreground, background)``: the WCAG contrast ratio of two CSS colours."""
    return contrast_ratio
