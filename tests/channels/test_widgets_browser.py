"""The parent and pupil widgets in a real browser (Debian's Chromium via Playwright) against the real stack.

Each test loads the page the stack serves, types like a person, and checks what appears on screen. Screenshots
go to reports/screenshots/; the two with an answer and the parent widget on a 320x568 phone are copied
to docs/images/ for the README.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.channels.pupil import DEFAULT_LEAVE_URL, WHO_WILL_BE_TOLD
from bot.knowledge import get_knowledge

# "browser" first: without Chromium the tests skip before the stack is started for nothing.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("browser")]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = PROJECT_ROOT / "reports" / "screenshots"
DOC_IMAGES = PROJECT_ROOT / "docs" / "images"
HOSTILE = "<script>alert(1)</script> and <img src=x onerror=alert(1)>"
NOTICE = (
    f"If you tell me something that means you're not safe, I will tell {WHO_WILL_BE_TOLD} so they can help."
)


def expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def open_widget(page, stack, channel: str, school: str = "lunsford"):
    page.goto(f"{stack.rasa_url}/webhooks/{channel}/?school={school}")
    page.wait_for_selector(".sg-widget .sg-input")


def ask(page, text: str) -> list[dict]:
    """Type ``text`` in the widget's box, press Enter, and return the server's reply once it is shown."""
    page.locator(".sg-input").fill(text)
    with page.expect_response(lambda r: r.url.endswith("/webhook") and r.request.method == "POST") as info:
        page.locator(".sg-input").press("Enter")
    expect()(page.locator(".sg-status")).to_have_text("")
    return info.value.json()


def bot_texts(page) -> list[str]:
    return page.locator(".sg-msg--bot .sg-msg__text").all_text_contents()


def user_texts(page) -> list[str]:
    return page.locator(".sg-msg--user .sg-msg__text").all_text_contents()


def policy_payload(messages: list[dict]) -> dict:
    [payload] = [m["custom"] for m in messages if m.get("custom", {}).get("type") == "policy_answer"]
    return payload


def screenshot(page, name: str, publish: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if publish:
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        try:  # a 128-colour copy is a third of the size and looks the same (Pillow comes with matplotlib)
            from PIL import Image

            Image.open(path).convert("RGB").quantize(colors=128).save(DOC_IMAGES / path.name, optimize=True)
        except ImportError:
            shutil.copyfile(path, DOC_IMAGES / path.name)
    return path


# --- Answers and their citations ----------------------------------------------------------------------------


def test_parent_widget_shows_the_answer_and_the_cited_clauses(page, stack):
    open_widget(page, stack, "website")
    messages = ask(page, "Can teachers follow pupils on Instagram?")
    payload = policy_payload(messages)
    assert (payload["school"], payload["audience"]) == ("lunsford", "parent")
    answer = get_knowledge().answer("lunsford", payload["topic"], "parent")
    assert answer.clauses

    shown = bot_texts(page)
    assert answer.text in shown
    assert any(t.startswith("Source: Lunsford Primary School") for t in shown)

    # The policy's own words are folded away until the parent asks for them.
    citation = page.locator("details.sg-cite").last
    first_quote = citation.locator(".sg-cite__quote").first
    expect()(first_quote).to_be_hidden()
    citation.locator("summary").click()
    expect()(first_quote).to_be_visible()
    assert citation.locator(".sg-cite__section").all_text_contents() == [c.section for c in answer.clauses]
    assert citation.locator(".sg-cite__quote").all_text_contents() == [c.quote for c in answer.clauses]
    screenshot(page, "website-widget", publish=True)
    assert not page.watch.outside_requests


def test_pupil_widget_gives_the_simple_wording_and_the_short_citation_line(page, stack):
    open_widget(page, stack, "pupil")
    messages = ask(page, "can my teacher add me on snap")
    payload = policy_payload(messages)
    assert (payload["school"], payload["audience"]) == ("lunsford", "pupil")
    answer = get_knowledge().answer("lunsford", payload["topic"], "pupil")

    shown = bot_texts(page)
    assert answer.text in shown
    assert f"This is from our school's rules ({answer.clauses[0].section})." in shown
    # No long quotes for pupils: no folded citation, no "Source:" line.
    assert page.locator("details").count() == 0
    assert not any(t.startswith("Source:") for t in shown)
    expect()(page.locator("#sg-notice")).to_have_text(NOTICE)
    screenshot(page, "pupil-widget", publish=True)
    assert not page.watch.outside_requests


def test_fallback_choices_send_their_payload_and_show_their_title(page, stack):
    open_widget(page, stack, "website")
    # Rasa's intent syntax goes straight to the two-stage fallback (whatever the current model makes of
    # gibberish), so the offer of topics as buttons always comes.
    messages = ask(page, "/nlu_fallback")
    [offer] = [m for m in messages if m.get("buttons")]
    choices = page.locator(".sg-choices").last.locator("button")
    assert choices.all_text_contents() == [b["title"] for b in offer["buttons"]]

    first = offer["buttons"][0]
    with page.expect_request(lambda r: r.url.endswith("/webhook")) as sent:
        choices.first.click()
    assert json.loads(sent.value.post_data)["message"] == first["payload"]
    expect()(page.locator(".sg-msg--user .sg-msg__text").last).to_have_text(first["title"])
    expect()(page.locator(".sg-status")).to_have_text("")
    # The offer is used up, and the keyboard focus is back in the box.
    assert all(choices.nth(i).is_disabled() for i in range(choices.count()))
    assert page.evaluate("document.activeElement.classList.contains('sg-input')")


# --- Safeguarding -------------------------------------------------------------------------------------------


def disclosures(env: dict) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "disclosures", "list", "--json", "--by", "widget-test"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_pupil_disclosure_gets_the_safe_reply_with_childline_and_the_notice(page, stack):
    open_widget(page, stack, "pupil")
    messages = ask(page, "someone is sharing my nudes")
    assert not [m for m in messages if "custom" in m]  # never a policy answer
    log = page.locator(".sg-log")
    expect()(log).to_contain_text("0800 1111")
    expect()(log).to_contain_text("Childline")
    expect()(log).to_contain_text("can't keep this a secret")
    expect()(page.locator("#sg-notice")).to_be_visible()
    # The notice and the chat name the same people: a safe adult at school, the Designated Safeguarding Lead.
    expect()(page.locator("#sg-notice")).to_have_text(NOTICE)
    expect()(log).to_contain_text("I am telling a safe adult at school")
    expect()(log).to_contain_text("Designated Safeguarding Lead")
    screenshot(page, "pupil-disclosure")


def test_talk_to_a_grown_up_starts_the_disclosure_route(page, stack):
    open_widget(page, stack, "pupil", school="scotts")
    notice = page.locator("#sg-notice")
    expect()(notice).to_have_text(NOTICE)
    button = page.get_by_role("button", name="Talk to a grown-up")
    expect()(button).to_be_visible()
    with page.expect_response(lambda r: r.url.endswith("/webhook")) as info:
        button.click()
    sent = json.loads(info.value.request.post_data)
    assert sent["message"] == "/disclose"
    expect()(page.locator(".sg-status")).to_have_text("")

    expect()(page.locator(".sg-msg--user .sg-msg__text").last).to_have_text("Talk to a grown-up")
    log = page.locator(".sg-log")
    # Nothing has been said yet: the reply listens first (issue #15), honest that a safe adult is told.
    expect()(log).to_contain_text("I'm here. What would you like to tell me?")
    expect()(log).to_contain_text("I will tell a safe adult at school")
    expect()(log).to_contain_text("0800 1111")

    # The school has it: stored from the pupil channel, for this school, as a pupil.
    sender = "pupil-" + sent["sender"].split(".")[0]  # stored without the server's signature
    [record] = [d for d in disclosures(stack.env) if d["sender_id"] == sender]
    assert (record["school"], record["audience"], record["channel"]) == ("scotts", "pupil", "pupil")
    assert record["text"] == '(pressed the "Talk to a grown-up" button)'


# --- A wrong link -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "says"),
    [("pupil", "Please ask a teacher for the right link."), ("website", "Please contact the school")],
)
def test_a_link_to_an_unknown_school_says_the_link_is_wrong(page, stack, channel, says):
    response = page.goto(f"{stack.rasa_url}/webhooks/{channel}/?school=nowhere")
    assert response.status == 404
    expect()(page.get_by_role("heading", level=1)).to_have_text("This link is not right")
    expect()(page.locator("#sg-unknown")).to_contain_text(says)
    # No chat, and nothing of any other school (its name, its DSL).
    assert page.locator(".sg-widget").count() == 0
    for school in get_knowledge().schools.values():
        expect()(page.locator("body")).not_to_contain_text(school.name)
        for person in school.dsl:
            if person.name:
                expect()(page.locator("body")).not_to_contain_text(person.name)
    screenshot(page, f"{channel}-wrong-link")
    assert not page.watch.outside_requests


# --- Leave quickly ------------------------------------------------------------------------------------------


def neutral_site(page) -> list[str]:
    """Serve the neutral "Leave quickly" site locally (no internet needed); returns the URLs fetched."""
    visits: list[str] = []

    def fulfil(route):
        visits.append(route.request.url)
        body = "<!doctype html><title>Weather</title><p>Sunny"
        route.fulfill(status=200, content_type="text/html", body=body)

    page.route(DEFAULT_LEAVE_URL + "**", fulfil)
    return visits


def stored_sender_id(page):
    return page.evaluate("window.sessionStorage.getItem('schoolguide-sender-pupil')")


@pytest.mark.parametrize("how", ["button", "escape three times"])
def test_leave_quickly_replaces_the_page_and_clears_the_tab(page, stack, how):
    visits = neutral_site(page)
    before = f"{stack.rasa_url}/"  # the page the pupil came from
    page.goto(before)
    open_widget(page, stack, "pupil")
    ask(page, "can my teacher add me on snap")
    assert stored_sender_id(page)
    pupil_url = page.url

    with page.expect_navigation():
        if how == "button":
            page.get_by_role("link", name="Leave quickly").click()
        else:
            page.locator(".sg-input").focus()
            for _ in range(3):
                page.keyboard.press("Escape")
    assert page.url.startswith(DEFAULT_LEAVE_URL) and visits
    assert page.title() == "Weather"

    # location.replace(): the back button skips the pupil page.
    page.go_back()
    assert page.url == before != pupil_url
    # And the tab kept nothing: coming back starts a new conversation.
    open_widget(page, stack, "pupil")
    assert stored_sender_id(page) is None
    assert user_texts(page) == []


def test_a_single_escape_does_not_leave(page, stack):
    neutral_site(page)
    open_widget(page, stack, "pupil")
    page.locator(".sg-input").press("Escape")
    time.sleep(2.5)  # the three presses must come close together
    page.locator(".sg-input").press("Escape")
    page.locator(".sg-input").press("Escape")
    assert "/webhooks/pupil/" in page.url


# --- Escaping -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["website", "pupil"])
def test_html_in_a_message_is_shown_as_text(page, stack, channel):
    open_widget(page, stack, channel)
    ask(page, HOSTILE)
    assert user_texts(page)[-1] == HOSTILE
    assert page.locator(".sg-widget script, .sg-widget img").count() == 0
    time.sleep(0.5)
    assert page.watch.dialogs == []


# --- Keyboard and screen readers ----------------------------------------------------------------------------


FOCUS_INFO = """() => {
  const e = document.activeElement;
  const s = getComputedStyle(e);
  return {tag: e.tagName, cls: String(e.className), text: e.textContent.trim().slice(0, 40),
          outlineStyle: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth),
          outlineColor: s.outlineColor};
}"""


def tab_through(page, presses: int = 12) -> list[dict]:
    stops = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        stops.append(page.evaluate(FOCUS_INFO))
    return stops


def index_of(stops: list[dict], cls: str) -> int:
    return next(i for i, stop in enumerate(stops) if cls in stop["cls"].split())


@pytest.mark.parametrize("channel", ["website", "pupil"])
def test_keyboard_only_reaches_the_box_and_send_with_a_visible_focus(page, stack, channel, contrast):
    open_widget(page, stack, channel)
    stops = tab_through(page)
    box, send = index_of(stops, "sg-input"), index_of(stops, "sg-send")
    assert box < send
    if channel == "pupil":
        leave, grown_up = index_of(stops, "sg-leave"), index_of(stops, "sg-grown-up")
        assert leave < grown_up < box  # "Leave quickly" comes first
    for stop in stops[: send + 1]:
        assert stop["outlineStyle"] == "solid" and stop["outlineWidth"] >= 2, stop
        assert contrast(stop["outlineColor"], "#ffffff") >= 3, stop

    # Ask and open the citation with the keyboard alone.
    open_widget(page, stack, channel)
    for _ in range(box + 1):
        page.keyboard.press("Tab")
    assert page.evaluate(FOCUS_INFO)["cls"] == "sg-input"
    page.keyboard.type("Can teachers follow pupils on Instagram?")
    with page.expect_response(lambda r: r.url.endswith("/webhook")):
        page.keyboard.press("Enter")
    expect()(page.locator(".sg-status")).to_have_text("")
    assert len(bot_texts(page)) >= 2
    if channel == "website":
        page.locator("details.sg-cite summary").last.focus()
        page.keyboard.press("Enter")
        expect()(page.locator("details.sg-cite .sg-cite__quote").last).to_be_visible()


@pytest.mark.parametrize("channel", ["website", "pupil"])
def test_labels_and_live_region_for_screen_readers(page, stack, channel):
    open_widget(page, stack, channel)
    log = page.get_by_role("log", name="Conversation")
    expect()(log).to_have_attribute("aria-live", "polite")
    label = "Your question" if channel == "website" else "Type your question"
    expect()(page.get_by_role("textbox", name=label)).to_be_visible()
    expect()(page.get_by_role("button", name="Send")).to_be_visible()
    expect()(page.get_by_role("region", name=page.locator(".sg-title").text_content())).to_be_visible()
    # Each message says who said it, for people who cannot see the bubbles.
    ask(page, "hello")
    expect()(log.locator(".sg-msg--user .sg-visually-hidden").last).to_have_text("You said:")


COLOURS = """(selector) => {
  const e = document.querySelector(selector);
  const colour = getComputedStyle(e).color;
  let node = e, background = 'rgba(0, 0, 0, 0)';
  while (node && (background === 'rgba(0, 0, 0, 0)' || background === 'transparent')) {
    background = getComputedStyle(node).backgroundColor;
    node = node.parentElement;
  }
  return [colour, background === 'rgba(0, 0, 0, 0)' ? 'rgb(255, 255, 255)' : background];
}"""


@pytest.mark.parametrize("channel", ["website", "pupil"])
def test_rendered_colours_meet_wcag_aa(page, stack, channel, contrast):
    open_widget(page, stack, channel)
    ask(page, "Can teachers follow pupils on Instagram?")
    selectors = [".sg-title", ".sg-msg--bot .sg-msg__text", ".sg-msg--user .sg-msg__text", ".sg-label",
                 ".sg-send", ".sg-status"]  # fmt: skip
    if channel == "website":
        selectors += [".sg-notice-small", ".sg-cite__summary", ".sg-msg--source .sg-msg__text"]
    else:
        selectors += [".sg-leave", ".sg-grown-up", "#sg-notice", ".sg-help li", ".sg-hint"]
    for selector in selectors:
        foreground, background = page.evaluate(COLOURS, selector)
        assert contrast(foreground, background) >= 4.5, (selector, foreground, background)


# --- Embedded on a school's own website ---------------------------------------------------------------------


@pytest.fixture
def school_site(stack, e2e):
    """A stand-in for the school's own website: a real HTTP server on another port (so another origin) whose
    page embeds the widget with the one script tag from the README."""
    page_html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Lunsford Primary School</title>"
        "</head><body><h1>Welcome to Lunsford Primary School</h1><p>News, term dates and letters home.</p>"
        f"<script src='{stack.rasa_url}/webhooks/website/widget.js' data-school='lunsford' defer></script>"
        "</body></html>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page_html)))
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", e2e.free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_the_widget_embeds_on_another_site_with_one_script_tag(page, school_site):
    """On the school's page (another origin): a launcher, and the chat talks to the bot across origins."""
    page.goto(school_site)
    launcher = page.get_by_role("button", name="Ask about our social media policy")
    expect()(launcher).to_have_attribute("aria-expanded", "false")
    launcher.focus()
    page.keyboard.press("Enter")
    expect()(launcher).to_have_attribute("aria-expanded", "true")
    assert page.evaluate("document.activeElement.classList.contains('sg-input')")

    messages = ask(page, "Can teachers follow pupils on Instagram?")
    assert policy_payload(messages)["audience"] == "parent"
    expect()(page.locator("details.sg-cite")).to_have_count(1)
    screenshot(page, "website-widget-embedded")

    page.keyboard.press("Escape")  # closes the chat and gives focus back to the launcher
    expect()(launcher).to_have_attribute("aria-expanded", "false")
    assert page.evaluate("document.activeElement.classList.contains('sg-launcher')")
    assert not page.watch.outside_requests


# --- A small phone ------------------------------------------------------------------------------------------

SMALL_PHONE = {"width": 320, "height": 568}  # iPhone SE (1st generation): the smallest screen we support


def inside(box: dict | None, viewport: dict) -> bool:
    return (
        box is not None
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= viewport["width"]
        and box["y"] + box["height"] <= viewport["height"]
    )


def test_the_open_parent_widget_fits_a_320x568_phone(page, school_site):
    """Embedded behind the launcher on a 320x568 screen: the open panel, its title, Close and the box are all
    on screen (the panel used to start 138 px above it), with a long answer and its wording opened too."""
    page.set_viewport_size(SMALL_PHONE)
    page.goto(school_site)
    launcher = page.get_by_role("button", name="Ask about our social media policy")
    launcher.click()
    panel = page.locator(".sg-root--floating .sg-widget")
    close = page.get_by_role("button", name="Close the chat")
    expect()(panel).to_be_visible()

    def assert_all_on_screen():
        for part in (
            panel,
            page.locator(".sg-title"),
            close,
            page.locator(".sg-input"),
            page.locator(".sg-send"),
        ):
            assert inside(part.bounding_box(), SMALL_PHONE), (part, part.bounding_box())

    assert_all_on_screen()
    ask(page, "Can teachers follow pupils on Instagram?")
    page.locator("details.sg-cite summary").last.click()
    expect()(page.locator("details.sg-cite .sg-cite__quote").last).to_be_visible()
    assert_all_on_screen()
    # Nothing sideways: the page does not scroll horizontally.
    assert page.evaluate("document.documentElement.scrollWidth") <= SMALL_PHONE["width"]
    screenshot(page, "parent-widget-320x568", publish=True)

    close.click()  # Playwright clicks only if the button is the element under the pointer
    expect()(panel).to_be_hidden()
    expect()(launcher).to_have_attribute("aria-expanded", "false")
    assert not page.watch.outside_requests
