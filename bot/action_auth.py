"""The shared secret between the Rasa server and the action server.

The action server runs our safeguarding actions with whatever tracker it is given, so anyone who can reach it
could forge a disclosure or attach a "contact note" to somebody else's. Only the Rasa server may call it: it
sends ``Authorization: Bearer <secret>`` on every request (a header, not a query parameter, so the secret
never lands in an access log), and the action server answers anything else with 401 before it reads the
body.

``SCHOOLGUIDE_ACTION_SERVER_SECRET`` sets the secret (production: from the environment or a secret store);
without it one is generated once into ``var/action-server.secret`` (mode 0600), as the encryption key is, so a
fresh clone works and both servers, started from the same settings, agree on it.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from bot.settings import Settings

if TYPE_CHECKING:
    from sanic import Sanic

logger = logging.getLogger(__name__)

SECRET_FILE_NAME = "action-server.secret"
HEADER = "Authorization"
SCHEME = "Bearer "
# Liveness only ({"status": "ok"}): orchestrators, `schoolguide run`'s callers and the bench poll it without
# credentials, and it tells nobody more than an open port does.
OPEN_ROUTES = frozenset({("GET", "/health"), ("HEAD", "/health")})
_SECRET_SHAPE = re.compile(r"[A-Za-z0-9._-]{16,}")


class ActionSecretError(RuntimeError):
    """The configured secret is malformed, or the generated secret file cannot be read or written."""


def load_action_secret(settings: Settings) -> str:
    """The configured secret, or the one generated under ``var_dir`` (created on first use)."""
    if settings.action_server_secret:
        secret = settings.action_server_secret
        # Rasa expands ${VAR} in endpoints.yml and a header value cannot hold spaces; the message names the
        # rule, never the value.
        if not _SECRET_SHAPE.fullmatch(secret):
            raise ActionSecretError(
                "SCHOOLGUIDE_ACTION_SERVER_SECRET must be at least 16 characters of letters, digits, "
                "'-', '_' or '.'; generate one with "
                '`python -c "import secrets; print(secrets.token_urlsafe(32))"`'
            )
        return secret
    return _generated_secret(settings.var_dir / SECRET_FILE_NAME)


def _generated_secret(path: Path) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: when both servers start at once, exactly one of them writes the secret.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
                handle.flush()
                os.fsync(handle.fileno())
        value = path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise ActionSecretError(f"cannot read or create the action server secret file {path}: {exc}") from exc
    if not value:
        raise ActionSecretError(f"the action server secret file {path} is empty")
    return value


def auth_headers(secret: str) -> dict[str, str]:
    """The headers the Rasa server sends with every action call."""
    return {HEADER: SCHEME + secret}


def is_authorised(header: str | None, secret: str) -> bool:
    """True when ``header`` (an Authorization value) carries ``secret``; constant time."""
    if not header or not header.startswith(SCHEME):
        return False
    return hmac.compare_digest(header[len(SCHEME) :].encode("utf-8"), secret.encode("utf-8"))


def require_secret(app: Sanic, secret: str) -> None:
    """Make ``app`` answer 401 to every request without the secret, except the open liveness route.

    The check runs on Sanic's ``http.routing.before`` signal, which fires after the headers and before the
    body is loaded, parsed or decompressed, so such a request never reaches a route handler. Sanic then runs
    the request middleware on the error path, where Rasa SDK's CORS extension would answer an OPTIONS
    preflight with 200; the response middleware below turns whatever a refused request got into the 401."""
    from sanic import response
    from sanic.exceptions import SanicException

    class Unauthorised(SanicException):
        status_code = 401
        quiet = True  # a refused caller is not an error of ours: no traceback in the log

    def refusal():
        return response.json({"error": "unauthorised"}, status=401, headers={"WWW-Authenticate": "Bearer"})

    @app.signal("http.routing.before")
    async def _check_secret(request, **_) -> None:
        if (request.method, request.path) in OPEN_ROUTES:
            return
        if not is_authorised(request.headers.get(HEADER), secret):
            request.ctx.schoolguide_refused = True
            # The path is cut short: it is the caller's text, not ours.
            logger.warning("refused %s %.80s: no valid action server secret", request.method, request.path)
            raise Unauthorised("unauthorised")

    # More specific than Rasa SDK's catch-all handler, which logs an error and echoes the body with a 500.
    @app.exception(Unauthorised)
    async def _unauthorised(request, exception):  # noqa: ARG001
        return refusal()

    # Registered last, so it runs first among the response middleware (Sanic runs them in reverse).
    @app.middleware("response")
    async def _keep_refusals_refused(request, resp):  # noqa: ARG001
        if getattr(request.ctx, "schoolguide_refused", False):
            return refusal()
        return None
