"""Every route of the DSL's desk, over real HTTP: nothing opens without a session, every form needs its CSRF
token, another school's case is a 404 (never a 403), an admin reads no case, and every response carries the
security headers. Odd bodies get a 400 or 413 page, never a 500 or an echo of the raw input.

The desk runs on uvicorn in a thread against a SQLite database under tmp_path (as in test_web_auth.py);
disclosures are recorded through the real service (``record_disclosure``), users through the real accounts
module.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from types import SimpleNamespace
from urllib.parse import quote

import pyotp
import pytest
import requests
from starlette.routing import Mount, Route

from bot.desk import accounts
from bot.desk.web import OPEN_ROUTES, SECURITY_HEADERS, SESSION_COOKIE, safe_next
from bot.settings import Settings
from tests.desk.desk_helpers import PASSWORD, desk_settings, free_port, running_desk

FILLERS = {"ref": "SG-NOSUCH-CASE", "token": "no-such-token"}


def enrolled(settings: Settings, email: str, role: str, school: str | None) -> accounts.DeskUser:
    user, token = accounts.add_user(settings, email, role=role, school=school, actor="test-admin")
    secret = pyotp.random_base32()
    accounts.complete_enrolment(
        settings, token, password=PASSWORD, totp_secret=secret, code=pyotp.TOTP(secret).now()
    )
    return user


@pytest.fixture(scope="module")
def desk(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """One desk for the module: a Lunsford case, a Lunsford DSL, a Scotts DSL and an admin."""
    from bot.safeguarding.service import record_disclosure
    from bot.safeguarding.store import dispose_engines

    settings = desk_settings(tmp_path_factory.mktemp("desk"), free_port())
    with running_desk(settings) as app:
        running = SimpleNamespace(app=app, url=settings.desk_url, settings=settings)
        running.lunsford = enrolled(settings, "dsl@lunsford.example", "dsl", "lunsford")
        running.deputy = enrolled(settings, "deputy@lunsford.example", "deputy", "lunsford")
        running.scotts = enrolled(settings, "dsl@scotts.example", "dsl", "scotts")
        running.admin = enrolled(settings, "admin@trust.example", "admin", None)
        running.trust_lead = enrolled(settings, "safeguarding@trust.example", "trust-lead", None)
        running.reference = record_disclosure(
            settings, school="lunsford", audience="pupil", channel="pupil", sender_id="conv-routes",
            message_id="msg-routes", text="my teacher says our chats are a secret",
            context=[{"who": "user", "text": "hi"}, {"who": "bot", "text": "Hello! How can I help?"}],
            categories=["sexual_abuse_grooming"], risk="immediate",
        ).reference  # fmt: skip
        yield running
    dispose_engines()


def browser_for(desk, user) -> tuple[requests.Session, str]:
    """A browser already signed in as ``user`` (both factors were checked in test_web_auth.py)."""
    session_id, csrf = accounts.start_session(desk.settings, user.id)
    browser = requests.Session()
    browser.cookies.set(SESSION_COOKIE, session_id)
    return browser, csrf


def routes(app) -> list[tuple[str, str]]:
    """(method, path template) for every route the app serves; HEAD goes with GET."""
    found = []
    for route in app.routes:
        if isinstance(route, Mount):
            found.append(("GET", route.path))
        else:
            assert isinstance(route, Route), route
            found.extend((method, route.path) for method in sorted(route.methods - {"HEAD"}))
    return found


def filled(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: FILLERS[m.group(1)], path)


def assert_headers(response: requests.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.url, name, response.headers.get(name))


def test_every_route_needs_a_session_except_the_open_ones(desk):
    served = routes(desk.app)
    assert set(OPEN_ROUTES) <= set(served), "an open route that no longer exists"
    closed = [(method, path) for method, path in served if (method, path) not in OPEN_ROUTES]
    assert len(closed) >= 11  # the queue, a case, five case actions, users (2), disable, remove, sign-out
    anonymous = requests.Session()
    for method, template in closed:
        path = filled(template)
        response = anonymous.request(method, desk.url + path, data={"csrf_token": "x"}, allow_redirects=False)
        if method == "GET":
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"] == f"/sign-in?next={quote(path, safe='/')}", path
        else:
            assert response.status_code == 401, (method, path, response.status_code)
            assert "signed out" in response.text.lower()
        assert_headers(response)


def test_the_open_routes_are_what_they_say(desk):
    anonymous = requests.Session()
    for method, template in sorted(OPEN_ROUTES):
        if template == "/static":
            response = anonymous.get(f"{desk.url}/static/desk.css")
            assert response.status_code == 200 and "text/css" in response.headers["content-type"]
        elif method == "GET":
            response = anonymous.get(desk.url + filled(template), allow_redirects=False)
            # A page (200), the unknown enrolment link (404), or the code page sending back to sign-in.
            assert response.status_code in (200, 303, 404), (template, response.status_code)
            if response.status_code == 303:
                assert response.headers["location"].startswith("/sign-in"), template
        else:  # POST without the form's token: refused before anything is looked at
            response = anonymous.post(desk.url + filled(template), data={"x": "1"}, allow_redirects=False)
            assert response.status_code == 403, (template, response.status_code)
        assert_headers(response)
    health = anonymous.get(f"{desk.url}/healthz")
    assert health.status_code == 200 and health.text == "ok"


def test_every_form_post_needs_the_sessions_csrf_token(desk):
    browser, csrf = browser_for(desk, desk.lunsford)
    for method, template in routes(desk.app):
        if method != "POST" or (method, template) in OPEN_ROUTES:
            continue
        path = desk.url + filled(template).replace(FILLERS["ref"], desk.reference)
        missing = browser.post(path, data={"text": "x"}, allow_redirects=False)
        wrong = browser.post(path, data={"text": "x", "csrf_token": csrf[:-2] + "xx"}, allow_redirects=False)
        odd = browser.post(path, data={"text": "x", "csrf_token": "é" + csrf}, allow_redirects=False)
        for response in (missing, wrong, odd):
            assert response.status_code == 403, (template, response.status_code)
            assert "Form refused" in response.text
            assert_headers(response)
    # Nothing happened: the case is still new, and the session still works.
    page = browser.get(f"{desk.url}/cases/{desk.reference}")
    assert page.status_code == 200 and "x</p>" not in page.text
    assert re.search(r"<dt>Status</dt><dd>New", page.text)


def test_another_schools_case_is_not_found(desk):
    browser, csrf = browser_for(desk, desk.scotts)
    theirs = browser.get(f"{desk.url}/cases/{desk.reference}", allow_redirects=False)
    unknown = browser.get(f"{desk.url}/cases/SG-NOSUCH-CASE", allow_redirects=False)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.text == unknown.text  # the page does not tell a real reference from a made-up one
    assert "my teacher" not in theirs.text
    ack = browser.post(
        f"{desk.url}/cases/{desk.reference}/acknowledge", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert ack.status_code == 404
    queue = browser.get(f"{desk.url}/cases")
    assert queue.status_code == 200 and desk.reference not in queue.text


def test_an_admin_reads_no_case_and_others_see_no_admin_pages(desk):
    admin, csrf = browser_for(desk, desk.admin)
    case = admin.get(f"{desk.url}/cases/{desk.reference}", allow_redirects=False)
    assert case.status_code == 404 and "my teacher" not in case.text
    queue = admin.get(f"{desk.url}/cases", allow_redirects=False)
    assert queue.status_code == 303 and queue.headers["location"] == "/admin/users"
    users = admin.get(f"{desk.url}/admin/users")
    assert users.status_code == 200 and "dsl@lunsford.example" in users.text

    dsl, dsl_csrf = browser_for(desk, desk.lunsford)
    assert dsl.get(f"{desk.url}/admin/users", allow_redirects=False).status_code == 404
    add = dsl.post(
        f"{desk.url}/admin/users",
        data={"csrf_token": dsl_csrf, "email": "x@lunsford.example", "role": "admin"},
        allow_redirects=False,
    )
    assert add.status_code == 404
    assert "x@lunsford.example" not in [u.email for u in accounts.list_users(desk.settings)]


def test_the_dsl_reads_and_works_the_case(desk):
    browser, csrf = browser_for(desk, desk.lunsford)
    queue = browser.get(f"{desk.url}/cases")
    assert queue.status_code == 200 and f'href="/cases/{desk.reference}"' in queue.text
    assert "my teacher" not in queue.text  # the queue never shows the words
    page = browser.get(f"{desk.url}/cases/{desk.reference}")
    assert "my teacher says our chats are a secret" in page.text and "Hello! How can I help?" in page.text
    assert "deputy@lunsford.example" in page.text  # a colleague to assign to
    for action, data in (
        ("acknowledge", {}),
        ("assign", {"assignee": "deputy@lunsford.example"}),
        ("notes", {"text": "Spoke to the pupil <b>today</b>; parents informed."}),
        ("status", {"status": "in_progress"}),
    ):
        done = browser.post(
            f"{desk.url}/cases/{desk.reference}/{action}",
            data={"csrf_token": csrf, **data},
            allow_redirects=False,
        )
        assert done.status_code == 303 and done.headers["location"].startswith(
            f"/cases/{desk.reference}?done="
        )
    page = browser.get(f"{desk.url}/cases/{desk.reference}")
    assert "Spoke to the pupil &lt;b&gt;today&lt;/b&gt;; parents informed." in page.text
    assert re.search(r"<dt>Assigned to</dt><dd>deputy@lunsford.example", page.text)
    assert re.search(r"<dt>Status</dt><dd>In progress", page.text)
    # Nothing is edited or deleted: a status the case cannot take is a 400 page, not a change.
    back = browser.post(
        f"{desk.url}/cases/{desk.reference}/status",
        data={"csrf_token": csrf, "status": "new"},
        allow_redirects=False,
    )
    assert back.status_code == 400


def test_odd_bodies_get_a_plain_400_or_413(desk):
    browser = requests.Session()
    page = browser.get(f"{desk.url}/sign-in")
    token = html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1))
    url = f"{desk.url}/sign-in"
    huge = browser.post(url, data={"csrf_token": token, "email": "a" * 100_000}, allow_redirects=False)
    assert huge.status_code == 413
    as_json = browser.post(url, json={"csrf_token": token}, allow_redirects=False)
    assert as_json.status_code == 400
    not_utf8 = browser.post(url, data=b"email=%FF%FE&csrf_token=x", allow_redirects=False,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert not_utf8.status_code == 400
    twice = browser.post(url, data=[("csrf_token", token), ("csrf_token", token)], allow_redirects=False)
    assert twice.status_code == 400
    many = browser.post(url, data={f"f{i}": "1" for i in range(100)}, allow_redirects=False)
    assert many.status_code == 400
    long_email = browser.post(url, data={"csrf_token": token, "email": "a" * 300, "password": "x"})
    assert long_email.status_code == 400
    hostile = "<script>alert(1)</script>@x.example"
    echoed = browser.post(url, data={"csrf_token": token, "email": hostile, "password": "wrong"})
    assert echoed.status_code == 400
    assert "<script>alert(1)</script>" not in echoed.text and "&lt;script&gt;" in echoed.text
    odd_token = browser.post(url, data={"csrf_token": "é", "email": "a@b.example", "password": "x"})
    assert odd_token.status_code == 403
    odd_cookie = requests.Session()
    odd_cookie.cookies.set("sg_pre", "%C3%A9")
    assert odd_cookie.post(url, data={"csrf_token": token, "email": "a@b.example"}).status_code == 403
    for response in (huge, as_json, not_utf8, twice, many, long_email, echoed, odd_token):
        assert_headers(response)
        assert "Traceback" not in response.text and "text/html" in response.headers["content-type"]
    bad_filter = requests.Session()
    signed_in, _ = browser_for(desk, desk.lunsford)
    assert signed_in.get(f"{desk.url}/cases", params={"risk": "<b>"}).status_code == 400
    assert bad_filter.get(f"{desk.url}/cases/%3Cscript%3E", allow_redirects=False).status_code == 303


def test_unknown_paths_and_methods_get_pages_with_the_headers(desk):
    missing = requests.get(f"{desk.url}/nothing-here")
    assert missing.status_code == 404 and "<h1>Not found</h1>" in missing.text
    wrong_method = requests.put(f"{desk.url}/cases")
    assert wrong_method.status_code == 405
    for response in (missing, wrong_method):
        assert_headers(response)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/cases/SG-ABC", "/cases/SG-ABC"),
        ("/cases?status=new", "/cases?status=new"),
        ("//evil.example/x", None),
        ("/\\evil.example", None),
        ("https://evil.example/", None),
        ("cases", None),
        ("/cases\r\nSet-Cookie: x=1", None),
        ("", None),
        (None, None),
    ],
)
def test_next_is_only_ever_a_path_on_this_site(value, expected):
    assert safe_next(value) == expected


def test_schoolguide_run_starts_the_desk_on_loopback_and_its_log_keeps_no_token(tmp_path):
    """The command `schoolguide run` uses, run for real: it binds loopback by default, answers /healthz, and
    its access log has neither the enrolment token nor query strings."""
    import os
    import subprocess

    from bot.runner import server_commands

    settings = desk_settings(tmp_path, free_port())
    command = server_commands(settings, tmp_path / "m.tar.gz")["desk"]
    assert command[command.index("--interface") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == str(settings.desk_port)
    env = {**os.environ, "SCHOOLGUIDE_VAR_DIR": str(settings.var_dir),
           "SCHOOLGUIDE_ENCRYPTION_KEY": settings.encryption_key}  # fmt: skip
    log = tmp_path / "desk.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if requests.get(f"{settings.desk_url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        secret_token = "tok-" + "s3cr3t" * 6
        assert requests.get(f"{settings.desk_url}/enrol/{secret_token}").status_code == 404
        assert requests.get(f"{settings.desk_url}/sign-in?next=/cases/SG-QUERY-SECRET").status_code == 200
    finally:
        proc.terminate()
        proc.wait(20)
    logged = log.read_text()
    assert "/enrol/[token withheld]" in logged, logged
    assert secret_token not in logged and "SG-QUERY-SECRET" not in logged


def test_a_trust_lead_sees_every_school_and_can_filter_by_school(desk):
    from bot.safeguarding.service import record_disclosure

    theirs = record_disclosure(
        desk.settings, school="scotts", audience="staff", channel="rest", sender_id="conv-scotts",
        message_id="msg-scotts", text="a year 4 girl says an older boy online asked for photos",
        categories=["image_sharing_sextortion"], risk="high",
    ).reference  # fmt: skip
    browser, _ = browser_for(desk, desk.trust_lead)
    everything = browser.get(f"{desk.url}/cases")
    assert desk.reference in everything.text and theirs in everything.text
    assert '<select id="f-school" name="school">' in everything.text
    scotts = browser.get(f"{desk.url}/cases", params={"school": "scotts"})
    assert theirs in scotts.text and desk.reference not in scotts.text
    immediate = browser.get(f"{desk.url}/cases", params={"risk": "immediate"})
    assert desk.reference in immediate.text and theirs not in immediate.text
    assert browser.get(f"{desk.url}/cases/{theirs}").status_code == 200


def test_a_desk_that_cannot_start_does_not_stop_the_assistant(tmp_path, monkeypatch, caplog):
    """`schoolguide run`: the bot keeps answering (and alerting) when the desk exits, e.g. its port taken."""
    import logging
    import sys

    import bot.runner as runner

    settings = desk_settings(tmp_path, free_port())
    started = time.monotonic()
    monkeypatch.setattr(runner.signal, "signal", lambda *args: None)
    monkeypatch.setattr(
        runner, "server_commands", lambda *_: {
            "desk": [sys.executable, "-c", "raise SystemExit(3)"],
            "stand-in": [sys.executable, "-c", "import time; time.sleep(3)"],
        },
    )  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="bot.runner"):
        runner.run_servers(settings, tmp_path / "m.tar.gz")
    assert time.monotonic() - started >= 3  # ran until the stand-in for the bot ended, not the desk
    assert "desk exited with code 3" in caplog.text and "keeps running" in caplog.text
