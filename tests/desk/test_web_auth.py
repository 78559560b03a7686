"""Signing in to the DSL's desk over real HTTP: enrolment, both factors, no reused code, lockout, idle expiry,
sign-out, and the cookies' flags.

The desk (``create_app``) runs on uvicorn on a free loopback port in a thread, against a SQLite database
under tmp_path; a ``requests.Session`` is the browser. (Starlette's TestClient needs httpx, which this
project does not depend on; a real server also checks what uvicorn does with cookies and headers.) TOTP codes
are computed here with pyotp, as a phone would.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests

from bot.desk import accounts
from bot.desk.web import HALF_COOKIE, PRE_COOKIE, SESSION_COOKIE, Desk
from bot.settings import Settings
from tests.desk.desk_helpers import PASSWORD, Phone, desk_settings, free_port, running_desk


@pytest.fixture
def desk(tmp_path) -> Iterator[tuple[Settings, str]]:
    from bot.safeguarding.store import dispose_engines

    settings = desk_settings(tmp_path, free_port(), desk_idle_minutes=30)
    with running_desk(settings):
        yield settings, settings.desk_url
    dispose_engines()


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return html.unescape(match.group(1))


def enrol_in_browser(url: str, browser: requests.Session, token: str) -> tuple[Phone, list[str]]:
    """The enrolment page as a person uses it: read the key, add it to the phone, type a code."""
    page = browser.get(f"{url}/enrol/{token}")
    assert page.status_code == 200, page.text
    assert "<svg" in page.text  # the QR code, inline
    secret = re.search(r'<p class="secret" id="secret"><code>([A-Z2-7 ]+)</code>', page.text).group(1)
    signed = re.search(r'name="enrol_secret" value="([^"]+)"', page.text).group(1)
    phone = Phone(secret.replace(" ", ""))
    done = browser.post(
        f"{url}/enrol/{token}",
        data={
            "csrf_token": csrf_of(page.text),
            "enrol_secret": html.unescape(signed),
            "password": PASSWORD,
            "password_again": PASSWORD,
            "code": phone.code(),
        },
    )
    assert done.status_code == 200, done.text
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", done.text)
    assert len(codes) == accounts.RECOVERY_CODES
    return phone, codes


def sign_in(url: str, browser: requests.Session, email: str, password: str, next_path: str = "/cases"):
    """Email and password; returns the response to the first factor (303 to the code page if right)."""
    page = browser.get(f"{url}/sign-in", params={"next": next_path})
    return browser.post(
        f"{url}/sign-in",
        data={"csrf_token": csrf_of(page.text), "email": email, "password": password, "next": next_path},
        allow_redirects=False,
    )


def second_factor(url: str, browser: requests.Session, code: str, next_path: str = "/cases"):
    page = browser.get(f"{url}/sign-in/code", params={"next": next_path}, allow_redirects=False)
    assert page.status_code == 200, (page.status_code, page.headers.get("location"))
    return browser.post(
        f"{url}/sign-in/code",
        data={"csrf_token": csrf_of(page.text), "code": code, "next": next_path},
        allow_redirects=False,
    )


def new_dsl(settings: Settings, url: str, email: str = "dsl@lunsford.example"):
    user, token = accounts.add_user(settings, email, role="dsl", school="lunsford", actor="test-admin")
    browser = requests.Session()
    phone, codes = enrol_in_browser(url, browser, token)
    return user, phone, codes, browser


def set_cookie_headers(response: requests.Response) -> dict[str, str]:
    raw = response.raw.headers.getlist("Set-Cookie")
    return {header.split("=", 1)[0]: header for header in raw}


def test_enrol_then_sign_in_with_both_factors_and_sign_out(desk):
    settings, url = desk
    user, phone, _, browser = new_dsl(settings, url)

    # Signed out, a case link goes to sign-in and remembers where it was going.
    start = browser.get(f"{url}/cases", allow_redirects=False)
    assert start.status_code == 303 and start.headers["location"] == "/sign-in?next=/cases"

    first = sign_in(url, browser, user.email, PASSWORD)
    assert first.status_code == 303 and first.headers["location"] == "/sign-in/code?next=/cases"
    half = set_cookie_headers(first)[HALF_COOKIE]
    assert "HttpOnly" in half and "SameSite=strict" in half and "Max-Age=300" in half
    # The password alone opens nothing.
    assert browser.get(f"{url}/cases", allow_redirects=False).status_code == 303

    second = second_factor(url, browser, phone.code())
    assert second.status_code == 303 and second.headers["location"] == "/cases"
    cookie = set_cookie_headers(second)[SESSION_COOKIE]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; see test_cookies_are_secure_over_tls
    session_id = browser.cookies[SESSION_COOKIE]

    queue = browser.get(f"{url}/cases", allow_redirects=False)
    assert queue.status_code == 200 and "<h1>Cases</h1>" in queue.text
    assert user.email in queue.text

    out = browser.post(f"{url}/sign-out", data={"csrf_token": csrf_of(queue.text)}, allow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/sign-in"
    assert browser.get(f"{url}/cases", allow_redirects=False).status_code == 303
    # The old session id is dead on the server, not just forgotten by this browser.
    thief = requests.Session()
    thief.cookies.set(SESSION_COOKIE, session_id)
    assert thief.get(f"{url}/cases", allow_redirects=False).status_code == 303


def test_a_totp_code_works_once(desk):
    settings, url = desk
    user, phone, _, browser = new_dsl(settings, url)
    assert sign_in(url, browser, user.email, PASSWORD).status_code == 303
    code = phone.code()
    assert second_factor(url, browser, code).status_code == 303

    # Someone who watched the code being typed tries it in another browser, within the same 30 seconds.
    other = requests.Session()
    assert sign_in(url, other, user.email, PASSWORD).status_code == 303
    reused = second_factor(url, other, code)
    assert reused.status_code == 400 and "That code did not work" in reused.text
    assert SESSION_COOKIE not in other.cookies
    assert other.get(f"{url}/cases", allow_redirects=False).status_code == 303


def test_a_recovery_code_signs_in_once(desk):
    settings, url = desk
    user, _, codes, browser = new_dsl(settings, url)
    assert sign_in(url, browser, user.email, PASSWORD).status_code == 303
    assert second_factor(url, browser, codes[0].upper()).status_code == 303

    other = requests.Session()
    assert sign_in(url, other, user.email, PASSWORD).status_code == 303
    assert second_factor(url, other, codes[0]).status_code == 400


def test_wrong_password_then_lockout(desk):
    settings, url = desk
    user, _, _, browser = new_dsl(settings, url)
    wrong = sign_in(url, browser, user.email, "not the password at all")
    assert wrong.status_code == 400 and "did not match" in wrong.text
    assert HALF_COOKIE not in browser.cookies
    for _ in range(accounts.MAX_FAILURES - 2):
        assert sign_in(url, browser, user.email, "still not the password").status_code == 400
    locked = sign_in(url, browser, user.email, "and again not it")
    assert locked.status_code == 429 and "try again in" in locked.text
    assert int(locked.headers["Retry-After"]) > 60
    # Locked means locked: the right password does not get through either.
    assert sign_in(url, browser, user.email, PASSWORD).status_code == 429


def test_an_unknown_address_looks_like_a_wrong_password(desk):
    settings, url = desk
    new_dsl(settings, url)
    unknown = sign_in(url, requests.Session(), "nobody@lunsford.example", PASSWORD)
    assert unknown.status_code == 400 and "did not match" in unknown.text


def test_a_session_expires_when_idle(desk, monkeypatch):
    settings, url = desk
    user, phone, _, browser = new_dsl(settings, url)
    sign_in(url, browser, user.email, PASSWORD)
    assert second_factor(url, browser, phone.code()).status_code == 303
    real_now = accounts.utcnow

    monkeypatch.setattr(
        accounts, "utcnow", lambda: real_now() + timedelta(minutes=settings.desk_idle_minutes - 1)
    )
    assert browser.get(f"{url}/cases", allow_redirects=False).status_code == 200  # still in use: kept alive
    later = settings.desk_idle_minutes * 2 - 2
    monkeypatch.setattr(accounts, "utcnow", lambda: real_now() + timedelta(minutes=later))
    assert browser.get(f"{url}/cases", allow_redirects=False).status_code == 200  # idle < limit since
    monkeypatch.setattr(
        accounts, "utcnow", lambda: real_now() + timedelta(minutes=later + settings.desk_idle_minutes + 1)
    )
    gone = browser.get(f"{url}/cases/SG-ANY", allow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"] == "/sign-in?next=/cases/SG-ANY"
    monkeypatch.setattr(accounts, "utcnow", real_now)
    assert browser.get(f"{url}/cases", allow_redirects=False).status_code == 303  # ended, not just idle


def test_the_code_page_needs_this_browsers_password_step(desk):
    settings, url = desk
    user, phone, _, browser = new_dsl(settings, url)
    assert browser.get(f"{url}/sign-in/code", allow_redirects=False).status_code == 303
    assert sign_in(url, browser, user.email, PASSWORD).status_code == 303
    # The half-signed-in cookie is bound to this browser's pre-session cookie: copied elsewhere it is void.
    other = requests.Session()
    other.get(f"{url}/sign-in")
    other.cookies.set(HALF_COOKIE, browser.cookies[HALF_COOKIE])
    moved = other.get(f"{url}/sign-in/code", allow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"].startswith("/sign-in")
    # And a forged one is void too.
    half = browser.cookies[HALF_COOKIE]
    browser.cookies.set(HALF_COOKIE, None)
    browser.cookies.set(HALF_COOKIE, half[:-3] + ("abc" if not half.endswith("abc") else "xyz"))
    assert browser.get(f"{url}/sign-in/code", allow_redirects=False).status_code == 303


def test_sign_in_forms_refuse_a_missing_or_foreign_token(desk):
    settings, url = desk
    user, _, _, browser = new_dsl(settings, url)
    page = browser.get(f"{url}/sign-in")
    data = {"email": user.email, "password": PASSWORD}
    assert browser.post(f"{url}/sign-in", data=data, allow_redirects=False).status_code == 403
    # A token from another browser's page (an attacker's own) does not match this browser's cookie.
    attacker = requests.Session()
    attackers_page = attacker.get(f"{url}/sign-in")
    foreign = csrf_of(attackers_page.text)
    refused = browser.post(f"{url}/sign-in", data={**data, "csrf_token": foreign}, allow_redirects=False)
    assert refused.status_code == 403 and "Form refused" in refused.text
    ok = browser.post(
        f"{url}/sign-in", data={**data, "csrf_token": csrf_of(page.text)}, allow_redirects=False
    )
    assert ok.status_code == 303
    pre = set_cookie_headers(attackers_page)[PRE_COOKIE]
    assert "HttpOnly" in pre and "SameSite=strict" in pre


def test_next_never_leaves_the_site(desk):
    settings, url = desk
    user, phone, _, browser = new_dsl(settings, url)
    first = sign_in(url, browser, user.email, PASSWORD, next_path="//evil.example/cases")
    assert first.headers["location"] == "/sign-in/code"
    done = second_factor(url, browser, phone.code(), next_path="https://evil.example/")
    assert done.status_code == 303 and done.headers["location"] == "/cases"


def test_enrolment_refuses_mismatched_passwords_and_a_wrong_code_then_works_once(desk):
    settings, url = desk
    user, token = accounts.add_user(settings, "deputy@lunsford.example", role="deputy", school="lunsford",
                                    actor="test-admin")  # fmt: skip
    browser = requests.Session()
    page = browser.get(f"{url}/enrol/{token}")
    signed = html.unescape(re.search(r'name="enrol_secret" value="([^"]+)"', page.text).group(1))
    form = {"csrf_token": csrf_of(page.text), "enrol_secret": signed, "password": PASSWORD, "code": "000000"}
    mismatch = browser.post(f"{url}/enrol/{token}", data={**form, "password_again": PASSWORD + "x"})
    assert mismatch.status_code == 400 and "not the same" in mismatch.text
    wrong = browser.post(f"{url}/enrol/{token}", data={**form, "password_again": PASSWORD})
    assert wrong.status_code == 400 and "does not match" in wrong.text
    # The secret cannot be swapped for one the sender chose: the signed field is checked.
    forged = browser.post(
        f"{url}/enrol/{token}", data={**form, "password_again": PASSWORD, "enrol_secret": "x"}
    )
    assert forged.status_code == 400 and "open too long" in forged.text

    enrol_in_browser(url, browser, token)
    assert browser.get(f"{url}/enrol/{token}").status_code == 404  # used
    assert accounts.user_for_enrolment(settings, token) is None


def test_cookies_are_secure_over_tls(tmp_path):
    from starlette.requests import Request
    from starlette.responses import Response

    desk = Desk(desk_settings(tmp_path, 5080))

    def request(scheme: str, headers: list[tuple[bytes, bytes]] = ()) -> Request:
        return Request(
            {
                "type": "http",
                "scheme": scheme,
                "method": "GET",
                "path": "/",
                "headers": list(headers),
                "server": ("desk.example", 443),
                "query_string": b"",
            }
        )

    for scheme, secure in (("https", True), ("http", False)):
        response = Response()
        desk.set_cookie(request(scheme), response, SESSION_COOKIE, "x")
        assert ("secure" in response.headers["set-cookie"].lower()) is secure
    # Without a trusted proxy, X-Forwarded-Proto is anyone's word and is ignored.
    assert not desk.https(request("http", [(b"x-forwarded-proto", b"https")]))
    # Behind a TLS-terminating proxy the desk sees http, but its public address says https: Secure.
    behind_proxy = Desk(dataclasses.replace(desk.settings, desk_url="https://desk.trust.example"))
    response = Response()
    behind_proxy.set_cookie(request("http"), response, SESSION_COOKIE, "x")
    assert "secure" in response.headers["set-cookie"].lower()
