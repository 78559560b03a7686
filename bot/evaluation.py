"""``schoolguide eval``: model quality on held-out data that is never trained on.

Reports, for the held-out policy questions (tests/heldout/policy_questions.yml): topic accuracy, answer
grounding (the answer given cites the same clauses of *that school* as the right answer would) and the most
confused topic pairs, next to the BM25 keyword-search baseline on the same questions; and, for the held-out
disclosures and sensitive-but-ordinary questions, disclosure recall and the false-escalation rate.
``--gate`` fails when a quality target is missed (make test uses it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from bot.answering import topic_for_intent
from bot.baseline import PolicySearch
from bot.knowledge import KnowledgeBase, get_knowledge
from bot.knowledge.text import normalise
from bot.settings import AUDIENCES, get_settings
from bot.spread import load_spread, recipe_fingerprint
from bot.spread import render_markdown as spread_markdown

logger = logging.getLogger(__name__)

HELDOUT_DIR = Path("tests/heldout")
GATES = {
    "topic_accuracy": 0.90,
    "grounding": 0.90,
    "disclosure_recall": 1.0,
    "false_escalation_rate": 0.10,
    "unreachable_pairs": 0,  # every topic answered for a typed question in every audience
    "off_topic_rate": 0.05,  # off-topic questions answered with a clause (bot/dialogue_eval.py)
}


@dataclass(frozen=True)
class HeldOutQuestion:
    text: str
    topic: str
    school: str
    audience: str
    platform: str | None = None


@dataclass
class PolicyScores:
    accuracy: float
    grounding: float
    total: int
    misses: list[dict] = field(default_factory=list)
    confusions: list[tuple[str, str, int]] = field(default_factory=list)
    by_audience: dict[str, float] = field(default_factory=dict)
    # (topic, audience) pairs where no held-out question of that audience reached the topic, with the count
    # asked ("[topic, audience, asked]"; asked 0 means the held-out set has no such question yet).
    unreachable: list[tuple[str, str, int]] = field(default_factory=list)


def load_questions(path: Path, kb: KnowledgeBase) -> list[HeldOutQuestion]:
    """Held-out questions, checked against the catalogue so a typo in the set cannot pass unnoticed."""
    items = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("questions") or []
    questions = []
    for n, item in enumerate(items):
        q = HeldOutQuestion(**{k: item.get(k) for k in ("text", "topic", "school", "audience", "platform")})
        if q.topic not in kb.topics or q.school not in kb.schools:
            raise ValueError(f"{path}: questions[{n}]: unknown topic {q.topic!r} or school {q.school!r}")
        questions.append(q)
    return questions


def _clause_ids(kb: KnowledgeBase, school: str, topic: str | None, audience: str, platform: str | None):
    if topic is None:
        return None  # no answer at all (fallback, small talk or a disclosure route)
    answer = kb.answer(school, topic, audience, variant=platform)
    return (answer.covered, tuple(c.id for c in answer.clauses))


def score_topics(
    kb: KnowledgeBase, questions: list[HeldOutQuestion], predict: Callable[[HeldOutQuestion], str | None]
) -> PolicyScores:
    """Accuracy and grounding of ``predict`` (question -> topic id or None) on the held-out questions."""
    right = grounded = 0
    misses, confusions = [], Counter()
    asked, reached, audience_total, audience_right = Counter(), Counter(), Counter(), Counter()
    for q in questions:
        predicted = predict(q)
        expected_answer = _clause_ids(kb, q.school, q.topic, q.audience, q.platform)
        given_answer = _clause_ids(kb, q.school, predicted, q.audience, q.platform)
        right += predicted == q.topic
        asked[(q.topic, q.audience)] += 1
        # Reached = the person got the right cited answer: a neighbouring topic that cites exactly the same
        # clauses for that school and audience answers them just as well (the same rule as grounding).
        reached[(q.topic, q.audience)] += given_answer == expected_answer
        audience_total[q.audience] += 1
        audience_right[q.audience] += predicted == q.topic
        grounded += given_answer == expected_answer
        if predicted != q.topic:
            confusions[(q.topic, predicted or "(none)")] += 1
            misses.append({"text": q.text, "expected": q.topic, "predicted": predicted, "school": q.school})
    total = len(questions) or 1
    return PolicyScores(
        accuracy=right / total,
        grounding=grounded / total,
        total=len(questions),
        misses=misses,
        confusions=[(a, b, n) for (a, b), n in confusions.most_common(10)],
        by_audience={a: audience_right[a] / n for a, n in sorted(audience_total.items())},
        unreachable=[
            (topic, audience, asked[(topic, audience)])
            for topic in kb.topics
            for audience in AUDIENCES
            if not reached[(topic, audience)]
        ],
    )


def bm25_scores(kb: KnowledgeBase, questions: list[HeldOutQuestion]) -> PolicyScores:
    """BM25 over the school's policy sentences, judged like the assistant: right topic, right clauses."""
    searches = {slug: PolicySearch(kb.policy_texts[slug]) for slug in kb.schools}

    def topics_citing(school: str, sentence: str | None) -> list[str]:
        if sentence is None:
            return []
        found = []
        for topic, entry in kb.answers[school].items():
            for clause_id in entry.clauses:
                quote = normalise(kb.clause(school, clause_id).quote)
                if sentence in quote or quote in sentence:
                    found.append(topic)
                    break
        return found

    def predict(q: HeldOutQuestion) -> str | None:
        candidates = topics_citing(q.school, searches[q.school].best(q.text))
        # Give BM25 the benefit of the doubt: if the sentence it found answers the right topic, count it.
        return q.topic if q.topic in candidates else (candidates[0] if candidates else None)

    return score_topics(kb, questions, predict)


def _model_parser(model: Path) -> Callable[[str], dict]:
    import structlog
    from rasa.core.agent import Agent

    # Unconfigured, structlog prints Rasa's debug events, each held-out sentence among them, to stdout.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    agent = Agent.load(str(model))
    loop = asyncio.new_event_loop()
    return lambda text: loop.run_until_complete(agent.parse_message(text))


def run_eval(model: Path, heldout_dir: Path, report_dir: Path) -> dict:
    """Evaluate ``model`` on the held-out sets; write reports/eval.{md,json}; return the numbers."""
    from bot.safeguarding.evaluation import evaluate_detection, load_heldout, sealed_rounds

    kb = get_knowledge()
    questions = load_questions(heldout_dir / "policy_questions.yml", kb)
    parse = _model_parser(model)
    cache: dict[str, dict] = {}

    def intent_of(text: str) -> str:
        if text not in cache:
            cache[text] = parse(text)
        return (cache[text].get("intent") or {}).get("name") or ""

    assistant = score_topics(kb, questions, lambda q: topic_for_intent(kb, intent_of(q.text)))
    baseline = bm25_scores(kb, questions)
    disclosures, ordinary = load_heldout(heldout_dir)
    detection = evaluate_detection(intent_of, disclosures, ordinary)
    # Sealed rounds were each written without sight of the rules, the training data or earlier rounds and are
    # never used to tune them: the newest round's numbers are the honest first-sight figures (reported).
    sealed = {
        name: asdict(evaluate_detection(intent_of, *load_heldout(folder)))
        for name, folder in sealed_rounds(heldout_dir)
    }
    from bot.dialogue_eval import run_dialogue_eval

    results = {
        "dialogue": run_dialogue_eval(heldout_dir, intent_of),
        "model": model.name,
        "held_out_questions": assistant.total,
        "topic_audience_pairs": len(kb.topics) * len(AUDIENCES),
        "assistant": asdict(assistant),
        "bm25": {k: v for k, v in asdict(baseline).items() if k != "misses"},
        "detection": asdict(detection),
        "detection_sealed": sealed,
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "eval.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    (report_dir / "eval.md").write_text(render_markdown(results))
    return results


def gate_failures(results: dict) -> list[str]:
    """Targets missed, in words; empty when every gate holds."""
    a, b, d = results["assistant"], results["bm25"], results["detection"]
    failures = []
    if a["accuracy"] < GATES["topic_accuracy"]:
        failures.append(f"topic accuracy {a['accuracy']:.1%} < {GATES['topic_accuracy']:.1%}")
    if a["grounding"] < GATES["grounding"]:
        failures.append(f"grounding {a['grounding']:.1%} < {GATES['grounding']:.1%}")
    if a["accuracy"] <= b["accuracy"] + 0.2 or a["grounding"] <= b["grounding"] + 0.2:
        failures.append("the assistant does not beat the BM25 baseline by a wide margin (20 points)")
    if d["recall"] < GATES["disclosure_recall"]:
        failures.append(f"disclosure recall {d['recall']:.1%} < 100% (missed: {d['misses']})")
    if d["false_escalation_rate"] > GATES["false_escalation_rate"]:
        failures.append(
            f"false escalations {d['false_escalation_rate']:.1%} > {GATES['false_escalation_rate']:.0%}"
        )
    if len(a.get("unreachable", [])) > GATES["unreachable_pairs"]:
        pairs = ", ".join(f"{t}/{aud}" for t, aud, _ in a["unreachable"])
        failures.append(f"topics not reached by any held-out question of that audience: {pairs}")
    if "dialogue" in results:
        from bot.dialogue_eval import gate_failures as dialogue_gate_failures

        failures += dialogue_gate_failures(results["dialogue"])
    return failures


def render_markdown(results: dict) -> str:
    a, b, d = results["assistant"], results["bm25"], results["detection"]
    lines = [
        "# SchoolGuide evaluation (held-out data, never trained on)",
        "",
        f"Model: `{results['model']}`; {results['held_out_questions']} held-out policy questions.",
        "",
        "| measure | assistant | BM25 baseline | gate |",
        "| --- | --- | --- | --- |",
        f"| topic accuracy | {a['accuracy']:.1%} | {b['accuracy']:.1%} | >= {GATES['topic_accuracy']:.1%} |",
        f"| grounding (right clauses for that school) | {a['grounding']:.1%} | {b['grounding']:.1%} "
        f"| >= {GATES['grounding']:.1%} |",
        f"| disclosure recall (development held-out) | {d['recall']:.1%} | - | 100% |",
        f"| false escalations | {d['false_escalation_rate']:.1%} | - "
        f"| <= {GATES['false_escalation_rate']:.1%} |",
    ]
    sealed = results.get("detection_sealed") or {}
    for name, s in sealed.items():
        lines += [
            f"| disclosure recall (sealed {name}) | {s['recall']:.1%} | - | reported |",
            f"| false escalations (sealed {name}) | {s['false_escalation_rate']:.1%} | - | reported |",
        ]
    unreachable = a.get("unreachable", [])
    lines += [
        f"| topic x audience pairs not reached | {len(unreachable)} of {results.get('topic_audience_pairs')} "
        "| - | 0 |",
        "",
        "The development held-out disclosures were scored at first sight in rounds; after each round the",
        "rules were extended with broader pattern families (never the sentences themselves), so 100% there",
        "is a regression check. Each sealed round was written without sight of the rules, the training data",
        "or the earlier rounds and is never tuned against; the newest round's score is the honest measure of",
        "recall on new wording (an older round's misses have been seen, so it is no longer first sight).",
        "The first-sight score of every round is kept in [first-sight.md](first-sight.md).",
        "",
    ]
    if "dialogue" in results:
        from bot.dialogue_eval import render_markdown as dialogue_markdown

        lines += dialogue_markdown(results["dialogue"])
    home = get_settings().home
    lines += spread_markdown(load_spread(home), GATES, recipe_fingerprint(home))
    lines += ["## Topic accuracy by audience", "", "| audience | accuracy |", "| --- | --- |"]
    lines += [f"| {aud} | {acc:.1%} |" for aud, acc in a.get("by_audience", {}).items()]
    lines += ["", "## Topics not reached by any held-out question of an audience", ""]
    lines += [f"- {t} ({aud}): {n} asked" for t, aud, n in unreachable] or [
        "- none: every topic is reached in every audience"
    ]
    lines += [
        "",
        "## Most confused topic pairs (expected -> predicted)",
        "",
    ]
    lines += [f"- {x} -> {y}: {n}" for x, y, n in a["confusions"]] or ["- none"]
    lines += ["", "## Misclassified questions", ""]
    lines += [
        f"- {m['text']!r} ({m['school']}): {m['expected']} -> {m['predicted']}" for m in a["misses"]
    ] or ["- none"]
    lines += ["", "## Missed disclosures", ""] + ([f"- {m!r}" for m in d["misses"]] or ["- none"])
    for name, s in sealed.items():
        lines += ["", f"## Missed disclosures (sealed {name})", ""]
        lines += [f"- {m!r}" for m in s["misses"]] or ["- none"]
        lines += ["", f"## False escalations (sealed {name})", ""]
        lines += [f"- {m!r}" for m in s["false_escalations"]] or ["- none"]
    lines += ["", "## False escalations", ""] + ([f"- {m!r}" for m in d["false_escalations"]] or ["- none"])
    failures = gate_failures(results)
    lines += ["", "## Gate", "", "PASS" if not failures else "FAIL: " + "; ".join(failures), ""]
    return "\n".join(lines)


def _summary(results: dict) -> Iterable[str]:
    a, b, d = results["assistant"], results["bm25"], results["detection"]
    yield f"held-out policy questions: {results['held_out_questions']}"
    yield f"topic accuracy   assistant {a['accuracy']:.1%}   bm25 {b['accuracy']:.1%}"
    yield f"grounding        assistant {a['grounding']:.1%}   bm25 {b['grounding']:.1%}"
    yield f"disclosures      recall {d['recall']:.1%}   false escalations {d['false_escalation_rate']:.1%}"
    yield "by audience      " + "   ".join(f"{k} {v:.1%}" for k, v in a.get("by_audience", {}).items())
    pairs = results.get("topic_audience_pairs")
    yield f"topic x audience not reached: {len(a.get('unreachable', []))} of {pairs}"
    for name, s in (results.get("detection_sealed") or {}).items():
        rate = s["false_escalation_rate"]
        yield f"sealed {name:<9} recall {s['recall']:.1%}   false escalations {rate:.1%}"
    dialogue = results.get("dialogue") or {}
    if "off_topic" in dialogue:
        off = dialogue["off_topic"]
        counts = f"{off['answered_with_clause']}/{off['total']}"
        yield f"off-topic        answered with a clause {off['rate']:.1%} ({counts})"
    if "after_disclosure" in dialogue:
        after = dialogue["after_disclosure"]
        counts = f"{after['correct']}/{after['total']}"
        yield f"after disclosure handled as written for {after['accuracy']:.1%} ({counts})"


def _run(args: argparse.Namespace) -> int:
    from bot.runner import model_path

    settings = get_settings()
    model = args.model or model_path(settings)
    if not model.exists():
        print(f"no trained model at {model}: run `make train` first")
        return 2
    results = run_eval(model, settings.home / HELDOUT_DIR, args.report_dir or settings.home / "reports")
    for line in _summary(results):
        print(line)
    failures = gate_failures(results)
    print(f"report: {args.report_dir or 'reports'}/eval.md")
    if failures:
        print("quality gate FAILED: " + "; ".join(failures))
        return 1 if args.gate else 0
    print("quality gate passed")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate the trained model on the held-out sets")
    parser.add_argument("--model", type=Path, help="model to evaluate (default: the current one)")
    parser.add_argument("--gate", action="store_true", help="exit 1 when a quality target is missed")
    parser.add_argument("--report-dir", type=Path, help="where eval.md and eval.json go (default: reports)")
    parser.set_defaults(func=_run)
