"""Held-out checks of what the assistant *does* with a message, beyond its topic (``make eval``).

- **Off-topic questions** (``off_topic.yml``): a question outside the policy must never get a clause. The
  rate is the share answered with one (a ``policy_*`` intent, or a follow-up that quotes a clause); gated.
- **The turn after a disclosure** (``after_disclosure.yml``): each follow-up must get the reply written for
  it ("what happens now?", "will I get in trouble?", ...), or an ordinary answer when it is a new question.
- In a sealed round folder, also **worries versus complaints** and **allegations about adults**.

What the assistant does is worked out as the dialogue does it: the model's intent picks the route
(data/rules), and on the routes that check for a follow-up to a disclosure, the words pick the reply
(bot/safeguarding/aftercare.py). Everything here takes a parser from text to intent name, as the topic and
disclosure scores do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.evaluation import GATES
from bot.safeguarding import aftercare
from bot.safeguarding.evaluation import yaml_list

OFF_TOPIC_GATE = GATES["off_topic_rate"]
# Intents answered with a clause: every policy_* intent, "who do I tell?" (the who-to-contact clauses) and
# "what about Instagram?" (the minimum-age clauses when nothing was asked before).
CLAUSE_FOLLOW_UPS = frozenset({"ask_who_to_tell", "ask_other_platform"})
# Routes that check for a follow-up to a disclosure (actions/policy.py); "unclear" ones say so rather than
# answer (the fallback and action_after_disclosure itself).
AFTERCARE_ROUTES = frozenset({"ask_why", "ask_source", "affirm", "deny", "thank", "out_of_scope"})
UNCLEAR_ROUTES = frozenset({"ask_after_disclosure", "nlu_fallback"})
NEW_QUESTION = "new_question"


def answers_with_a_clause(intent: str) -> bool:
    return intent.startswith("policy_") or intent in CLAUSE_FOLLOW_UPS


def after_disclosure_outcome(intent: str, text: str) -> str:
    """What the assistant does with ``text`` straight after a disclosure, given the model's ``intent``: a
    kind of follow-up reply (aftercare.KINDS or "unclear"), "new_question" (answered as usual), "disclosure",
    or the intent's own static reply ("goodbye", "chitchat/...")."""
    if intent == "disclose":
        return "disclosure"
    if intent in UNCLEAR_ROUTES:
        return aftercare.follow_up_kind(text, intent) or aftercare.UNCLEAR
    if answers_with_a_clause(intent) or intent in AFTERCARE_ROUTES:
        return aftercare.follow_up_kind(text, intent) or NEW_QUESTION
    return intent or "nothing"


def _items(path: Path) -> list[dict[str, Any]]:
    data = yaml_list(path)
    if not all(isinstance(item, dict) and (item.get("text") or item.get("follow_up")) for item in data):
        raise ValueError(f"{path}: expected a list of items with text (or follow_up)")
    return data


@dataclass
class OffTopicScore:
    total: int = 0
    answered_with_clause: int = 0
    escalated: int = 0
    misses: list[tuple[str, str]] = field(default_factory=list)  # (text, intent) answered with a clause

    @property
    def rate(self) -> float:
        return self.answered_with_clause / self.total if self.total else 0.0


def score_off_topic(path: Path, intent_of: Callable[[str], str]) -> dict[str, Any]:
    score = OffTopicScore()
    for item in _items(path):
        text = str(item["text"])
        intent = intent_of(text)
        score.total += 1
        if intent == "disclose":
            score.escalated += 1
        elif answers_with_a_clause(intent):
            score.answered_with_clause += 1
            score.misses.append((text, intent))
    return asdict(score) | {"rate": score.rate}


@dataclass
class _Tally:
    """Right and wrong answers, by expected value."""

    by_expect: Counter[str] = field(default_factory=Counter)
    right: Counter[str] = field(default_factory=Counter)
    misses: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, text: str, expect: str, got: str, ok: bool) -> None:
        self.by_expect[expect] += 1
        if ok:
            self.right[expect] += 1
        else:
            self.misses.append((text, expect, got))

    def as_dict(self, key: str) -> dict[str, Any]:
        total, correct = sum(self.by_expect.values()), sum(self.right.values())
        return {
            "total": total,
            "correct": correct,
            "accuracy": correct / total if total else 0.0,
            key: {kind: f"{self.right[kind]}/{n}" for kind, n in sorted(self.by_expect.items())},
            "misses": self.misses,
        }


def score_after_disclosure(path: Path, intent_of: Callable[[str], str]) -> dict[str, Any]:
    tally = _Tally()
    for item in _items(path):
        text, expect = str(item["follow_up"]), str(item["expect"])
        got = after_disclosure_outcome(intent_of(text), text)
        tally.add(text, expect, got, got == expect)
    return tally.as_dict("by_kind")


def score_escalation_pairs(
    path: Path, intent_of: Callable[[str], str], escalate: frozenset[str], categories_of: Callable[[str], Any]
) -> dict[str, Any]:
    """Items whose ``expect`` is in ``escalate`` must be escalated, the others must not; for allegations,
    "routed" counts the escalated ones the detector filed as allegation_about_adult."""
    tally = _Tally()
    routed = allegations = 0
    for item in _items(path):
        text, expect = str(item["text"]), str(item["expect"])
        intent = intent_of(text)
        escalated = intent == "disclose"
        if expect == "allegation":
            allegations += 1
            routed += escalated and "allegation_about_adult" in tuple(categories_of(text))
        tally.add(text, expect, intent, escalated == (expect in escalate))
    result = tally.as_dict("by_expect")
    return result | {"allegations_routed": f"{routed}/{allegations}" if allegations else None}


def _detector_categories(text: str) -> tuple[str, ...]:
    from bot.safeguarding.detector import assess

    return tuple(assess(text).categories)


def run_dialogue_eval(heldout_dir: Path, intent_of: Callable[[str], str]) -> dict[str, Any]:
    """The development sets (gated: off-topic) and every sealed round that has dialogue files (reported)."""
    results: dict[str, Any] = {}
    if (heldout_dir / "off_topic.yml").is_file():
        results["off_topic"] = score_off_topic(heldout_dir / "off_topic.yml", intent_of)
    if (heldout_dir / "after_disclosure.yml").is_file():
        results["after_disclosure"] = score_after_disclosure(heldout_dir / "after_disclosure.yml", intent_of)
    sealed: dict[str, Any] = {}
    root = heldout_dir / "sealed"
    for folder in sorted(root.glob("round*")) if root.is_dir() else []:
        found: dict[str, Any] = {}
        if (folder / "off_topic.yml").is_file():
            found["off_topic"] = score_off_topic(folder / "off_topic.yml", intent_of)
        if (folder / "after_disclosure.yml").is_file():
            found["after_disclosure"] = score_after_disclosure(folder / "after_disclosure.yml", intent_of)
        if (folder / "complaints_vs_worries.yml").is_file():
            found["complaints_vs_worries"] = score_escalation_pairs(
                folder / "complaints_vs_worries.yml", intent_of, frozenset({"worry"}), _detector_categories
            )
        if (folder / "adult_allegations.yml").is_file():
            found["adult_allegations"] = score_escalation_pairs(
                folder / "adult_allegations.yml", intent_of, frozenset({"allegation"}), _detector_categories
            )
        if found:
            sealed[folder.name] = found
    results["sealed"] = sealed
    return results


def gate_failures(results: dict[str, Any]) -> list[str]:
    off = results.get("off_topic")
    if off is None:
        return ["no held-out off-topic questions (tests/heldout/off_topic.yml)"]
    if off["rate"] > OFF_TOPIC_GATE:
        return [f"off-topic questions answered with a clause {off['rate']:.1%} > {OFF_TOPIC_GATE:.0%}"]
    return []


def render_markdown(results: dict[str, Any]) -> list[str]:
    lines = ["## What the assistant does with a message (held-out)", ""]
    lines += ["| set | measure | score | gate |", "| --- | --- | --- | --- |"]

    def rows(name: str, found: dict[str, Any], gated: bool) -> None:
        if "off_topic" in found:
            off = found["off_topic"]
            gate = f"<= {OFF_TOPIC_GATE:.0%}" if gated else "reported"
            lines.append(
                f"| {name} | off-topic answered with a clause | {off['rate']:.1%} "
                f"({off['answered_with_clause']}/{off['total']}; escalated {off['escalated']}) | {gate} |"
            )
        if "after_disclosure" in found:
            after = found["after_disclosure"]
            kinds = ", ".join(f"{k} {v}" for k, v in after["by_kind"].items())
            lines.append(
                f"| {name} | turn after a disclosure handled as written for | {after['accuracy']:.1%} "
                f"({after['correct']}/{after['total']}: {kinds}) | reported |"
            )
        for key, label in (("complaints_vs_worries", "worry escalated, complaint or staff harassed not"),
                           ("adult_allegations", "allegation escalated, ordinary question not")):  # fmt: skip
            if key in found:
                pairs = found[key]
                detail = ", ".join(f"{k} {v}" for k, v in pairs["by_expect"].items())
                routed = (
                    f"; routed as allegation {pairs['allegations_routed']}"
                    if pairs.get("allegations_routed")
                    else ""
                )
                lines.append(
                    f"| {name} | {label} | {pairs['accuracy']:.1%} ({pairs['correct']}/{pairs['total']}: "
                    f"{detail}{routed}) | reported |"
                )

    rows("development", results, True)
    for name, found in (results.get("sealed") or {}).items():
        rows(f"sealed {name}", found, False)
    lines.append("")
    misses: list[str] = []
    for text, intent in (results.get("off_topic") or {}).get("misses", []):
        misses.append(f"- off-topic {text!r} -> {intent}")
    for text, expect, got in (results.get("after_disclosure") or {}).get("misses", []):
        misses.append(f"- after a disclosure {text!r}: {expect} -> {got}")
    for name, found in (results.get("sealed") or {}).items():
        for text, intent in (found.get("off_topic") or {}).get("misses", []):
            misses.append(f"- sealed {name} off-topic {text!r} -> {intent}")
        for text, expect, got in (found.get("after_disclosure") or {}).get("misses", []):
            misses.append(f"- sealed {name} after a disclosure {text!r}: {expect} -> {got}")
        for key in ("complaints_vs_worries", "adult_allegations"):
            for text, expect, got in (found.get(key) or {}).get("misses", []):
                misses.append(f"- sealed {name} {key} {text!r}: {expect} -> {got}")
    lines += ["### Misses", ""] + (misses or ["- none"]) + [""]
    return lines
