"""Measure disclosure detection on the held-out sets (tests/heldout/), for any parser.

``evaluate_detection(parse, disclosures, questions)`` takes a function from text to predicted intent name, so
the same numbers come out for the rules layer alone (:func:`rules_parse`) and for the full trained model
(``make eval`` passes a parser backed by the Rasa agent). The gate is recall 1.0 on disclosures and at most
10% of ordinary sensitive questions escalated.

Run ``python -m bot.safeguarding.evaluation`` for the rules-layer report.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.safeguarding.detector import CATEGORIES, assess
from bot.settings import AUDIENCES, PROJECT_ROOT

HELDOUT_DIR = PROJECT_ROOT / "tests" / "heldout"
DISCLOSE_INTENT = "disclose"
MIN_RECALL = 1.0
MAX_FALSE_ESCALATION = 0.10


@dataclass(frozen=True)
class HeldOutDisclosure:
    """A message that must be escalated."""

    text: str
    audience: str
    categories: tuple[str, ...]
    immediate: bool


@dataclass(frozen=True)
class HeldOutQuestion:
    """An ordinary policy question that mentions sensitive words and must not be escalated."""

    text: str
    audience: str


@dataclass(frozen=True)
class DetectionReport:
    """Recall on disclosures and false escalations on sensitive questions."""

    recall: float
    false_escalation_rate: float
    misses: tuple[Any, ...]
    false_escalations: tuple[Any, ...]
    disclosures: int = 0
    questions: int = 0

    def passes(
        self, min_recall: float = MIN_RECALL, max_false_escalation: float = MAX_FALSE_ESCALATION
    ) -> bool:
        return self.recall >= min_recall and self.false_escalation_rate <= max_false_escalation

    def summary(self) -> str:
        lines = [
            f"disclosure recall: {self.recall:.3f} "
            f"({self.disclosures - len(self.misses)}/{self.disclosures})",
            f"false escalations: {self.false_escalation_rate:.3f} "
            f"({len(self.false_escalations)}/{self.questions})",
        ]
        lines += [f"  MISSED: {_text(item)}" for item in self.misses]
        lines += [f"  ESCALATED: {_text(item)}" for item in self.false_escalations]
        return "\n".join(lines)


@dataclass(frozen=True)
class RulesDetailReport:
    """What only the rules layer can say: categories and immediacy, on the disclosures it detected."""

    category_agreement: float  # share of detected disclosures with at least one expected category
    immediate_recall: float  # share of immediate-danger disclosures rated "immediate"
    category_mismatches: tuple[tuple[HeldOutDisclosure, tuple[str, ...]], ...]
    immediate_misses: tuple[HeldOutDisclosure, ...]


def _text(item: Any) -> str:
    return item["text"] if isinstance(item, Mapping) else item.text


def load_heldout(directory: Path | None = None) -> tuple[list[HeldOutDisclosure], list[HeldOutQuestion]]:
    """The held-out disclosures and sensitive questions, validated."""
    directory = Path(directory or HELDOUT_DIR)
    disclosures = [_disclosure(entry) for entry in yaml_list(directory / "disclosures.yml")]
    questions = [_question(entry) for entry in yaml_list(directory / "sensitive_questions.yml")]
    return disclosures, questions


def sealed_rounds(directory: Path | None = None) -> list[tuple[str, Path]]:
    """``[(round name, folder)]`` under ``<held-out>/sealed/``, oldest first (round1, round2, ...).

    Each round was written without sight of the rules, the training data or the earlier rounds, and is never
    tuned against: the newest round's first score is the honest measure of recall on new wording.
    """
    root = Path(directory or HELDOUT_DIR) / "sealed"
    rounds = [p for p in root.glob("round*") if (p / "disclosures.yml").is_file()] if root.is_dir() else []
    return [(p.name, p) for p in sorted(rounds, key=lambda p: int(re.sub(r"\D", "", p.name) or 0))]


def yaml_list(path: Path) -> list[dict[str, Any]]:
    """The entries of a held-out YAML file (also bot/dialogue_eval.py's sets)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    # Either a plain list, or a mapping with one list under it (``disclosures:`` / ``questions:``).
    if isinstance(data, dict) and len(data) == 1:
        data = next(iter(data.values())) or []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a YAML list")
    return data


def _disclosure(entry: dict[str, Any]) -> HeldOutDisclosure:
    categories = tuple(entry.get("categories") or ())
    unknown = [c for c in categories if c not in CATEGORIES]
    if not entry.get("text") or not categories or unknown:
        raise ValueError(f"held-out disclosure needs text and categories from {CATEGORIES}: {entry!r}")
    return HeldOutDisclosure(str(entry["text"]), _audience(entry), categories, bool(entry.get("immediate")))


def _question(entry: dict[str, Any]) -> HeldOutQuestion:
    if not entry.get("text"):
        raise ValueError(f"held-out question needs text: {entry!r}")
    return HeldOutQuestion(str(entry["text"]), _audience(entry))


def _audience(entry: dict[str, Any]) -> str:
    audience = entry.get("audience")
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}: {entry!r}")
    return audience


def evaluate_detection(
    parse: Callable[[str], str],
    disclosures: Sequence[Any],
    questions: Sequence[Any],
    intent: str = DISCLOSE_INTENT,
) -> DetectionReport:
    """Run ``parse`` (text -> intent name) over both sets; items have ``text`` (attribute or key)."""
    misses = tuple(item for item in disclosures if parse(_text(item)) != intent)
    false = tuple(item for item in questions if parse(_text(item)) == intent)
    recall = 1 - len(misses) / len(disclosures) if disclosures else 1.0
    rate = len(false) / len(questions) if questions else 0.0
    return DetectionReport(recall, rate, misses, false, len(disclosures), len(questions))


def rules_parse(text: str) -> str:
    """The rules layer as a parser: "disclose" when :func:`assess` fires, else "other"."""
    return DISCLOSE_INTENT if assess(text).is_disclosure else "other"


def evaluate_rules_detail(disclosures: Iterable[HeldOutDisclosure]) -> RulesDetailReport:
    """Category agreement and immediacy recall of the rules layer on the disclosures it detects."""
    detected = mismatched = immediate = immediate_hit = 0
    mismatches: list[tuple[HeldOutDisclosure, tuple[str, ...]]] = []
    immediate_misses: list[HeldOutDisclosure] = []
    for item in disclosures:
        assessment = assess(item.text)
        if item.immediate:
            immediate += 1
            if assessment.risk == "immediate":
                immediate_hit += 1
            else:
                immediate_misses.append(item)
        if not assessment.is_disclosure:
            continue
        detected += 1
        if not set(item.categories) & set(assessment.categories):
            mismatched += 1
            mismatches.append((item, assessment.categories))
    return RulesDetailReport(
        category_agreement=1 - mismatched / detected if detected else 1.0,
        immediate_recall=immediate_hit / immediate if immediate else 1.0,
        category_mismatches=tuple(mismatches),
        immediate_misses=tuple(immediate_misses),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Print the rules-layer report; exit 1 when it misses the gate."""
    disclosures, questions = load_heldout()
    report = evaluate_detection(rules_parse, disclosures, questions)
    detail = evaluate_rules_detail(disclosures)
    print("Rules layer on the held-out sets")
    print(report.summary())
    print(f"category agreement: {detail.category_agreement:.3f}")
    for item, got in detail.category_mismatches:
        print(f"  CATEGORY: {item.text} expected {list(item.categories)} got {list(got)}")
    print(f"immediate-danger recall: {detail.immediate_recall:.3f}")
    for item in detail.immediate_misses:
        print(f"  NOT IMMEDIATE: {item.text}")
    return 0 if report.passes() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
