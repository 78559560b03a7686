"""``schoolguide knowledge check`` and ``schoolguide knowledge coverage``."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from bot.knowledge import coverage as coverage_matrix
from bot.knowledge.loader import check_knowledge, read_knowledge
from bot.knowledge.problems import Problem


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``knowledge`` command and its actions to the ``schoolguide`` parser."""
    parser = subparsers.add_parser(
        "knowledge",
        help="check the clause base, or show which topics each policy covers",
        description="Tools for the clause base in knowledge/ (see knowledge/README.md).",
    )
    parser.set_defaults(func=lambda _args: _print_help(parser))
    actions = parser.add_subparsers(dest="knowledge_action", metavar="ACTION")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--knowledge-dir",
        type=Path,
        default=None,
        help="the clause base folder (default: SCHOOLGUIDE_KNOWLEDGE_DIR, else knowledge/)",
    )

    check = actions.add_parser(
        "check",
        parents=[common],
        help="validate every file; exit 1 if anything is wrong",
        description="Validate the clause base: structure, verbatim quotes, citations, coverage of every "
        "topic and the readability of pupil texts. Exits 1 if any problem is found.",
    )
    check.set_defaults(func=run_check)

    cover = actions.add_parser(
        "coverage",
        parents=[common],
        help="show the topic x school matrix (where each policy is silent)",
        description="Show, topic by topic, which schools' policies answer it and which are silent.",
    )
    cover.add_argument("--format", choices=("text", "csv", "markdown"), default="text", help="output format")
    cover.set_defaults(func=run_coverage)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_check(args: argparse.Namespace) -> int:
    """Print problems grouped by file and a one-line summary; 0 when clean, 1 otherwise."""
    kb, problems = check_knowledge(args.knowledge_dir)
    if not problems:
        clauses = sum(len(items) for items in kb.clauses.values())
        answers = sum(len(entries) for entries in kb.answers.values())
        print(
            f"Knowledge OK: {len(kb.slugs)} schools, {len(kb.topics)} topics, {clauses} clauses, "
            f"{answers} answers; no problems."
        )
        return 0
    by_file: dict[str, list[Problem]] = {}
    for problem in problems:
        by_file.setdefault(problem.file, []).append(problem)
    for file in sorted(by_file, key=_file_order):
        print(file)
        for problem in by_file[file]:
            print(f"  {problem.field}: {problem.message}" if problem.field else f"  {problem.message}")
        print()
    print(_summary(problems, len(by_file)))
    return 1


def _file_order(file: str) -> tuple[int, str]:
    # Shared files (topics.yml, helplines.yml, ...) first, then school by school.
    return (file.count("/"), file)


def _summary(problems: list[Problem], files: int) -> str:
    per_school = Counter(problem.school() or "shared files" for problem in problems)
    counts = ", ".join(f"{school} {count}" for school, count in sorted(per_school.items()))
    noun = "problem" if len(problems) == 1 else "problems"
    return f"{len(problems)} {noun} in {files} file{'s' if files != 1 else ''} ({counts})."


def run_coverage(args: argparse.Namespace) -> int:
    """Print the topic x school coverage matrix; 1 only if the clause base cannot be found."""
    kb, problems = read_knowledge(args.knowledge_dir)
    if not kb.root.is_dir():
        print(f"{kb.root}: knowledge directory not found", file=sys.stderr)
        return 1
    if problems:
        print(
            f"note: {len(problems)} structural problems (run 'schoolguide knowledge check'); "
            "entries that failed to load show as missing.",
            file=sys.stderr,
        )
    matrix = coverage_matrix.coverage(kb)
    if args.format == "csv":
        print(coverage_matrix.render_csv(matrix))
    elif args.format == "markdown":
        print(coverage_matrix.render_markdown(matrix, _marks()))
    else:
        print(coverage_matrix.render_text(matrix, _marks()))
    return 0


def _marks() -> dict[str, str]:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "".join(coverage_matrix.UNICODE_MARKS.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return coverage_matrix.ASCII_MARKS
    return coverage_matrix.UNICODE_MARKS
