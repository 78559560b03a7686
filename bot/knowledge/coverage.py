"""The topic x school coverage matrix: where each policy answers a topic and where it is silent."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from bot.knowledge.base import KnowledgeBase
from bot.knowledge.models import Topic

ANSWERED = "answered"
NOT_COVERED = "not covered"
MISSING = "missing"

# Terminal marks, with an ASCII fallback for consoles that cannot print them.
UNICODE_MARKS = {
    ANSWERED: "\u2713",
    NOT_COVERED: "\u00b7",
    MISSING: "?",
    "variants": "+",
    "ellipsis": "\u2026",
}
ASCII_MARKS = {ANSWERED: "Y", NOT_COVERED: ".", MISSING: "?", "variants": "+", "ellipsis": "..."}

TITLE_WIDTH = 40


@dataclass(frozen=True)
class Cell:
    status: str
    variants: int = 0


@dataclass(frozen=True)
class Coverage:
    """For every topic (in topics.yml order), each school's status."""

    schools: tuple[str, ...]
    rows: tuple[tuple[Topic, tuple[Cell, ...]], ...]

    def answered(self, school: str) -> int:
        column = self.schools.index(school)
        return sum(1 for _, cells in self.rows if cells[column].status == ANSWERED)


def coverage(kb: KnowledgeBase) -> Coverage:
    """The coverage matrix of ``kb`` (a school whose answers failed to load shows as missing)."""
    rows = []
    for topic in kb.topics.values():
        cells = []
        for slug in kb.slugs:
            entry = kb.answers.get(slug, {}).get(topic.id)
            if entry is None:
                cells.append(Cell(MISSING))
            elif entry.covered:
                cells.append(Cell(ANSWERED, len(entry.variants)))
            else:
                cells.append(Cell(NOT_COVERED))
        rows.append((topic, tuple(cells)))
    return Coverage(schools=tuple(kb.slugs), rows=tuple(rows))


def _mark(cell: Cell, marks: dict[str, str]) -> str:
    return marks[cell.status] + (marks["variants"] if cell.variants else "")


def _title(topic: Topic, width: int, marks: dict[str, str]) -> str:
    if len(topic.title) <= width:
        return topic.title
    ellipsis = marks["ellipsis"]
    return topic.title[: width - len(ellipsis)].rstrip() + ellipsis


def legend(marks: dict[str, str] = UNICODE_MARKS) -> str:
    return (
        f"Legend: {marks[ANSWERED]} answered (cites the policy)   {marks[NOT_COVERED]} not covered (policy "
        f"silent)   {marks[MISSING]} no entry yet   {marks['variants']} has variants"
    )


def render_text(matrix: Coverage, marks: dict[str, str] = UNICODE_MARKS) -> str:
    """A fixed-width table for a terminal (about 100 columns for five schools)."""
    total = len(matrix.rows)
    title_width = min(TITLE_WIDTH, max([len(topic.title) for topic, _ in matrix.rows] + [len("Answered")]))
    widths = [max(len(slug), len(f"{total}/{total}")) for slug in matrix.schools]
    columns = list(zip(matrix.schools, widths, strict=True))
    header = "Topic".ljust(title_width) + "".join(f"  {slug:^{w}}" for slug, w in columns)
    rule = "-" * len(header)
    lines = [f"Coverage of {total} topics in {len(matrix.schools)} policies", legend(marks), "", header, rule]
    for topic, cells in matrix.rows:
        marks_row = "".join(f"  {_mark(cell, marks):^{w}}" for cell, w in zip(cells, widths, strict=True))
        lines.append(_title(topic, title_width, marks).ljust(title_width) + marks_row)
    lines.append(rule)
    totals = "".join(f"  {f'{matrix.answered(slug)}/{total}':^{w}}" for slug, w in columns)
    lines.append("Answered".ljust(title_width) + totals)
    return "\n".join(line.rstrip() for line in lines)


def render_csv(matrix: Coverage) -> str:
    """One row per topic: id, title, then each school's status (answered / not covered / missing)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["topic", "title", *matrix.schools])
    for topic, cells in matrix.rows:
        writer.writerow([topic.id, topic.title, *(cell.status for cell in cells)])
    writer.writerow(["", "answered", *(matrix.answered(slug) for slug in matrix.schools)])
    return out.getvalue().rstrip("\n")


def render_markdown(matrix: Coverage, marks: dict[str, str] = UNICODE_MARKS) -> str:
    """A GitHub-flavoured markdown table with a legend."""
    total = len(matrix.rows)
    lines = [
        f"| Topic | {' | '.join(matrix.schools)} |",
        f"|---|{'|'.join(':-:' for _ in matrix.schools)}|",
    ]
    for topic, cells in matrix.rows:
        lines.append(f"| {topic.title} | {' | '.join(_mark(cell, marks) for cell in cells)} |")
    answered = " | ".join(f"{matrix.answered(slug)}/{total}" for slug in matrix.schools)
    lines.append(f"| **Answered** | {answered} |")
    return "\n".join(lines) + "\n\n" + legend(marks)
