"""What the loader and the checks report: a problem names the file, the field and what is wrong."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong, e.g. ``knowledge/lunsford/answers.yml: answers.minimum-age.pupil: missing``."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        if self.field:
            return f"{self.file}: {self.field}: {self.message}"
        return f"{self.file}: {self.message}"

    def school(self) -> str | None:
        """The school slug this problem belongs to, or None for the shared files (topics.yml, ...)."""
        parts = self.file.split("/")  # "<root>/<slug>/<file>" for a school's files
        return parts[1] if len(parts) == 3 else None

    def covers(self, other: Problem) -> bool:
        """True when ``other`` is about the same field or a field inside (or around) this one."""
        if self.file != other.file:
            return False
        if not self.field or not other.field:
            return True
        return _within(other.field, self.field) or _within(self.field, other.field)


def _within(field: str, outer: str) -> bool:
    return field == outer or field.startswith(outer + ".") or field.startswith(outer + "[")


class KnowledgeError(Exception):
    """The clause base is malformed; ``problems`` lists every structural problem found, file by file."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))
