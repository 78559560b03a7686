"""``schoolguide disclosures ...``: the DSL's tools for the disclosure log and the hand-off worker."""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import signal
import sys
import threading
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.safeguarding.cases import (
    CaseNotFound,
    CaseView,
    InvalidStatusChange,
    acknowledge,
    change_status,
    export_csv,
    list_cases,
    read_case,
)
from bot.safeguarding.outbox import UNROUTED
from bot.safeguarding.store import STATUSES
from bot.settings import Settings

logger = logging.getLogger(__name__)


def _settings() -> Settings:
    # Read fresh: a CLI run is short, and tests change the environment between runs.
    return Settings.from_env()


def os_user() -> str:
    """Who is reading, as the operating system knows them: the effective uid's account name.

    Not ``$USER`` or ``--by``: anyone can type another name there. When root runs the command through sudo,
    the account that ran sudo is named too (sudo sets ``SUDO_USER``; only root could forge it).
    """
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid:{uid}"
    sudo_user = os.environ.get("SUDO_USER", "").strip()
    if uid == 0 and sudo_user and sudo_user != name:
        return f"{name} (sudo by {sudo_user})"[:200]
    return name


def _actor(args: argparse.Namespace) -> str:
    actor = os_user()
    if getattr(args, "by", None):
        # Accepted so that older scripts still run, but a typed name is never the identity.
        print(
            f"--by is ignored: the audit trail records your operating-system account ({actor})",
            file=sys.stderr,
        )
    return actor


def _print(text: str = "") -> None:
    """Print even malformed unicode from a disclosure instead of crashing on it."""
    encoding = sys.stdout.encoding or "utf-8"
    sys.stdout.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _cmd_list(args: argparse.Namespace) -> int:
    settings = _settings()
    cases = list_cases(
        settings,
        actor=_actor(args),
        status=args.status,
        school=args.school,
        with_text=args.json,
        via="cli list --json",
    )
    if args.json:
        # ensure_ascii keeps any odd unicode in the words printable and valid JSON.
        _print(json.dumps([case.as_json() for case in cases], indent=2))
        return 0
    if not cases:
        _print("No disclosures.")
        return 0
    _print(
        f"{'REFERENCE':<14} {'RECEIVED':<20} {'SCHOOL':<14} {'AUDIENCE':<8} {'RISK':<9} {'STATUS':<12} "
        "CATEGORIES"
    )
    for case in cases:
        _print(
            f"{case.reference:<14} {_when(case.created_at):<20} {case.school[:14]:<14} {case.audience:<8} "
            f"{case.risk:<9} {case.status:<12} {', '.join(case.categories)}"
        )
    return 0


def _note_origin(item: dict[str, Any]) -> str:
    """Where contact details came from: "(from contact_form via socketio, added 2026-12-07 20:41 UTC)";
    "spool replay" when they reached the database from the spool."""
    parts = [f"from {item.get('origin') or 'unknown source'} via {item.get('channel') or 'unknown channel'}"]
    if item.get("source") == "spool":
        parts.append("spool replay")
    return f"({', '.join(parts)}, added {_when(item.get('added_at'))})"


def _show(case: CaseView) -> None:
    _print(f"Reference:    {case.reference}")
    _print(f"Status:       {case.status}")
    if case.acknowledged_at:
        _print(f"Acknowledged: {_when(case.acknowledged_at)} by {case.acknowledged_by}")
    _print(f"School:       {case.school}")
    _print(f"From:         {case.audience} via {case.channel} (conversation {case.sender_id})")
    _print(f"Received:     {_when(case.created_at)} (recorded by {case.source})")
    _print(f"Risk:         {case.risk}")
    _print(f"Categories:   {', '.join(case.categories)}")
    _print()
    if case.text is None:
        _print(f"Words: cannot be shown: {case.text_error}")
    else:
        _print("Words (verbatim):")
        for line in (case.text or "(empty message)").splitlines() or [""]:
            _print(f"  {line}")
        _print()
        _print("Conversation before it:")
        for message in case.context or ():
            _print(f"  {message.get('who')}: {message.get('text')}")
        if not case.context:
            _print("  (none)")
    if case.contact is not None:
        _print()
        _print("Contact details given afterwards:")
        for item in case.contact:
            if item.get("text") is None:
                _print(f"  {_when(item.get('added_at'))}  cannot be shown: {item.get('error')}")
                continue
            lines = (item["text"] or "(empty message)").splitlines() or [""]
            _print(f"  {_when(item.get('added_at'))}  {lines[0]}")
            for line in lines[1:]:
                _print(f"  {'':<20}  {line}")
            _print(f"  {'':<20}  {_note_origin(item)}")
        if not case.contact:
            _print("  (none given)")
    _print()
    _print("Alerts:")
    for alert in case.alerts:
        if alert["channel"] == UNROUTED:
            state = (
                "routed once a DSL channel was configured (rows below)"
                if alert["status"] == "routed"
                else "waiting: no DSL e-mail address or webhook is configured"
            )
            _print(f"  {alert['kind']}: {state}")
            continue
        state = f"sent {_when(alert['sent_at'])}" if alert["status"] == "sent" else alert["status"]
        error = (
            f" - last error: {alert['last_error']}"
            if alert["last_error"] and alert["status"] != "sent"
            else ""
        )
        _print(
            f"  {alert['kind']} {alert['channel']} {alert['recipient']}: {state} "
            f"({alert['attempts']} attempt(s)){error}"
        )
    if not case.alerts:
        _print("  (none queued)")
    _print()
    _print("Audit trail:")
    for event in case.audit:
        _print(
            f"  {_when(event['at'])}  {event['action']:<15} {event['actor']}  {json.dumps(event['detail'])}"
        )


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        case = read_case(_settings(), args.reference, actor=_actor(args), via="cli show")
    except CaseNotFound as exc:
        print(str(exc), file=sys.stderr)
        return 1
    _show(case)
    return 0 if case.text is not None else 1


def _cmd_ack(args: argparse.Namespace) -> int:
    try:
        actor = _actor(args)
        old, new = acknowledge(_settings(), args.reference, actor=actor)
    except (CaseNotFound, InvalidStatusChange) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if old == new:
        _print(f"{args.reference.upper()} is already {old}; nothing changed.")
    else:
        _print(f"{args.reference.upper()}: {old} -> {new} (by {actor})")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        actor = _actor(args)
        old, new = change_status(_settings(), args.reference, args.new_status, actor=actor)
    except (CaseNotFound, InvalidStatusChange) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    _print(f"{args.reference.upper()}: {old} -> {new} (by {actor})")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    settings, actor = _settings(), _actor(args)
    if args.output:
        output = Path(args.output)
        # The export holds children's words: readable by its owner only.
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as stream:
            count = export_csv(
                settings,
                stream,
                actor=actor,
                destination=str(output.resolve()),
                status=args.status,
                school=args.school,
            )
        print(f"Exported {count} disclosure(s) to {output}", file=sys.stderr)
    else:
        count = export_csv(
            settings, sys.stdout, actor=actor, destination="stdout", status=args.status, school=args.school
        )
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from bot.safeguarding.service import replay_spool

    report = replay_spool(_settings())
    _print(
        f"Replayed {report.replayed}, already recorded {report.already_recorded}, "
        f"contact details attached {report.notes_attached}, still spooled {report.remaining}"
        + (
            f", contact details refused (not their conversation's session) {report.notes_refused}"
            if report.notes_refused
            else ""
        )
    )
    return 0 if report.remaining == 0 else 1


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from bot.safeguarding.reconcile import reconcile_from_tracker_store

    since = datetime.fromisoformat(args.since) if args.since else None
    report = reconcile_from_tracker_store(_settings(), since=since)
    _print(
        f"Disclosure messages in the tracker store: {report.found}; newly recorded: {report.recorded}; "
        f"already recorded: {report.already_recorded}"
    )
    return 0


def _cmd_deliver(args: argparse.Namespace) -> int:
    from bot.safeguarding.outbox import deliver_pending

    report = deliver_pending(_settings())
    _print(
        f"Sent {report.sent}, retrying {report.retrying}, failed {report.failed}, "
        f"cancelled {report.cancelled}, waiting for SMTP/webhook settings {report.waiting_for_settings}"
    )
    return 0 if report.failed == 0 else 1


def _cmd_verify_audit(args: argparse.Namespace) -> int:
    from bot.safeguarding.audit_chain import verify_chain
    from bot.safeguarding.store import get_engine

    verdict = verify_chain(get_engine(_settings().database_url))
    if verdict.ok:
        # The head hash is printed so a DSL can note it elsewhere: a later rebuilt chain would not match it.
        _print(f"OK: {verdict.rows} audit event(s), chain intact; head {verdict.head_hash}")
        return 0
    where = f"row id {verdict.bad_row_id}" if verdict.bad_row_id is not None else "the end of the trail"
    _print(f"TAMPERED: audit trail broken at {where}: {verdict.problem} ({verdict.rows} row(s) checked)")
    return 1


def _cmd_worker(args: argparse.Namespace) -> int:
    from bot.safeguarding.worker import run_forever, run_once

    settings = _settings()
    if args.once:
        report = run_once(settings)
        results = {
            name: asdict(result) if is_dataclass(result) else result
            for name, result in report.results.items()
        }
        _print(json.dumps({"results": results, "errors": report.errors}, default=str))
        return 0 if report.ok else 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run_forever(settings, stop)
    except KeyboardInterrupt:
        stop.set()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``disclosures`` and its actions to the ``schoolguide`` command."""
    parser = subparsers.add_parser(
        "disclosures",
        help="safeguarding disclosures: list, read, acknowledge, export; run the hand-off worker",
        description="Every reading (show, list --json, export) is written to the audit trail, under the "
        "operating-system account that ran the command.",
    )
    actions = parser.add_subparsers(dest="disclosures_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    # Who did it is the operating-system account running the command (os_user), never a typed name.
    listing = actions.add_parser("list", help="list disclosures (oldest first)")
    listing.add_argument("--json", action="store_true", help="JSON including the decrypted words (audited)")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--school")
    listing.add_argument("--by", help=argparse.SUPPRESS)
    listing.set_defaults(func=_cmd_list)

    show = actions.add_parser("show", help="show one disclosure with its words (audited)")
    show.add_argument("reference")
    show.add_argument("--by", help=argparse.SUPPRESS)
    show.set_defaults(func=_cmd_show)

    ack = actions.add_parser("ack", help="acknowledge a disclosure (stops escalation)")
    ack.add_argument("reference")
    ack.add_argument("--by", help=argparse.SUPPRESS)
    ack.set_defaults(func=_cmd_ack)

    status = actions.add_parser("status", help="move a disclosure to in_progress or closed")
    status.add_argument("reference")
    status.add_argument("new_status", choices=STATUSES[1:])
    status.add_argument("--by", help=argparse.SUPPRESS)
    status.set_defaults(func=_cmd_status)

    export = actions.add_parser("export", help="export disclosures with their words (audited)")
    export.add_argument("--csv", action="store_true", required=True, help="CSV (the only format)")
    export.add_argument("--output", help="file to write (mode 0600); default: standard output")
    export.add_argument("--status", choices=STATUSES)
    export.add_argument("--school")
    export.add_argument("--by", help=argparse.SUPPRESS)
    export.set_defaults(func=_cmd_export)

    verify = actions.add_parser(
        "verify-audit", help="check the audit trail's hash chain; exit 1 naming the first bad row"
    )
    verify.set_defaults(func=_cmd_verify_audit)

    replay = actions.add_parser("replay", help="move spooled disclosures into the database")
    replay.set_defaults(func=_cmd_replay)

    reconcile = actions.add_parser("reconcile", help="record disclosures the action server missed")
    reconcile.add_argument("--since", help="ISO date/time; default: the whole tracker store")
    reconcile.set_defaults(func=_cmd_reconcile)

    deliver = actions.add_parser("deliver", help="send due DSL alerts once")
    deliver.set_defaults(func=_cmd_deliver)

    worker = actions.add_parser(
        "worker", help="run the hand-off worker (spool, reconcile, alerts, escalation)"
    )
    worker.add_argument("--once", action="store_true", help="one pass, then exit")
    worker.set_defaults(func=_cmd_worker)
