"""All of SchoolGuide's configuration, read once from environment variables.

Every setting has a documented default (see the README's "Settings" table) so that a fresh clone runs with
nothing configured: SQLite under ``var/``, the demo school, and alerts spooled locally until SMTP or a webhook
is set. Nothing else in the code reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

AUDIENCES = ("staff", "parent", "pupil")
SPACY_MODEL_RELATIVE_PATH = Path("var/spacy/en_schoolguide")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"SCHOOLGUIDE_{name}")
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"SCHOOLGUIDE_{name} must be a whole number, got {raw!r}") from exc


def _bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    return raw.lower() in {"1", "true", "yes", "on"}


def _list(name: str) -> tuple[str, ...]:
    raw = _env(name)
    if not raw:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """SchoolGuide settings; build with :func:`get_settings` (or ``Settings.from_env()`` in tests)."""

    home: Path
    knowledge_dir: Path
    var_dir: Path
    database_url: str
    tracker_database_url: str
    default_school: str
    default_audience: str
    rasa_port: int
    action_port: int
    rasa_url: str
    spacy_model_path: Path
    # Safeguarding hand-off
    encryption_key: str | None
    spool_dir: Path
    dsl_emails: tuple[str, ...]
    deputy_dsl_emails: tuple[str, ...]
    alert_from: str
    smtp_host: str | None
    smtp_port: int
    smtp_username: str | None
    smtp_password: str | None
    smtp_starttls: bool
    alert_webhook_url: str | None
    case_link_base: str
    ack_timeout_minutes: int
    delivery_max_attempts: int
    worker_interval_seconds: int
    worker_enabled: bool
    # Channels. Slack and Teams are switched on by giving their credentials; the base URLs exist so tests
    # (and sovereign clouds) can point the connectors at other servers.
    slack_token: str | None = None
    slack_signing_secret: str | None = None
    slack_api_base_url: str = "https://slack.com/api"
    teams_app_id: str | None = None
    teams_app_password: str | None = None
    teams_tenant_id: str | None = None
    teams_openid_metadata_url: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    teams_token_url: str | None = None
    # Where the pupil widget's "Leave quickly" button goes: a neutral site.
    pupil_leave_url: str = "https://www.bbc.co.uk/weather"
    cors_origins: tuple[str, ...] = field(default=("*",))
    # Web channels (REST, website, pupil): who may talk, and how fast.
    rest_token: str | None = None
    widget_secret: str | None = None
    rate_limit_per_sender: int = 20
    rate_limit_per_ip: int = 120
    # Network: the interface both servers listen on, and the secret the Rasa server sends the
    # action server (None: generated into var/, see bot/action_auth.py).
    bind_host: str = "127.0.0.1"
    action_server_secret: str | None = None
    # Privacy: days Rasa's tracker store keeps a conversation (0: for ever); disclosure records are kept
    # (schools set their own retention for those).
    retention_days: int = 30
    # The DSL's desk (bot/desk): where it listens, its public address (alerts link to <desk_url>/cases/<ref>),
    # and how long an unused session lives.
    desk_host: str = "127.0.0.1"
    desk_port: int = 5080
    desk_url: str = "http://127.0.0.1:5080"
    desk_idle_minutes: int = 30
    # Trust X-Forwarded-Proto from the reverse proxy in front of the desk (cookies get Secure behind TLS).
    desk_trust_proxy: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(_env("HOME", str(PROJECT_ROOT))).resolve()
        var_dir = Path(_env("VAR_DIR", str(home / "var")))
        rasa_port = _int("RASA_PORT", 5005)
        audience = _env("DEFAULT_AUDIENCE", "parent")
        desk_host = _env("DESK_HOST", "127.0.0.1")
        desk_port = _int("DESK_PORT", 5080)
        desk_url = _env("DESK_URL", f"http://{desk_host}:{desk_port}").rstrip("/")
        if audience not in AUDIENCES:
            raise ValueError(f"SCHOOLGUIDE_DEFAULT_AUDIENCE must be one of {AUDIENCES}, got {audience!r}")
        return cls(
            home=home,
            knowledge_dir=Path(_env("KNOWLEDGE_DIR", str(home / "knowledge"))),
            var_dir=var_dir,
            database_url=_env("DATABASE_URL", f"sqlite:///{var_dir / 'schoolguide.db'}"),
            tracker_database_url=_env("TRACKER_DATABASE_URL", f"sqlite:///{var_dir / 'tracker.db'}"),
            default_school=_env("DEFAULT_SCHOOL", "lunsford"),
            default_audience=audience,
            rasa_port=rasa_port,
            action_port=_int("ACTION_PORT", 5055),
            rasa_url=_env("RASA_URL", f"http://127.0.0.1:{rasa_port}"),
            # config.yml names this path for SpacyNLP (relative to the project), so it is not configurable.
            spacy_model_path=home / SPACY_MODEL_RELATIVE_PATH,
            encryption_key=_env("ENCRYPTION_KEY"),
            spool_dir=Path(_env("SPOOL_DIR", str(var_dir / "spool"))),
            dsl_emails=_list("DSL_EMAILS"),
            deputy_dsl_emails=_list("DEPUTY_DSL_EMAILS"),
            alert_from=_env("ALERT_FROM", "schoolguide@localhost"),
            smtp_host=_env("SMTP_HOST"),
            smtp_port=_int("SMTP_PORT", 25),
            smtp_username=_env("SMTP_USERNAME"),
            smtp_password=_env("SMTP_PASSWORD"),
            smtp_starttls=_bool("SMTP_STARTTLS", False),
            alert_webhook_url=_env("ALERT_WEBHOOK_URL"),
            case_link_base=_env("CASE_LINK_BASE", f"{desk_url}/cases/"),
            ack_timeout_minutes=_int("ACK_TIMEOUT_MINUTES", 30),
            delivery_max_attempts=_int("DELIVERY_MAX_ATTEMPTS", 12),
            worker_interval_seconds=_int("WORKER_INTERVAL_SECONDS", 15),
            # The action server runs the alert worker unless this is off (then run `schoolguide disclosures
            # worker` on its own).
            worker_enabled=_bool("WORKER", True),
            slack_token=_env("SLACK_TOKEN"),
            slack_signing_secret=_env("SLACK_SIGNING_SECRET"),
            slack_api_base_url=_env("SLACK_API_BASE_URL", "https://slack.com/api"),
            teams_app_id=_env("TEAMS_APP_ID"),
            teams_app_password=_env("TEAMS_APP_PASSWORD"),
            teams_tenant_id=_env("TEAMS_TENANT_ID"),
            teams_openid_metadata_url=_env(
                "TEAMS_OPENID_METADATA_URL",
                "https://login.botframework.com/v1/.well-known/openidconfiguration",
            ),
            teams_token_url=_env("TEAMS_TOKEN_URL"),
            pupil_leave_url=_env("PUPIL_LEAVE_URL", "https://www.bbc.co.uk/weather"),
            cors_origins=_list("CORS_ORIGINS") or ("*",),
            # Web channels. Without REST_TOKEN the REST channel is open only while the server binds to
            # loopback; without WIDGET_SECRET a key for signing widget conversation ids is generated in var/.
            rest_token=_env("REST_TOKEN"),
            widget_secret=_env("WIDGET_SECRET"),
            rate_limit_per_sender=_int("RATE_LIMIT_PER_SENDER", 20),
            rate_limit_per_ip=_int("RATE_LIMIT_PER_IP", 120),
            # Network: loopback unless a deployment says otherwise (a reverse proxy in front, see README).
            bind_host=_env("BIND_HOST", "127.0.0.1"),
            action_server_secret=_env("ACTION_SERVER_SECRET"),
            # Privacy: the worker deletes tracker-store conversations older than this (0 keeps them).
            retention_days=_retention_days(),
            desk_host=desk_host,
            desk_port=desk_port,
            desk_url=desk_url,
            desk_idle_minutes=_desk_idle_minutes(),
            desk_trust_proxy=_bool("DESK_TRUST_PROXY", False),
        )


def _retention_days() -> int:
    days = _int("RETENTION_DAYS", 30)
    if days < 0:
        raise ValueError(f"SCHOOLGUIDE_RETENTION_DAYS must be 0 (keep) or a number of days, got {days}")
    return days


def _desk_idle_minutes() -> int:
    minutes = _int("DESK_IDLE_MINUTES", 30)
    if minutes < 1:
        raise ValueError(f"SCHOOLGUIDE_DESK_IDLE_MINUTES must be at least 1, got {minutes}")
    return minutes


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read from the environment on first use)."""
    return Settings.from_env()
