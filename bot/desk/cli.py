"""``schoolguide desk ...``: add, list, disable and remove desk accounts; serve the desk.

Account changes made here are audited as the operating-system account that ran the command (as the
``disclosures`` commands' reads are), prefixed ``cli:``.
"""

from __future__ import annotations

import argparse
import sys

from bot.settings import Settings


def _settings() -> Settings:
    return Settings.from_env()


def _actor() -> str:
    from bot.safeguarding.cli import os_user

    return f"cli:{os_user()}"


def _cmd_add_user(args: argparse.Namespace) -> int:
    from bot.desk.accounts import add_user, enrolment_link

    settings = _settings()
    try:
        user, token = add_user(settings, args.email, role=args.role, school=args.school, actor=_actor())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = f" at {user.school}" if user.school else ""
    print(
        f"Added {user.email} as {user.role}{where}. Send them this one-time enrolment link (valid 72 hours):"
    )
    print(enrolment_link(settings, token))
    return 0


def _cmd_list_users(args: argparse.Namespace) -> int:
    from bot.desk.accounts import list_users

    users = list_users(_settings())
    if not users:
        print("No desk accounts yet: add one with `schoolguide desk add-user EMAIL --role ROLE`.")
        return 0
    for user in users:
        state = "disabled" if user.disabled else "enrolled" if user.enrolled else "not enrolled yet"
        school = user.school or ("every school" if user.role == "trust-lead" else "-")
        print(f"{user.email:<40} {user.role:<10} {school:<16} {state}")
    return 0


def _change(args: argparse.Namespace, what: str) -> int:
    from bot.desk import accounts

    try:
        getattr(accounts, f"{what}_user")(_settings(), args.email, actor=_actor())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.email}: {'disabled (signed out everywhere)' if what == 'disable' else 'removed'}.")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from bot.desk.web import serve  # imported here: only this command needs the web stack

    serve(_settings())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``desk`` and its actions to the ``schoolguide`` command."""
    from bot.desk.accounts import ROLES

    parser = subparsers.add_parser("desk", help="the DSL's desk: accounts, and the web server")
    actions = parser.add_subparsers(dest="desk_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    add = actions.add_parser("add-user", help="add an account and print its one-time enrolment link")
    add.add_argument("email")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--school", help="the school's slug (needed for dsl and deputy)")
    add.set_defaults(func=_cmd_add_user)

    actions.add_parser("list-users", help="list the accounts").set_defaults(func=_cmd_list_users)

    disable = actions.add_parser("disable-user", help="stop an account signing in and end its sessions")
    disable.add_argument("email")
    disable.set_defaults(func=lambda args: _change(args, "disable"))

    remove = actions.add_parser("remove-user", help="delete an account (the audit trail keeps its address)")
    remove.add_argument("email")
    remove.set_defaults(func=lambda args: _change(args, "remove"))

    serve = actions.add_parser("serve", help="run the desk's web server (SCHOOLGUIDE_DESK_HOST/_PORT)")
    serve.set_defaults(func=_cmd_serve)
