"""``schoolguide doctor``: what is still missing before SchoolGuide is fit for a real school.

A fresh clone runs with nothing configured (see ``bot/settings.py``): right for trying it, wrong for
children's disclosures. The same list is logged when ``schoolguide run`` starts, so it is seen even by those
who never run the doctor. Warnings only: the exit code is 0, because a demo is a legitimate use.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """One thing missing for a real deployment: a short area name and what to do about it."""

    area: str
    message: str


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _alerts(settings: Settings) -> list[Finding]:
    webhook = bool(settings.alert_webhook_url)
    email = bool(settings.dsl_emails and settings.smtp_host)
    if not (webhook or email):
        if settings.dsl_emails:
            why = "SCHOOLGUIDE_DSL_EMAILS is set but SCHOOLGUIDE_SMTP_HOST is not, and there is no webhook"
        else:
            why = (
                "neither SCHOOLGUIDE_DSL_EMAILS (with SCHOOLGUIDE_SMTP_HOST) nor "
                "SCHOOLGUIDE_ALERT_WEBHOOK_URL"
            )
        return [
            Finding(
                "alerts",
                f"no DSL alert channel: {why} is set. Disclosures are stored and their alerts wait in the "
                "outbox, but nobody is told until one is configured.",
            )
        ]
    if not settings.deputy_dsl_emails and not webhook:
        return [
            Finding(
                "alerts",
                "no deputy DSL (SCHOOLGUIDE_DEPUTY_DSL_EMAILS): a disclosure nobody acknowledges cannot "
                "escalate.",
            )
        ]
    return []


def _rest(settings: Settings) -> list[Finding]:
    if getattr(settings, "rest_token", None):
        return []
    host = getattr(settings, "bind_host", "127.0.0.1") or "127.0.0.1"
    if _is_loopback(host):
        return [
            Finding(
                "rest",
                "the REST channel is open without SCHOOLGUIDE_REST_TOKEN (only reachable on this machine "
                "while the servers bind to loopback; a reverse proxy must not forward /webhooks/rest/).",
            )
        ]
    return [
        Finding(
            "rest",
            f"the servers bind to {host} and SCHOOLGUIDE_REST_TOKEN is not set, so the REST channel is "
            "switched off; set the token if an integration needs it.",
        )
    ]


def _key(settings: Settings) -> list[Finding]:
    if settings.encryption_key:
        return []
    return [
        Finding(
            "encryption key",
            f"the key for disclosures at rest is generated into {settings.var_dir}/secret.key, next to the "
            "database it protects: set SCHOOLGUIDE_ENCRYPTION_KEY from the environment or a secret store "
            "(and keep a copy: without it no stored disclosure can be read).",
        )
    ]


def _databases(settings: Settings) -> list[Finding]:
    on_sqlite = [
        variable
        for variable, url in (
            ("SCHOOLGUIDE_DATABASE_URL", settings.database_url),
            ("SCHOOLGUIDE_TRACKER_DATABASE_URL", settings.tracker_database_url),
        )
        if make_url(url).get_backend_name() == "sqlite"
    ]
    if not on_sqlite:
        return []
    return [
        Finding(
            "database",
            f"SQLite in use ({', '.join(on_sqlite)}): use PostgreSQL in production, with the application "
            "role limited to SELECT, INSERT on audit_events (grants: bot/safeguarding/store.py).",
        )
    ]


def check(settings: Settings) -> list[Finding]:
    """Everything missing for a real deployment, most urgent first; empty when nothing is."""
    return [*_alerts(settings), *_rest(settings), *_key(settings), *_databases(settings)]


def log_findings(settings: Settings) -> list[Finding]:
    """Log the findings as warnings (the servers' start-up); returns them."""
    findings = check(settings)
    for finding in findings:
        logger.warning("Not ready for a real deployment (%s): %s", finding.area, finding.message)
    return findings


def _cmd_doctor(args: argparse.Namespace) -> int:
    findings = check(get_settings())
    if not findings:
        print("schoolguide doctor: nothing missing for a real deployment.")
        return 0
    print(f"schoolguide doctor: {len(findings)} thing(s) missing for a real deployment:")
    for finding in findings:
        print(f"  - [{finding.area}] {finding.message}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``doctor`` to the ``schoolguide`` command."""
    doctor = subparsers.add_parser(
        "doctor", help="list what is missing for a real deployment (warnings only)"
    )
    doctor.set_defaults(func=_cmd_doctor)
