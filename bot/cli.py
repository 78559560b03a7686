"""The ``schoolguide`` command: the project's own tools (Rasa's own commands are run through ``rasa``).

Each area registers its sub-commands from its own module, so this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Modules that expose ``register(subparsers)``; each adds its own sub-commands.
COMMAND_MODULES = (
    "bot.nlp.cli",
    "bot.knowledge.cli",
    "bot.safeguarding.cli",
    "bot.runner",
    "bot.evaluation",
    "bot.spread",
    "bot.bench.cli",
    "bot.doctor",
    "bot.desk.cli",
    "bot.migrations.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schoolguide",
        description="SchoolGuide: cited social-media-policy answers, and safe handling of disclosures.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
