"""The parent and pupil widget channels over plain HTTP: what they serve, with which headers, and what they do
with what a client sends. The `stack` tests drive the real running servers (tests/conftest.py)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from bot.channels import credentials
from bot.channels.pupil import DEFAULT_LEAVE_URL, WHO_WILL_BE_TOLD, PupilInput, safe_leave_url
from bot.channels.website import STATIC_DIR, WebsiteInput, render_template
from bot.knowledge import get_knowledge
from bot.settings import get_settings

CHANNELS = {"website": "parent", "pupil": "pupil"}
e2e = pytest.mark.e2e


def post(stack, channel: str, body, **kwargs) -> requests.Response:
    return requests.post(f"{stack.rasa_url}/webhooks/{channel}/webhook", timeout=60, **kwargs, json=body)


def conversation(stack, channel: str) -> str:
    """A conversation id issued (and signed) by the server, as the widget gets one."""
    response = requests.post(f"{stack.rasa_url}/webhooks/{channel}/conversation", json={}, timeout=30)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    return response.json()["sender"]


def custom(messages: list[dict]) -> list[dict]:
    return [m["custom"] for m in messages if "custom" in m]


def texts(messages: list[dict]) -> list[str]:
    return [m["text"] for m in messages if "text" in m]


class Tags(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


# --- What is served, with which headers ---------------------------------------------------------------------

ASSETS = [
    ("", "text/html"),
    ("widget.js", "application/javascript"),
    ("widget.css", "text/css"),
    ("page.css", "text/css"),
]


@e2e
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(("path", "content_type"), ASSETS)
def test_pages_and_assets_have_the_right_type_and_security_headers(stack, channel, path, content_type):
    response = requests.get(f"{stack.rasa_url}/webhooks/{channel}/{path}", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Permissions-Policy"] == "geolocation=(), camera=(), microphone=()"
    if content_type == "text/html":
        csp = response.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'"
        assert directives["default-src"] == "'none'"
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["Cache-Control"] == "no-store"


@e2e
@pytest.mark.parametrize("channel", CHANNELS)
def test_pages_have_no_inline_script_or_handlers_and_config_in_data_attributes(stack, channel):
    html = requests.get(f"{stack.rasa_url}/webhooks/{channel}/?school=lunsford", timeout=30).text
    tags = tags_of(html)
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    assert scripts == [
        {
            "src": f"/webhooks/{channel}/widget.js",
            "data-school": "lunsford",
            **({"data-variant": "pupil"} if channel == "pupil" else {}),
            "data-mount": "schoolguide",
            "defer": None,
        }
    ]
    for _, attrs in tags:
        assert not [name for name in attrs if name.startswith("on") or name == "style"], attrs


@e2e
def test_the_pupil_page_links_nowhere_but_the_neutral_leave_site(stack):
    html = requests.get(f"{stack.rasa_url}/webhooks/pupil/", timeout=30).text
    links = [attrs for tag, attrs in tags_of(html) if tag == "a"]
    assert links == [{"class": "sg-leave", "id": "sg-leave", "href": DEFAULT_LEAVE_URL, "rel": "noreferrer"}]
    assert "Leave quickly" in html and "0800 1111" in html and "999" in html


@e2e
def test_cross_origin_pages_may_post_to_the_widget_webhook(stack):
    """The widget runs on the school's own site, so the browser asks first (CORS preflight)."""
    response = requests.options(
        f"{stack.rasa_url}/webhooks/website/webhook",
        headers={
            "Origin": "https://www.lunsford.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://www.lunsford.example")


# --- The DSL notice on the pupil page -----------------------------------------------------------------------

NOTICE = (
    f"If you tell me something that means you're not safe, I will tell {WHO_WILL_BE_TOLD} so they can help."
)


def dsl_names() -> set[str]:
    return {p.name for school in get_knowledge().schools.values() for p in school.dsl if p.name}


@e2e
@pytest.mark.parametrize("school", sorted(get_knowledge().schools))
def test_the_pupil_page_says_who_will_be_told_in_the_chats_words(stack, school):
    html = requests.get(f"{stack.rasa_url}/webhooks/pupil/", params={"school": school}, timeout=30).text
    assert NOTICE in html
    assert f'data-school="{school}"' in html
    # A name children do not know tells them nothing: the notice names the role, as the chat does.
    assert not [name for name in dsl_names() if name in html]


def test_the_notice_says_what_the_chats_safe_reply_says():
    from bot.safeguarding.replies import load_replies

    chat = load_replies()["pupil"]
    assert WHO_WILL_BE_TOLD == "a safe adult at school (the Designated Safeguarding Lead)"
    assert "a safe adult at school" in chat and "the Designated Safeguarding Lead" in chat


# --- Which school a page is for ----------------------------------------------------------------------------

UNKNOWN_SLUGS = ["<script>alert(1)</script>", "nowhere", "lunsford-x", "\u202e" * 100, "x" * 5000]
WRONG_LINK = {
    "website": "Please contact the school and ask for the right link",
    "pupil": "Please ask a teacher for the right link.",
}


class FakeRequest:
    def __init__(self, **args: str) -> None:
        self.args = args


def page_of(channel: str, **args: str):
    widget = WebsiteInput() if channel == "website" else PupilInput(leave_url=DEFAULT_LEAVE_URL)
    page = widget.page(FakeRequest(**args))
    return page.status, page.body.decode(), page.headers


def assert_wrong_link_page(channel: str, status: int, html: str, school: str) -> None:
    assert status == 404
    assert "This link is not right" in html and WRONG_LINK[channel] in html
    # Never another school's page: no chat, no school's name, no DSL's name, and the link is not echoed.
    assert "<script" not in html and "data-school" not in html
    names = [s.name for s in get_knowledge().schools.values()] + sorted(dsl_names())
    assert not [name for name in names if name in html]
    assert school not in html and "<script>alert" not in html


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("school", UNKNOWN_SLUGS)
def test_an_unknown_school_gets_a_wrong_link_page(channel, school):
    status, html, headers = page_of(channel, school=school)
    assert_wrong_link_page(channel, status, html, school)
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_link_without_a_school_gets_the_default_school_and_a_known_one_its_own(channel):
    default = get_settings().default_school
    for args, school in [({}, default), ({"school": " "}, default), ({"school": "Scotts"}, "scotts")]:
        status, html, _ = page_of(channel, **args)
        assert status == 200
        assert f'data-school="{school}"' in html
        assert get_knowledge().schools[school].name in html


@e2e
@pytest.mark.parametrize("school", UNKNOWN_SLUGS)
def test_an_unknown_school_in_the_url_gets_a_404_page_with_the_page_headers(stack, school):
    for channel in CHANNELS:
        url = f"{stack.rasa_url}/webhooks/{channel}/"
        response = requests.get(url, params={"school": school}, timeout=30)
        assert response.headers["Content-Type"].split(";")[0] == "text/html"
        assert_wrong_link_page(channel, response.status_code, response.text, school)
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
    links = [
        attrs for tag, attrs in tags_of(response.text) if tag == "a"
    ]  # the pupil page: only "Leave quickly"
    assert links == [{"class": "sg-leave", "id": "sg-leave", "href": DEFAULT_LEAVE_URL, "rel": "noreferrer"}]


@e2e
def test_a_link_without_a_school_gets_the_default_schools_page(stack):
    default = get_settings().default_school
    for channel in CHANNELS:
        response = requests.get(f"{stack.rasa_url}/webhooks/{channel}/", timeout=30)
        assert response.status_code == 200
        assert f'data-school="{default}"' in response.text


# --- What the webhook does with what a client sends ---------------------------------------------------------


@e2e
def test_the_website_forces_the_parent_audience(stack):
    sender = conversation(stack, "website")
    messages = post(
        stack,
        "website",
        {
            "sender": sender,
            "message": "Can teachers follow pupils on Instagram?",
            "metadata": {"school": "scotts", "audience": "staff", "channel": "slack", "tracking": "x" * 50},
        },
    ).json()
    [payload] = custom(messages)
    assert (payload["school"], payload["audience"]) == ("scotts", "parent")
    answer = get_knowledge().answer("scotts", payload["topic"], "parent")
    assert texts(messages)[0] == answer.text
    assert all(m["recipient_id"] == "website-" + sender.split(".")[0] for m in messages)


@e2e
def test_the_pupil_channel_forces_the_pupil_audience(stack):
    messages = post(
        stack,
        "pupil",
        {
            "sender": conversation(stack, "pupil"),
            "message": "can my teacher add me on snap",
            "metadata": {"school": "lunsford", "audience": "staff"},
        },
    ).json()
    [payload] = custom(messages)
    assert (payload["school"], payload["audience"]) == ("lunsford", "pupil")
    assert texts(messages)[0] == get_knowledge().answer("lunsford", payload["topic"], "pupil").text
    assert texts(messages)[1].startswith("This is from our school's rules (")
    assert not any(t.startswith("Source:") for t in texts(messages))


@e2e
def test_a_client_cannot_pick_the_audience_even_with_the_rest_channels_input_channel_field(stack):
    messages = post(
        stack,
        "pupil",
        {
            "sender": conversation(stack, "pupil"),
            "message": "can my teacher add me on snap",
            "input_channel": "rest",
            "metadata": {"audience": "parent", "school": "not-a-school"},
        },
    ).json()
    [payload] = custom(messages)
    assert (payload["school"], payload["audience"]) == (get_settings().default_school, "pupil")


@e2e
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        "not an object",
        None,
        {"message": "hi"},  # the widgets must name a sender, or every visitor would share one conversation
        {"sender": "x"},
        {"sender": "x", "message": 5},
        {"sender": "", "message": "hi"},
        {"sender": ["x"], "message": "hi"},
        {"sender": "x" * 500, "message": "hi"},
        {"sender": "x", "message": "hi", "metadata": "lunsford"},
        {"sender": "x", "message": "x" * 20_000},
    ],
)
def test_bad_bodies_get_a_clear_400(stack, channel, body):
    response = post(stack, channel, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@e2e
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("raw", [b"", b"{not json", b"\xff\xfe\x00", b"<script>alert(1)</script>"])
def test_bodies_that_are_not_json_get_a_400(stack, channel, raw):
    response = requests.post(
        f"{stack.rasa_url}/webhooks/{channel}/webhook",
        data=raw,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    assert "<script>" not in response.text


@e2e
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("message", ["", "   ", "\u202e\u200b\U0001f600" * 50, "<img src=x onerror=1>"])
def test_odd_messages_get_a_reply_not_a_crash(stack, channel, message):
    response = post(stack, channel, {"sender": conversation(stack, channel), "message": message})
    assert response.status_code == 200
    assert isinstance(response.json(), list)


@e2e
@pytest.mark.parametrize("channel", CHANNELS)
def test_a_conversation_id_the_server_did_not_issue_gets_a_400_that_asks_for_a_new_one(stack, channel):
    other = "pupil" if channel == "website" else "website"
    for sender in ["http-made-up", "0" * 32 + "." + "0" * 32, conversation(stack, other)]:
        response = post(stack, channel, {"sender": sender, "message": "can teachers follow pupils?"})
        assert response.status_code == 400, sender
        assert response.json()["code"] == "new_conversation"


# --- Pieces that need no server -----------------------------------------------------------------------------


def test_templates_escape_every_value():
    html = render_template(
        "pupil.html",
        prefix="/webhooks/pupil",
        school='"><script>alert(1)</script>',
        school_name="<b>School</b>",
        dsl="<img src=x onerror=alert(1)>",
        leave_url='javascript:alert(1)"',
    )
    assert "<script>alert" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, DEFAULT_LEAVE_URL),
        ("javascript:alert(1)", DEFAULT_LEAVE_URL),
        ("/relative", DEFAULT_LEAVE_URL),
        ("https://user@evil.example/", DEFAULT_LEAVE_URL),
        ("data:text/html,hi", DEFAULT_LEAVE_URL),
        ("https://www.google.co.uk/", "https://www.google.co.uk/"),
    ],
)
def test_the_leave_url_is_always_a_plain_web_address(url, expected):
    assert safe_leave_url(url) == expected


def test_both_widgets_are_enabled_with_no_secrets(fresh_settings):
    channels = credentials(fresh_settings)
    assert channels["bot.channels.website.WebsiteInput"] is None
    assert channels["bot.channels.pupil.PupilInput"] == {"leave_url": "https://www.bbc.co.uk/weather"}


def _code_only(js: str) -> str:
    """widget.js without its comments (they explain what the code must never use)."""
    without_blocks = re.sub(r"/\*.*?\*/", "", js, flags=re.S)
    return re.sub(r"^\s*//.*$|\s//\s.*$", "", without_blocks, flags=re.M)


def test_the_widget_never_parses_text_as_html_and_calls_no_one_else():
    code = _code_only((STATIC_DIR / "widget.js").read_text(encoding="utf-8"))
    sinks = ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(",
             'setAttribute("on', "localStorage", "document.cookie", "navigator.geolocation"]  # fmt: skip
    for sink in sinks:
        assert sink not in code, sink
    assert not re.search(r"https?://", code), "the widget may only talk to its own server"
    assert "textContent" in code


# --- Replies sent with a refusal (a disclosure in a request refused for its metadata) -----------------------
# In Chromium, with every request answered by the test (no stack needed): the widget shows the "messages" of
# an error body as text, and its own "failed" line when there are none.

HOSTILE_REPLY = "<img src=x onerror=alert(1)> Thank you for telling me."
PARENT_FAILED = "Sorry, the message could not be sent. Please try again in a moment."


@e2e
@pytest.mark.parametrize(
    ("status", "body", "shown"),
    [
        (
            400,
            {"error": "nested too deeply", "messages": [{"recipient_id": "x", "text": HOSTILE_REPLY},
                                                        {"recipient_id": "x", "text": "Reference SG-1"}]},
            [HOSTILE_REPLY, "Reference SG-1"],
        ),
        (413, {"error": "too large", "messages": [{"recipient_id": "x", "text": "Safe."}]}, ["Safe."]),
        (413, {"error": "the body is too large"}, [PARENT_FAILED]),
        (400, {"error": "nested too deeply", "messages": []}, [PARENT_FAILED]),
        (400, {"error": "x", "messages": "<b>not a list</b>"}, [PARENT_FAILED]),
        (400, "<b>not JSON</b>", [PARENT_FAILED]),
        (500, "", [PARENT_FAILED]),
    ],
)  # fmt: skip
def test_the_widget_shows_replies_sent_with_a_refusal_as_text(page, status, body, shown):
    from urllib.parse import urlsplit

    from playwright.sync_api import expect

    origin, prefix = "http://127.0.0.1:9", "/webhooks/website"  # nothing listens: the test answers
    html = render_template("website.html", prefix=prefix, school="lunsford", school_name="Lunsford")
    types = {".js": "application/javascript", ".css": "text/css"}
    posted: list[dict] = []

    def answer(route):
        path = urlsplit(route.request.url).path
        if path == f"{prefix}/":
            route.fulfill(status=200, content_type="text/html", body=html)
        elif path.endswith((".js", ".css")):
            asset = STATIC_DIR / path.rsplit("/", 1)[1]
            route.fulfill(status=200, content_type=types[asset.suffix], body=asset.read_bytes())
        elif path.endswith("/conversation"):
            route.fulfill(status=200, json={"sender": "a" * 32 + "." + "b" * 32})
        else:
            posted.append(route.request.post_data_json)
            raw = body if isinstance(body, str) else json.dumps(body)
            route.fulfill(status=status, content_type="application/json", body=raw)

    page.route(f"{origin}/**", answer)
    page.goto(f"{origin}{prefix}/")
    page.wait_for_selector(".sg-widget .sg-input")
    page.locator(".sg-input").fill("my step dad hits me")
    page.locator(".sg-input").press("Enter")
    bubbles = page.locator(".sg-msg--bot .sg-msg__text")
    expect(bubbles).to_have_count(1 + len(shown))  # the intro, then the replies
    assert bubbles.all_text_contents()[1:] == shown
    assert page.locator(".sg-widget img, .sg-widget script, .sg-widget b").count() == 0
    assert len(posted) == 1  # shown once, not sent again


# --- Colour contrast, computed from the CSS values ----------------------------------------------------------

TEXT_PAIRS = [
    ("--sg-text", "--sg-bg"),
    ("--sg-text", "--sg-bot-bg"),
    ("--sg-text", "--sg-user-bg"),
    ("--sg-muted", "--sg-bg"),
    ("--sg-muted", "--sg-bot-bg"),
    ("--sg-on-accent", "--sg-accent"),
    ("--sg-accent", "--sg-bg"),  # choice buttons: accent text on white
    ("--sg-link", "--sg-bg"),
    ("--sg-link", "--sg-bot-bg"),
    ("--sg-on-safe", "--sg-safe"),
    ("--sg-on-danger", "--sg-danger"),
]
NON_TEXT_PAIRS = [  # WCAG 1.4.11: focus outline and input border need 3:1
    ("--sg-focus", "--sg-bg"),
    ("--sg-focus", "--sg-bot-bg"),
    ("--sg-border", "--sg-bg"),
]


def css_colours() -> dict[str, str]:
    css = Path(STATIC_DIR / "widget.css").read_text(encoding="utf-8")
    return dict(re.findall(r"(--sg-[a-z-]+):\s*(#[0-9a-fA-F]{3,6})\s*;", css))


@pytest.mark.parametrize(("foreground", "background"), TEXT_PAIRS)
def test_text_colours_meet_wcag_aa(contrast, foreground, background):
    colours = css_colours()
    assert contrast(colours[foreground], colours[background]) >= 4.5


@pytest.mark.parametrize(("foreground", "background"), NON_TEXT_PAIRS)
def test_focus_and_borders_meet_3_to_1(contrast, foreground, background):
    colours = css_colours()
    assert contrast(colours[foreground], colours[background]) >= 3


def test_every_colour_variable_is_checked():
    checked = {name for pair in TEXT_PAIRS + NON_TEXT_PAIRS for name in pair}
    assert set(css_colours()) == checked
