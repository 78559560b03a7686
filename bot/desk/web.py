"""The DSL's desk on the web (#16): server-rendered pages where a DSL signs in and works each disclosure.

Starlette routes render Jinja2 templates (autoescaped) with no JavaScript; the accounts and the casework live
in ``bot.desk.accounts`` and ``bot.desk.casework``, which this module only calls. Every page but sign-in,
enrolment, ``/healthz`` and the stylesheet needs a server-side session (cookie ``sg_desk``): without one a
page redirects to sign-in (and back afterwards), a POST gets 401. Another school's case is a 404, never a 403,
so a reference tells nobody whether it exists.

CSRF, and why not starlette-csrf (the issue's suggestion). starlette-csrf is a double-submit middleware that
reads the token from a request *header*: a plain HTML form cannot send one without JavaScript, and a
middleware cannot read the form body without consuming it. It is also not a dependency here. Two standard
patterns instead, in a few lines each:

- Signed in: a synchroniser token. ``accounts.start_session`` stores a random CSRF token with the server-side
  session; every form carries it in a hidden field and every POST compares it (in constant time) with the
  session's. An attacker's page cannot read it, and it dies with the session.
- Not signed in yet (sign-in, second factor, enrolment): a signed double-submit token. The first GET sets a
  random pre-session cookie ``sg_pre``; the form carries an itsdangerous signature of that value (timed); a
  POST must bring both and they must match. A forged form has neither the cookie value nor our key.

Every cookie is HttpOnly and SameSite=Strict (a second layer against cross-site posts), and Secure when the
request came over TLS or the desk's public address (``desk_url``) is https. The signing key for the
short-lived cookies and tokens is made per process: a restart only voids a half-finished sign-in (5 minutes
at most), never a session, which lives in the database.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pyotp
import segno
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot.desk import accounts, casework
from bot.safeguarding.categories import CATEGORIES, CATEGORY_LABELS, RISKS
from bot.safeguarding.store import STATUSES
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "sg_desk"
PRE_COOKIE = "sg_pre"  # the pre-session value the sign-in and enrolment forms' tokens are bound to
HALF_COOKIE = "sg_half"  # password accepted, second factor still to come
HALF_SIGNED_IN_SECONDS = 5 * 60
FORM_TOKEN_SECONDS = 60 * 60
ENROL_SECRET_SECONDS = 30 * 60
BODY_LIMIT = 64 * 1024
MAX_FIELDS = 20
CSRF_FIELD = "csrf_token"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Case pages must never sit in a browser's or a proxy's cache; nothing here is worth caching.
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}

# Routes anyone may reach without a session (method, path template); every other route needs one.
OPEN_ROUTES = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/sign-in"),
        ("POST", "/sign-in"),
        ("GET", "/sign-in/code"),
        ("POST", "/sign-in/code"),
        ("GET", "/enrol/{token}"),
        ("POST", "/enrol/{token}"),
        ("GET", "/static"),
    }
)

# Field lengths: generous for people, small enough that nothing odd gets far.
EMAIL_MAX = 254
PASSWORD_MAX = 1024
CODE_MAX = 64
NOTE_MAX = 5000
_REFERENCE = re.compile(r"[A-Za-z0-9-]{1,64}")
_SCHOOL = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,200}")

# What a redirect after an action says on the page it lands on (?done=<key>).
DONE = {
    "acknowledged": "Acknowledged: escalation has stopped.",
    "assigned": "Assigned. Your colleague has been alerted.",
    "noted": "Action note added.",
    "status": "Status changed.",
    "closed": "Case closed. It stays on the chronology.",
    "disabled": "The user is disabled.",
    "removed": "The user is removed.",
}


@dataclass
class Visit:
    """One request as a handler sees it: who is signed in (if anyone) and the form it sent."""

    request: Request
    user: Any = None  # accounts.DeskUser
    csrf: str = ""
    form: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Visit], Response]


class Desk:
    """The handlers, with the settings, the templates and the signing key they share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(when=_when, age=_age, label=_label, category=_category, role=_role)
        key = secrets.token_bytes(32)
        self.form_tokens = URLSafeTimedSerializer(key, salt="desk-form")
        self.half_tokens = URLSafeTimedSerializer(key, salt="desk-second-factor")
        self.enrol_tokens = URLSafeTimedSerializer(key, salt="desk-enrol-secret")

    # --- rendering -------------------------------------------------------------------------------------

    def render(self, visit: Visit | None, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(
            user=visit.user if visit else None, csrf=visit.csrf if visit else "", **context
        )
        return HTMLResponse(html, status_code=status)

    def error(self, status: int, title: str, message: str, visit: Visit | None = None) -> HTMLResponse:
        return self.render(visit, "error.html", status=status, title=title, message=message)

    # --- cookies and tokens ----------------------------------------------------------------------------

    def https(self, request: Request) -> bool:
        """Whether the browser reaches the desk over TLS: its public address (``desk_url``) is https (a
        TLS-terminating proxy in front), or this request came over TLS. X-Forwarded-Proto counts only when a
        setting says the proxy is trusted (``desk_trust_proxy``, off unless set): from anyone else it is a
        claim, not a fact."""
        if self.settings.desk_url.lower().startswith("https://") or request.url.scheme == "https":
            return True
        if getattr(self.settings, "desk_trust_proxy", False):
            forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
            return forwarded == "https"
        return False

    def set_cookie(self, request: Request, response: Response, name: str, value: str, **kw: Any) -> None:
        response.set_cookie(
            name, value, path="/", httponly=True, samesite="strict", secure=self.https(request), **kw
        )

    def clear_cookie(self, request: Request, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", httponly=True, samesite="strict", secure=self.https(request))

    def pre_value(self, request: Request) -> tuple[str, bool]:
        """The pre-session cookie's value, and whether it is new (and must be set)."""
        value = request.cookies.get(PRE_COOKIE, "")
        if _TOKEN.fullmatch(value):
            return value, False
        return secrets.token_urlsafe(32), True

    def open_form(self, visit: Visit, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A page with a form for someone not signed in yet: its token is bound to the pre-session cookie."""
        value, new = self.pre_value(visit.request)
        visit.csrf = self.form_tokens.dumps(value)
        response = self.render(visit, template, status=status, **context)
        if new:
            self.set_cookie(visit.request, response, PRE_COOKIE, value)
        return response

    def open_form_token_ok(self, visit: Visit) -> bool:
        value = visit.request.cookies.get(PRE_COOKIE, "")
        try:
            signed = self.form_tokens.loads(visit.form.get(CSRF_FIELD, ""), max_age=FORM_TOKEN_SECONDS)
        except BadSignature:
            return False
        return bool(value) and isinstance(signed, str) and _same(signed, value)

    def half_signed_in(self, request: Request) -> int | None:
        """The user id whose password was accepted in this browser within the last five minutes."""
        try:
            data = self.half_tokens.loads(
                request.cookies.get(HALF_COOKIE, ""), max_age=HALF_SIGNED_IN_SECONDS
            )
        except BadSignature:
            return None
        pre = request.cookies.get(PRE_COOKIE, "")
        if not isinstance(data, dict) or not pre or not _same(str(data.get("p")), pre):
            return None
        user_id = data.get("u")
        return user_id if isinstance(user_id, int) else None

    def session(self, request: Request) -> tuple[Any, str] | None:
        session_id = request.cookies.get(SESSION_COOKIE, "")
        if not _TOKEN.fullmatch(session_id):
            return None
        return accounts.session_user(self.settings, session_id)

    # --- sign-in ---------------------------------------------------------------------------------------

    def sign_in_page(self, visit: Visit) -> Response:
        next_path = safe_next(visit.request.query_params.get("next"))
        if self.session(visit.request) is not None:
            return RedirectResponse(next_path or "/cases", status_code=303)
        return self.open_form(visit, "sign_in.html", next=next_path or "", email="")

    def sign_in(self, visit: Visit) -> Response:
        if not self.open_form_token_ok(visit):
            return self.csrf_refused(visit)
        next_path = safe_next(visit.form.get("next")) or ""
        email = _field(visit.form, "email", EMAIL_MAX).strip()
        password = _field(visit.form, "password", PASSWORD_MAX)
        try:
            user = accounts.check_password(self.settings, email, password) if email and password else None
        except accounts.LockedOut as locked:
            return self.locked_out(visit, locked)
        if user is None:
            return self.open_form(
                visit, "sign_in.html", status=400, next=next_path, email=email,
                problem="That email address and password did not match an account that can sign in.",
            )  # fmt: skip
        response = RedirectResponse(_with_next("/sign-in/code", next_path), status_code=303)
        pre = visit.request.cookies.get(PRE_COOKIE, "")
        half = self.half_tokens.dumps({"u": user.id, "p": pre})
        self.set_cookie(visit.request, response, HALF_COOKIE, half, max_age=HALF_SIGNED_IN_SECONDS)
        return response

    def code_page(self, visit: Visit) -> Response:
        next_path = safe_next(visit.request.query_params.get("next")) or ""
        if self.half_signed_in(visit.request) is None:
            return RedirectResponse(_with_next("/sign-in", next_path), status_code=303)
        return self.open_form(visit, "code.html", next=next_path)

    def code(self, visit: Visit) -> Response:
        if not self.open_form_token_ok(visit):
            return self.csrf_refused(visit)
        next_path = safe_next(visit.form.get("next")) or ""
        user_id = self.half_signed_in(visit.request)
        if user_id is None:
            return RedirectResponse(_with_next("/sign-in", next_path), status_code=303)
        code = re.sub(r"\s+", "", _field(visit.form, "code", CODE_MAX))
        try:
            accepted = bool(code) and accounts.check_second_factor(self.settings, user_id, code)
        except accounts.LockedOut as locked:
            return self.locked_out(visit, locked)
        if not accepted:
            return self.open_form(
                visit, "code.html", status=400, next=next_path,
                problem="That code did not work. Codes change every 30 seconds and each works once.",
            )  # fmt: skip
        session_id, _ = accounts.start_session(self.settings, user_id)
        found = accounts.session_user(self.settings, session_id)
        default = "/admin/users" if found and found[0].role == "admin" else "/cases"
        response = RedirectResponse(next_path or default, status_code=303)
        self.set_cookie(visit.request, response, SESSION_COOKIE, session_id)
        self.clear_cookie(visit.request, response, HALF_COOKIE)
        return response

    def sign_out(self, visit: Visit) -> Response:
        session_id = visit.request.cookies.get(SESSION_COOKIE, "")
        if session_id:
            accounts.end_session(self.settings, session_id)
        response = RedirectResponse("/sign-in", status_code=303)
        self.clear_cookie(visit.request, response, SESSION_COOKIE)
        return response

    def locked_out(self, visit: Visit, locked: Exception) -> Response:
        retry = max(1, int(getattr(locked, "retry_after", 60) or 60))
        response = self.error(
            429, "Try again later",
            f"Too many attempts. For your account's safety, sign-in is paused: try again in "
            f"{_duration(retry)}.",
        )  # fmt: skip
        response.headers["Retry-After"] = str(retry)
        return response

    def csrf_refused(self, visit: Visit) -> Response:
        return self.error(
            403, "Form refused",
            "This form was not accepted: it was missing its security token or came from another page. "
            "Go back, reload the page and try again.",
        )  # fmt: skip

    # --- enrolment -------------------------------------------------------------------------------------

    def enrolling(self, token: str) -> Any:
        if not _TOKEN.fullmatch(token):
            return None
        return accounts.user_for_enrolment(self.settings, token)

    def enrol_page(self, visit: Visit) -> Response:
        token = visit.request.path_params["token"]
        user = self.enrolling(token)
        if user is None:
            return self.bad_link()
        return self.enrol_form(visit, token, user, pyotp.random_base32())

    def enrol_form(
        self, visit: Visit, token: str, user: Any, secret: str, status: int = 200, problem: str = ""
    ) -> Response:
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="SchoolGuide desk")
        qr = segno.make(uri, error="m").svg_inline(scale=4, border=2, dark="#000", light="#fff")
        signed = self.enrol_tokens.dumps({"s": secret, "t": _digest(token)})
        return self.open_form(
            visit, "enrol.html", status=status, account=user, qr=qr, secret=_grouped(secret),
            signed_secret=signed, problem=problem, token=token,
        )  # fmt: skip

    def enrol(self, visit: Visit) -> Response:
        token = visit.request.path_params["token"]
        if not self.open_form_token_ok(visit):
            return self.csrf_refused(visit)
        user = self.enrolling(token)
        if user is None:
            return self.bad_link()
        try:
            data = self.enrol_tokens.loads(visit.form.get("enrol_secret", ""), max_age=ENROL_SECRET_SECONDS)
            secret = data["s"] if data.get("t") == _digest(token) else None
        except (BadSignature, AttributeError, KeyError, TypeError):
            secret = None
        if not isinstance(secret, str):
            return self.enrol_form(
                visit, token, user, pyotp.random_base32(), status=400,
                problem="This page was open too long. Add the new code below to your app and try again.",
            )  # fmt: skip
        password = _field(visit.form, "password", PASSWORD_MAX)
        if password != _field(visit.form, "password_again", PASSWORD_MAX):
            return self.enrol_form(
                visit, token, user, secret, status=400, problem="The two passwords are not the same."
            )
        code = re.sub(r"\s+", "", _field(visit.form, "code", CODE_MAX))
        try:
            codes = accounts.complete_enrolment(
                self.settings, token, password=password, totp_secret=secret, code=code
            )
        except accounts.EnrolmentError as exc:
            return self.enrol_form(visit, token, user, secret, status=400, problem=str(exc))
        return self.render(visit, "enrolled.html", account=user, recovery_codes=codes)

    def bad_link(self) -> Response:
        return self.error(
            404, "Link not valid",
            "This enrolment link is not valid: it may have been used already. Ask your desk administrator "
            "for a new one.",
        )  # fmt: skip

    # --- the queue and the case ------------------------------------------------------------------------

    def queue(self, visit: Visit) -> Response:
        if visit.user.role == "admin":
            return RedirectResponse("/admin/users", status_code=303)
        params = visit.request.query_params
        filters = {
            "status": _choice(params.get("status"), STATUSES),
            "risk": _choice(params.get("risk"), RISKS),
            "category": _choice(params.get("category"), CATEGORIES),
            "school": _choice(params.get("school"), None, _SCHOOL),
        }
        items = casework.queue(self.settings, visit.user, **filters)
        schools: list[str] = []
        if visit.user.role == "trust-lead":
            schools = sorted({item.school for item in casework.queue(self.settings, visit.user)})
        return self.render(
            visit, "queue.html", items=items, filters=filters, statuses=STATUSES, risks=RISKS,
            categories=CATEGORIES, schools=schools,
        )  # fmt: skip

    def case(self, visit: Visit) -> Response:
        reference = self.reference(visit)
        detail = casework.open_case(self.settings, visit.user, reference)
        colleagues = [c for c in accounts.colleagues(self.settings, visit.user) if c.id != visit.user.id]
        done = DONE.get(visit.request.query_params.get("done", ""))
        return self.render(
            visit, "case.html", detail=detail, case=detail.case, colleagues=colleagues, done=done,
            statuses=[s for s in STATUSES if s not in ("new", "closed")],
        )  # fmt: skip

    def reference(self, visit: Visit) -> str:
        reference = visit.request.path_params["ref"]
        if visit.user.role == "admin" or not _REFERENCE.fullmatch(reference):
            raise casework.CaseNotFound(reference)
        return reference

    def case_action(self, what: str) -> Handler:
        def handle(visit: Visit) -> Response:
            reference = self.reference(visit)
            form, settings, viewer = visit.form, self.settings, visit.user
            try:
                if what == "acknowledged":
                    casework.acknowledge(settings, viewer, reference)
                elif what == "assigned":
                    casework.assign(settings, viewer, reference, _required(form, "assignee", EMAIL_MAX))
                elif what == "noted":
                    casework.add_action_note(settings, viewer, reference, _required(form, "text", NOTE_MAX))
                elif what == "status":
                    casework.change_status(settings, viewer, reference, _required(form, "status", 32))
                elif what == "closed":
                    casework.close_case(settings, viewer, reference, _required(form, "outcome", NOTE_MAX))
            except casework.CaseNotFound:
                raise
            except ValueError as exc:  # e.g. a status change the case cannot take, a colleague not found
                return self.error(400, "Not done", str(exc) or "That could not be done.", visit)
            return RedirectResponse(f"/cases/{quote(reference)}?done={what}", status_code=303)

        return handle

    # --- users (admins only) ---------------------------------------------------------------------------

    def admin_only(self, visit: Visit) -> None:
        if visit.user.role != "admin":
            raise HTTPException(404)

    def users(self, visit: Visit) -> Response:
        self.admin_only(visit)
        done = DONE.get(visit.request.query_params.get("done", ""))
        return self.users_page(visit, done=done)

    def users_page(self, visit: Visit, status: int = 200, **context: Any) -> Response:
        return self.render(
            visit, "users.html", status=status, users=accounts.list_users(self.settings),
            roles=accounts.ROLES, **context,
        )  # fmt: skip

    def add_user(self, visit: Visit) -> Response:
        self.admin_only(visit)
        email = _required(visit.form, "email", EMAIL_MAX).strip()
        role = _required(visit.form, "role", 32)
        school = _field(visit.form, "school", 64).strip() or None
        try:
            user, token = accounts.add_user(
                self.settings, email, role=role, school=school, actor=visit.user.email
            )
        except ValueError as exc:
            return self.users_page(visit, status=400, problem=str(exc))
        return self.users_page(visit, added=user, link=accounts.enrolment_link(self.settings, token))

    def user_change(self, what: str) -> Handler:
        def handle(visit: Visit) -> Response:
            self.admin_only(visit)
            email = _required(visit.form, "email", EMAIL_MAX)
            change = accounts.disable_user if what == "disabled" else accounts.remove_user
            try:
                change(self.settings, email, actor=visit.user.email)
            except (ValueError, LookupError) as exc:
                return self.users_page(visit, status=400, problem=str(exc))
            return RedirectResponse(f"/admin/users?done={what}", status_code=303)

        return handle

    def healthz(self, visit: Visit) -> Response:
        return PlainTextResponse("ok")


# --- request plumbing ----------------------------------------------------------------------------------


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded form body, at most BODY_LIMIT bytes; anything else is a 400 or 413, never a 500."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(400, "This form could not be read.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > BODY_LIMIT:
        raise HTTPException(413, "That was too much to send at once.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > BODY_LIMIT:
            raise HTTPException(413, "That was too much to send at once.")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, "This form could not be read.") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form or "\x00" in value:
            raise HTTPException(400, "This form could not be read.")
        form[name] = value
    return form


def _same(given: str, expected: str) -> bool:
    """Constant-time equality of a token someone sent and the one we hold (any characters; "" never)."""
    return bool(expected) and hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def _field(form: dict[str, str], name: str, limit: int) -> str:
    value = form.get(name, "")
    if len(value) > limit:
        raise HTTPException(400, f"The {name.replace('_', ' ')} field is too long.")
    return value


def _required(form: dict[str, str], name: str, limit: int) -> str:
    value = _field(form, name, limit)
    if not value.strip():
        raise HTTPException(400, f"Please fill in the {name.replace('_', ' ')} field.")
    return value


def _choice(
    value: str | None, allowed: tuple[str, ...] | None, shape: re.Pattern | None = None
) -> str | None:
    if not value:
        return None
    if (allowed is not None and value not in allowed) or (shape is not None and not shape.fullmatch(value)):
        raise HTTPException(400, "That filter is not one the queue knows.")
    return value


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a path on this site (``/cases/SG-…``), else None: never another site."""
    if not value or len(value) > 512 or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    if any(ch in value for ch in "\\\r\n\t\x00") or not value.isprintable():
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def _with_next(path: str, next_path: str | None) -> str:
    return f"{path}?next={quote(next_path, safe='/')}" if next_path else path


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _when(value: Any) -> str:
    if not isinstance(value, datetime):
        return str(value or "")
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%-d %b %Y, %H:%M UTC")


def _age(minutes: int) -> str:
    minutes = max(0, int(minutes))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // (24 * 60)} days"


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{(seconds + 59) // 60} minutes"


ROLE_LABELS = {
    "dsl": "DSL",
    "deputy": "Deputy DSL",
    "trust-lead": "Trust safeguarding lead",
    "admin": "Admin",
}


def _role(value: Any) -> str:
    return ROLE_LABELS.get(value) or _label(value)


def _category(value: Any) -> str:
    return CATEGORY_LABELS.get(value) or _label(value)


def _label(value: Any) -> str:
    """``sexual_abuse_grooming`` -> ``Sexual abuse grooming``; ``in_progress`` -> ``In progress``."""
    text = str(value or "").replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


# --- the app -------------------------------------------------------------------------------------------


def create_app(settings: Settings) -> Starlette:
    """The desk as an ASGI app for ``settings`` (the database, the desk's URL and idle timeout)."""
    desk = Desk(settings)

    def open_route(handler: Handler, *, form: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            visit = Visit(request, form=await read_form(request) if form else {})
            return await run_in_threadpool(handler, visit)

        return endpoint

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            found = await run_in_threadpool(desk.session, request)
            if found is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(_with_next("/sign-in", safe_next(target)), status_code=303)
            return await run_in_threadpool(handler, Visit(request, *found))

        return endpoint

    def action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            found = await run_in_threadpool(desk.session, request)
            if found is None:
                return desk.error(401, "Signed out", "You are signed out. Sign in and try again.")
            visit = Visit(request, *found, form=await read_form(request))
            if not _same(visit.form.get(CSRF_FIELD, ""), visit.csrf):
                return desk.csrf_refused(visit)
            return await run_in_threadpool(handler, visit)

        return endpoint

    routes = [
        Route("/healthz", open_route(desk.healthz), methods=["GET"]),
        Route("/sign-in", open_route(desk.sign_in_page), methods=["GET"]),
        Route("/sign-in", open_route(desk.sign_in, form=True), methods=["POST"]),
        Route("/sign-in/code", open_route(desk.code_page), methods=["GET"]),
        Route("/sign-in/code", open_route(desk.code, form=True), methods=["POST"]),
        Route("/sign-out", action(desk.sign_out), methods=["POST"]),
        Route("/enrol/{token}", open_route(desk.enrol_page), methods=["GET"]),
        Route("/enrol/{token}", open_route(desk.enrol, form=True), methods=["POST"]),
        Route("/", page(lambda visit: RedirectResponse("/cases", status_code=303)), methods=["GET"]),
        Route("/cases", page(desk.queue), methods=["GET"]),
        Route("/cases/{ref}", page(desk.case), methods=["GET"]),
        *(
            Route(f"/cases/{{ref}}/{path}", action(desk.case_action(what)), methods=["POST"])
            for path, what in (
                ("acknowledge", "acknowledged"),
                ("assign", "assigned"),
                ("notes", "noted"),
                ("status", "status"),
                ("close", "closed"),
            )
        ),
        Route("/admin/users", page(desk.users), methods=["GET"]),
        Route("/admin/users", action(desk.add_user), methods=["POST"]),
        Route("/admin/users/disable", action(desk.user_change("disabled")), methods=["POST"]),
        Route("/admin/users/remove", action(desk.user_change("removed")), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        titles = {404: "Not found", 405: "Not allowed", 413: "Too large", 400: "Could not read that"}
        detail = getattr(exc, "detail", "") if status in (400, 413) else ""
        message = detail or {
            404: "There is nothing here, or nothing you can see.",
            405: "That address does not take this kind of request.",
        }.get(status, "Something went wrong.")
        return desk.error(status, titles.get(status, "Something went wrong"), message)

    async def not_found(request: Request, exc: Exception) -> Response:
        return desk.error(404, "Not found", "There is nothing here, or nothing you can see.")

    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: http_error,
            casework.CaseNotFound: not_found,
        },
    )
    app.add_middleware(_Guard, error_page=lambda: desk.error(500, "Something went wrong", _SORRY))
    app.state.desk = desk
    return app


_SORRY = "Something went wrong on our side. Nothing you sent was lost from the case record; please try again."


class _Guard:
    """Security headers on every response, a ceiling on declared body sizes, and a plain 500 page (never a
    traceback) for anything unexpected."""

    def __init__(self, app: Any, error_page: Callable[[], Response]) -> None:
        self.app = app
        self.error_page = error_page

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            logger.exception("desk: unexpected error on %s %s", scope.get("method"), _loggable(scope["path"]))
            if started:
                raise
            await self.error_page()(scope, receive, send_with_headers)


def _loggable(path: str) -> str:
    """A request path fit for a log: enrolment tokens withheld."""
    return re.sub(r"^/enrol/[^/?]*", "/enrol/[token withheld]", path)


class AccessLogFilter(logging.Filter):
    """uvicorn's access log without query strings or enrolment tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], _loggable(args[2].split("?", 1)[0]), *args[3:])
        return True


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the desk on ``settings.desk_host:desk_port`` (loopback by default) until stopped."""
    import uvicorn

    logging.getLogger("uvicorn.access").addFilter(AccessLogFilter())
    uvicorn.run(
        create_app(settings),
        host=host or settings.desk_host,
        port=port or settings.desk_port,
        # The scheme comes from the proxy only when the settings say one is trusted (Desk.https).
        proxy_headers=False,
        server_header=False,
        # No websockets here; and uvicorn's websockets support does not load with Rasa 3.6's pinned release.
        ws="none",
        log_level="info",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.desk.web", description="Run the DSL's desk.")
    parser.add_argument("--interface", help="address to listen on (default: SCHOOLGUIDE_DESK_HOST)")
    parser.add_argument("--port", type=int, help="port (default: SCHOOLGUIDE_DESK_PORT)")
    args = parser.parse_args(argv)
    serve(get_settings(), host=args.interface, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
