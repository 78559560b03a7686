"""The DSL's desk in a real browser (Debian's Chromium via Playwright), from an admin adding a DSL to the DSL
closing the case that an alert pointed them to (#16's "done when").

The desk runs on uvicorn on a free loopback port in a thread, against a SQLite database under tmp_path.
Everything a person does goes through the pages (typing, clicking); what a phone would do (a TOTP code) is
computed here with pyotp, and the disclosure is recorded through the real service, as the bot records it.
axe-core (bundled in axe-playwright-python) checks the sign-in, queue and case pages; the queue and case
screenshots go to docs/images/ for the README.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest

from bot.desk import accounts
from bot.settings import Settings
from tests.desk.desk_helpers import PASSWORD, Phone, desk_settings, free_port, running_desk

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("browser")]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = PROJECT_ROOT / "reports" / "screenshots"
DOC_IMAGES = PROJECT_ROOT / "docs" / "images"
DESKTOP = {"width": 1280, "height": 900}
ADMIN_PASSWORD = "copper lantern meadow 17"
# The browser takes a moment to submit a code: the phone never gives one this close to the next time step.
CODE_MARGIN = 6


@pytest.fixture
def desk(tmp_path) -> Iterator[Settings]:
    """The desk serving a fresh database; yields its settings (desk_url is where it listens)."""
    from bot.safeguarding.store import dispose_engines

    settings = desk_settings(tmp_path, free_port())
    with running_desk(settings):
        yield settings
    dispose_engines()


class Watch:
    """What a page did that it must not: script errors, CSP refusals, requests off this machine."""

    def __init__(self) -> None:
        self.problems: list[str] = []


def new_page(browser, watch: Watch, viewport=DESKTOP):
    context = browser.new_context(viewport=viewport, device_scale_factor=1)

    def only_local(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            watch.problems.append(f"request off the machine: {route.request.url}")
            route.abort()

    context.route(re.compile(r"^https?://"), only_local)
    page = context.new_page()
    page.on("pageerror", lambda error: watch.problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda m: (
            watch.problems.append(m.text) if "Refused to" in m.text or "Security Policy" in m.text else None
        ),
    )
    return page


def expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def sign_in(page, email: str, password: str, code: str) -> None:
    """On the sign-in page: both factors, as a person types them."""
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("6-digit code from your authenticator app").fill(code)
    page.get_by_role("button", name="Sign in").click()


def no_axe_violations(page, what: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    assert results.violations_count == 0, f"axe on the {what} page:\n{results.generate_report()}"


def fits(page, width: int) -> None:
    """Nothing on the page is wider than the phone's screen (the queue's table scrolls in its own box)."""
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= width, f"{page.url} is {overflow}px wide on a {width}px screen"


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    try:  # a 128-colour copy is a third of the size and looks the same (Pillow comes with matplotlib)
        from PIL import Image

        Image.open(path).convert("RGB").quantize(colors=128).save(DOC_IMAGES / path.name, optimize=True)
    except ImportError:
        shutil.copyfile(path, DOC_IMAGES / path.name)


def enrolled(settings: Settings, email: str, role: str, school: str | None, password: str) -> Phone:
    """An account set up without the browser (the desk's CLI does the same): returns its phone."""
    _, token = accounts.add_user(settings, email, role=role, school=school, actor="e2e-setup")
    phone = Phone(pyotp.random_base32(), margin=CODE_MARGIN)
    accounts.complete_enrolment(
        settings, token, password=password, totp_secret=phone.totp.secret, code=phone.code()
    )
    return phone


def record(settings: Settings, n: int, **fields) -> str:
    from bot.safeguarding.service import record_disclosure

    result = record_disclosure(
        settings, channel="pupil", sender_id=f"conv-{n}", message_id=f"msg-{n}", source="action", **fields
    )
    assert result.stored == "database", result
    return result.reference


def test_from_an_admin_adding_a_dsl_to_the_dsl_closing_the_case(browser, desk):
    settings, base = desk, desk.desk_url
    watch = Watch()
    admin_phone = enrolled(settings, "admin@trust.example", "admin", None, ADMIN_PASSWORD)
    deputy_email = "deputy@lunsford.example"
    enrolled(settings, deputy_email, "deputy", "lunsford", PASSWORD)
    scotts_phone = enrolled(settings, "dsl@scotts.example", "dsl", "scotts", PASSWORD)

    # --- the admin adds the DSL through the users page --------------------------------------------------
    admin = new_page(browser, watch)
    admin.goto(f"{base}/admin/users")
    expect()(admin).to_have_url(re.compile(r"/sign-in\?next=/admin/users$"))
    sign_in(admin, "admin@trust.example", ADMIN_PASSWORD, admin_phone.code())
    expect()(admin).to_have_url(f"{base}/admin/users")
    admin.get_by_label("Email address").fill("dsl@lunsford.example")
    admin.get_by_label("Role").select_option("dsl")
    admin.get_by_label("School").fill("lunsford")
    admin.get_by_role("button", name="Add user").click()
    link = admin.locator("#enrolment-link").inner_text().strip()
    assert link.startswith(f"{base}/enrol/"), link
    admin.get_by_role("button", name="Sign out").click()
    expect()(admin).to_have_url(f"{base}/sign-in")
    admin.context.close()

    # --- the DSL enrols: password twice, the key into the phone, a code back -----------------------------
    dsl = new_page(browser, watch)
    dsl.goto(link)
    expect()(dsl.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    dsl_phone = Phone(dsl.locator("#secret").inner_text().replace(" ", "").strip(), margin=CODE_MARGIN)
    dsl.get_by_label("Password", exact=True).fill(PASSWORD)
    dsl.get_by_label("Password again").fill(PASSWORD)
    dsl.get_by_label("6-digit code the app now shows").fill(dsl_phone.code())
    dsl.get_by_role("button", name="Finish setting up").click()
    expect()(dsl.get_by_role("heading", name="Your account is ready")).to_be_visible()
    assert dsl.locator(".codes li").count() == accounts.RECOVERY_CODES

    # --- a pupil's disclosure arrives (and a few older cases, for a realistic queue) --------------------
    older = [  # (audience, category, risk, text)
        ("parent", "bullying", "medium", "My son is being called names in the group chat every night"),
        (
            "staff",
            "image_sharing_sextortion",
            "high",
            "A year 8 boy says someone he met in a game wants photos",
        ),
    ]
    for n, (audience, category, risk, text) in enumerate(older, start=1):
        record(settings, n, school="lunsford", audience=audience, text=text, categories=[category], risk=risk)
    reference = record(
        settings, 3, school="lunsford", audience="pupil",
        text="my coach keeps messaging me on snapchat and says not to tell my mum",
        context=[{"who": "user", "text": "can i ask something private"},
                 {"who": "bot", "text": "Of course. You can tell me what is on your mind."}],
        categories=["sexual_abuse_grooming", "adult_boundary_breach"], risk="immediate",
    )  # fmt: skip

    # --- the alert's link: signed out, so through sign-in, landing on the case -----------------------------
    alert_link = settings.case_link_base + reference
    dsl.goto(alert_link)
    expect()(dsl).to_have_url(f"{base}/sign-in?next=/cases/{reference}")
    no_axe_violations(dsl, "sign-in")
    sign_in(dsl, "dsl@lunsford.example", PASSWORD, dsl_phone.code())
    expect()(dsl).to_have_url(alert_link)
    expect()(dsl.locator(".words")).to_have_text(
        "my coach keeps messaging me on snapchat and says not to tell my mum"
    )
    expect()(dsl.locator(".conversation")).to_contain_text("can i ask something private")
    no_axe_violations(dsl, "case")

    # --- acknowledge, assign, note ----------------------------------------------------------------------
    dsl.get_by_role("button", name="Acknowledge").click()
    expect()(dsl.get_by_role("status")).to_contain_text("Acknowledged")
    dsl.get_by_label("Colleague").select_option(deputy_email)
    dsl.get_by_role("button", name="Assign").click()
    expect()(dsl.get_by_role("status")).to_contain_text("Assigned")
    expect()(dsl.locator(".facts")).to_contain_text(deputy_email)
    note = "Spoke to the pupil at break; mum called; coach suspended pending the LADO's advice."
    dsl.get_by_label("What was done or decided").fill(note)
    dsl.get_by_role("button", name="Add note").click()
    expect()(dsl.locator(".notes").last).to_contain_text(note)
    expect()(dsl.locator(".chronology")).to_contain_text("dsl@lunsford.example")
    screenshot(dsl, "desk-case")

    dsl.goto(f"{base}/cases")
    expect()(dsl.get_by_role("link", name=reference)).to_be_visible()
    no_axe_violations(dsl, "queue")
    screenshot(dsl, "desk-queue")

    # --- a form without its CSRF token is refused ---------------------------------------------------------
    dsl.goto(alert_link)
    form = dsl.locator(f'form[action="/cases/{reference}/notes"]')
    form.locator('input[name="csrf_token"]').evaluate("input => input.remove()")
    form.get_by_label("What was done or decided").fill("This must not be stored.")
    with dsl.expect_response(lambda r: r.request.method == "POST") as posted:
        form.get_by_role("button", name="Add note").click()
    assert posted.value.status == 403
    expect()(dsl.get_by_role("heading", name="Form refused")).to_be_visible()
    dsl.goto(alert_link)
    expect()(dsl.locator("main")).not_to_contain_text("This must not be stored.")

    # --- close with an outcome ----------------------------------------------------------------------------
    dsl.get_by_label("Outcome").fill("Referred to the LADO and children's social care; parents informed.")
    dsl.get_by_role("button", name="Close case").click()
    expect()(dsl.get_by_role("status")).to_contain_text("Case closed")
    expect()(dsl.locator(".facts")).to_contain_text("Closed")
    expect()(dsl.locator(".chronology")).to_contain_text("Referred to the LADO")

    # --- on a phone, the case and the queue still fit -------------------------------------------------------
    dsl.set_viewport_size({"width": 360, "height": 740})
    fits(dsl, 360)
    dsl.goto(f"{base}/cases")
    fits(dsl, 360)
    dsl.context.close()

    # --- another school's DSL: the case is not there at all -------------------------------------------------
    scotts = new_page(browser, watch)
    scotts.goto(f"{base}/sign-in")
    used = scotts_phone.code()
    sign_in(scotts, "dsl@scotts.example", PASSWORD, used)
    expect()(scotts).to_have_url(f"{base}/cases")
    response = scotts.goto(alert_link)
    assert response.status == 404
    expect()(scotts.locator("main")).not_to_contain_text("snapchat")

    # --- the same TOTP code a second time, from another browser: refused ------------------------------------
    thief = new_page(browser, watch)
    thief.goto(f"{base}/sign-in")
    sign_in(thief, "dsl@scotts.example", PASSWORD, used)
    expect()(thief.get_by_role("alert")).to_contain_text("That code did not work")
    expect()(thief).to_have_url(re.compile(r"/sign-in/code"))
    assert thief.goto(f"{base}/cases").url.startswith(f"{base}/sign-in")
    thief.context.close()
    scotts.context.close()

    assert not watch.problems, watch.problems
