"""Senders for DSL alerts: e-mail over SMTP, and Slack/Teams incoming webhooks.

An alert says that a disclosure exists and how urgent it is, and links to the case; like CPOMS it never
carries the person's words, which stay encrypted in the database and are only shown (and audited) on reading.
An assignment alert (a case handed to a colleague on the desk) says who assigned it to whom, never the words
or the case's action notes.

The webhook payload is ``{"text": "..."}``: Slack incoming webhooks and Microsoft Teams' Office 365
connector ("Incoming Webhook") both accept it as a simple message. Teams' newer Power Automate "Workflows"
webhooks expect an Adaptive Card instead; point SCHOOLGUIDE_ALERT_WEBHOOK_URL at a Workflow that posts the
``text`` field.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.safeguarding.categories import CATEGORY_LABELS
from bot.settings import Settings

WEBHOOK_RECIPIENT = "alert_webhook"
SMTP_TIMEOUT_SECONDS = 15
WEBHOOK_TIMEOUT_SECONDS = 10


class DeliveryError(RuntimeError):
    """The alert did not reach the recipient; the outbox will try again later."""


@dataclass(frozen=True)
class Alert:
    """What a DSL is told about a disclosure: everything except the words themselves."""

    kind: str  # "alert" | "escalation" | "contact_added" | "assigned"
    reference: str
    school: str
    audience: str
    channel: str
    categories: tuple[str, ...]
    risk: str
    created_at: datetime
    link: str
    minutes_unacknowledged: int | None = None
    added_at: datetime | None = None  # contact_added: when the contact details were added
    assigned_to: str | None = None  # assigned: the colleague the case was handed to
    assigned_by: str | None = None  # assigned: who handed it over (None if the assignment is not found)

    def _when(self, moment: datetime) -> str:
        """UK local time first (DSLs work in it), with UTC to be unambiguous."""
        utc = f"{moment:%H:%M} UTC"
        try:
            local = moment.astimezone(ZoneInfo("Europe/London"))
        except (ZoneInfoNotFoundError, ValueError):
            return f"{moment:%Y-%m-%d} {utc}"
        return f"{local:%Y-%m-%d %H:%M %Z} ({utc})"

    @property
    def category_labels(self) -> str:
        return ", ".join(CATEGORY_LABELS.get(c, c.replace("_", " ")) for c in self.categories) or "Not known"

    @property
    def received(self) -> str:
        return self._when(self.created_at)

    @property
    def added(self) -> str:
        return self._when(self.added_at or self.created_at)

    @property
    def subject(self) -> str:
        if self.kind == "escalation":
            return (
                f"[SchoolGuide] NOT ACKNOWLEDGED after {self.minutes_unacknowledged} minutes: "
                f"safeguarding disclosure {self.reference} ({self.school})"
            )
        if self.kind == "contact_added":
            return (
                f"[SchoolGuide] Contact details added to safeguarding disclosure {self.reference} "
                f"({self.school})"
            )
        risk = self.risk.upper()
        if self.kind == "assigned":
            return (
                f"[SchoolGuide] Assigned to you: {risk} risk safeguarding case {self.reference} "
                f"({self.school})"
            )
        return f"[SchoolGuide] {risk} risk: safeguarding disclosure {self.reference} ({self.school})"

    def body(self) -> str:
        if self.kind == "escalation":
            opening = (
                "This safeguarding disclosure has not been acknowledged "
                f"{self.minutes_unacknowledged} minutes after it was made. "
                "You are receiving it as a deputy Designated Safeguarding Lead."
            )
        elif self.kind == "contact_added":
            opening = (
                "The person who made this safeguarding disclosure has added contact details to it, so that "
                "you can reach them."
            )
        elif self.kind == "assigned":
            opening = (
                f"{self.assigned_by or 'A colleague'} assigned this safeguarding case to you "
                f"({self.assigned_to}) on the DSL desk."
            )
        else:
            opening = "A safeguarding disclosure was made to SchoolGuide and needs your attention as DSL."
        added = [f"Details added: {self.added}"] if self.kind == "contact_added" else []
        if self.kind == "assigned":
            added = [f"Assigned to: {self.assigned_to}", f"Assigned by: {self.assigned_by or 'not known'}"]
        withheld = {
            "contact_added": "contact details are",
            "assigned": "person's words and the case notes are",
        }.get(self.kind, "person's words are")
        return "\n".join(
            [
                opening,
                "",
                f"Reference:  {self.reference}",
                f"School:     {self.school}",
                f"Risk:       {self.risk.upper()}",
                f"Categories: {self.category_labels}",
                f"From:       {self.audience} (via {self.channel})",
                f"Received:   {self.received}",
                *added,
                "",
                f"Open the case: {self.link}",
                "",
                f"The {withheld} not included in this message. Read them in the case record (every",
                f"reading is logged), or run: schoolguide disclosures show {self.reference}",
                f"Acknowledge with: schoolguide disclosures ack {self.reference}",
                "",
                "If a child is in immediate danger, call 999.",
            ]
        )


class Notifier(Protocol):
    """Sends one alert to one recipient, raising DeliveryError when it could not."""

    channel: str

    @property
    def configured(self) -> bool: ...

    def send(self, recipient: str, alert: Alert) -> None: ...


@dataclass(frozen=True)
class EmailNotifier:
    """Plain-text e-mail through ``settings.smtp_host``, with optional STARTTLS and login."""

    settings: Settings
    channel: str = "email"

    @property
    def configured(self) -> bool:
        return bool(self.settings.smtp_host)

    def message(self, recipient: str, alert: Alert) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.alert_from
        message["To"] = recipient
        message["Subject"] = alert.subject
        message["Date"] = format_datetime(datetime.now(timezone.utc))
        message["Message-ID"] = make_msgid(domain="schoolguide")
        if alert.risk == "immediate" or alert.kind == "escalation":
            message["X-Priority"] = "1"
            message["Importance"] = "high"
        message.set_content(alert.body())
        return message

    def send(self, recipient: str, alert: Alert) -> None:
        settings = self.settings
        if not settings.smtp_host:
            raise DeliveryError("SMTP is not configured (SCHOOLGUIDE_SMTP_HOST)")
        try:
            with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
                smtp.ehlo()
                if settings.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if settings.smtp_username:
                    smtp.login(settings.smtp_username, settings.smtp_password or "")
                smtp.send_message(self.message(recipient, alert), settings.alert_from, [recipient])
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {exc}") from exc


def webhook_payload(alert: Alert) -> dict[str, str]:
    """The JSON body posted to Slack or Teams (see the module docstring)."""
    if alert.kind == "escalation":
        headline = (
            f"Safeguarding disclosure {alert.reference} NOT ACKNOWLEDGED "
            f"after {alert.minutes_unacknowledged} minutes"
        )
    elif alert.kind == "contact_added":
        headline = f"Contact details added to safeguarding disclosure {alert.reference}"
    else:
        headline = f"Safeguarding disclosure {alert.reference}"
    lines = [
        f"*{headline}* (risk: {alert.risk.upper()})",
        f"School: {alert.school}",
        f"Categories: {alert.category_labels}",
        f"From: {alert.audience} (via {alert.channel}) at {alert.received}",
        f"Open the case: {alert.link}",
        (
            f"The contact details (added {alert.added}) are only in the case record."
            if alert.kind == "contact_added"
            else "The person's words are only in the case record."
        ),
    ]
    return {"text": "\n".join(lines)}


@dataclass(frozen=True)
class WebhookNotifier:
    """POSTs the alert to ``settings.alert_webhook_url`` (a Slack or Teams incoming webhook)."""

    settings: Settings
    channel: str = "webhook"

    @property
    def configured(self) -> bool:
        return bool(self.settings.alert_webhook_url)

    def send(self, recipient: str, alert: Alert) -> None:
        url = self.settings.alert_webhook_url
        if not url:
            raise DeliveryError("the alert webhook is not configured (SCHOOLGUIDE_ALERT_WEBHOOK_URL)")
        request = urllib.request.Request(
            url,
            data=json.dumps(webhook_payload(alert)).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        # Errors name the status or the network failure, never the URL: it is a secret.
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"webhook answered HTTP {exc.code}") from exc
        except (OSError, ValueError) as exc:
            raise DeliveryError(f"webhook unreachable: {getattr(exc, 'reason', exc)}") from exc
        if not 200 <= status < 300:
            raise DeliveryError(f"webhook answered HTTP {status}")


def notifiers_for(settings: Settings) -> dict[str, Notifier]:
    """The notifier for each outbox channel."""
    return {"email": EmailNotifier(settings), "webhook": WebhookNotifier(settings)}
