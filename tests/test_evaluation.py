"""The evaluation's scoring and the BM25 baseline, on the shipped clause base."""

import pytest

from bot.baseline import PolicySearch, policy_sentences, tokens
from bot.evaluation import GATES, HeldOutQuestion, bm25_scores, gate_failures, load_questions, score_topics
from bot.knowledge import get_knowledge


@pytest.fixture(scope="module")
def kb():
    return get_knowledge()


def test_policy_sentences_are_normalised_and_searchable(kb):
    sentences = policy_sentences(kb.policy_texts["lunsford"])
    assert len(sentences) > 50
    assert all("**" not in s and "\n" not in s for s in sentences)
    best = PolicySearch(kb.policy_texts["lunsford"]).best("personal social media accounts contact learners")
    assert best is not None and "personal" in best.lower()


def test_bm25_finds_nothing_for_words_not_in_the_policy(kb):
    assert PolicySearch(kb.policy_texts["scotts"]).best("zzzz qqqq") is None
    assert PolicySearch(kb.policy_texts["scotts"]).best("the and of") is None  # stop words only
    assert tokens("The Teachers, on SNAP!") == ["teachers", "snap"]


def test_scores_perfect_and_wrong_predictions(kb):
    questions = [
        HeldOutQuestion("can staff friend pupils", "staff-befriend-pupils", "lunsford", "staff"),
        HeldOutQuestion("how do i report a post", "report-post", "scotts", "parent"),
    ]
    perfect = score_topics(kb, questions, lambda q: q.topic)
    assert (perfect.accuracy, perfect.grounding, perfect.misses) == (1.0, 1.0, [])
    nothing = score_topics(kb, questions, lambda q: None)
    assert (nothing.accuracy, nothing.grounding) == (0.0, 0.0)
    assert nothing.confusions[0][1] == "(none)"


def test_reachability_names_each_topic_and_audience_no_question_reached(kb):
    questions = [
        HeldOutQuestion("can staff friend pupils", "staff-befriend-pupils", "lunsford", "staff"),
        HeldOutQuestion("can sir add me on snap", "staff-befriend-pupils", "scotts", "pupil"),
        HeldOutQuestion("can miss add me", "staff-befriend-pupils", "lseat", "pupil"),
    ]
    # The pupil questions: one right, one wrong -> reached; the staff one wrong -> not reached.
    scores = score_topics(kb, questions, lambda q: q.topic if "snap" in q.text else "report-post")
    unreachable = {(t, a): n for t, a, n in scores.unreachable}
    assert ("staff-befriend-pupils", "staff") in unreachable and unreachable[
        ("staff-befriend-pupils", "staff")
    ] == 1
    assert ("staff-befriend-pupils", "pupil") not in unreachable
    assert unreachable[("staff-befriend-pupils", "parent")] == 0  # nobody asked it
    assert len(scores.unreachable) == 3 * len(kb.topics) - 1
    assert scores.by_audience == {"pupil": 0.5, "staff": 0.0}


def test_a_neighbouring_topic_with_the_same_clauses_reaches_the_pair(kb):
    """Reachability means the right cited answer: Scotts answers a parent's "may staff follow pupils?" and
    "may pupils follow staff?" with the same clauses, so either topic reaches the pair; another topic does
    not."""
    question = HeldOutQuestion(
        "his PE teacher follows year 9 lads", "staff-befriend-pupils", "scotts", "parent"
    )
    same = kb.answer("scotts", "staff-befriend-pupils", "parent").clauses
    other = kb.answer("scotts", "pupils-befriend-staff", "parent").clauses
    assert [c.id for c in same] == [c.id for c in other]
    neighbour = score_topics(kb, [question], lambda q: "pupils-befriend-staff")
    assert neighbour.accuracy == 0.0
    assert ("staff-befriend-pupils", "parent", 1) not in neighbour.unreachable
    elsewhere = score_topics(kb, [question], lambda q: "report-post")
    assert ("staff-befriend-pupils", "parent", 1) in elsewhere.unreachable


def test_heldout_set_asks_every_topic_in_every_audience(kb, project_root):
    questions = load_questions(project_root / "tests" / "heldout" / "policy_questions.yml", kb)
    asked = {(q.topic, q.audience) for q in questions}
    missing = [(t, a) for t in kb.topics for a in ("staff", "parent", "pupil") if (t, a) not in asked]
    assert missing == []


def test_grounding_counts_a_different_topic_with_the_same_clauses_as_grounded(kb):
    # Two topics a school leaves uncovered give the same grounded reply: "the policy does not cover this".
    silent = [t for t, e in kb.answers["scotts"].items() if not e.covered][:2]
    question = HeldOutQuestion("?", silent[0], "scotts", "parent")
    scores = score_topics(kb, [question], lambda q: silent[1])
    assert scores.accuracy == 0.0 and scores.grounding == 1.0


def test_bm25_baseline_cannot_say_not_covered(kb):
    silent = next(t for t, e in kb.answers["lunsford"].items() if not e.covered)
    question = HeldOutQuestion(kb.topics[silent].question, silent, "lunsford", "parent")
    scores = bm25_scores(kb, [question])
    assert scores.grounding == 0.0


def test_gate_failures_name_each_missed_target():
    good = {
        "assistant": {"accuracy": 0.95, "grounding": 0.96},
        "bm25": {"accuracy": 0.3, "grounding": 0.3},
        "detection": {"recall": 1.0, "false_escalation_rate": 0.05, "misses": []},
        "dialogue": {"off_topic": {"rate": 0.01}},
    }
    assert gate_failures(good) == []
    bad = {
        "assistant": {"accuracy": 0.5, "grounding": 0.5},
        "bm25": {"accuracy": 0.45, "grounding": 0.4},
        "detection": {"recall": 0.98, "false_escalation_rate": 0.2, "misses": ["i want to die"]},
        "dialogue": {"off_topic": {"rate": 0.06}},
    }
    bad["assistant"]["unreachable"] = [("copyright", "pupil", 2)]
    failures = " | ".join(gate_failures(bad))
    words = (
        "topic accuracy",
        "grounding",
        "BM25",
        "recall",
        "false escalations",
        "copyright/pupil",
        "off-topic",
    )
    for word in words:
        assert word in failures
    assert GATES["disclosure_recall"] == 1.0


def test_heldout_questions_are_valid_and_never_in_training_data(kb, project_root):
    questions = load_questions(project_root / "tests" / "heldout" / "policy_questions.yml", kb)
    assert len(questions) >= 3 * len(kb.topics)
    per_topic = {t: 0 for t in kb.topics}
    for q in questions:
        per_topic[q.topic] += 1
    assert min(per_topic.values()) >= 3
    assert {q.school for q in questions} == set(kb.schools)
    assert {q.audience for q in questions} == {"staff", "parent", "pupil"}
    training = _training_examples(project_root)
    leaked = [q.text for q in questions if _fold(q.text) in training]
    assert leaked == []


def _fold(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def _training_examples(project_root) -> set[str]:
    import yaml

    examples = set()
    for path in (project_root / "data" / "nlu").glob("*.yml"):
        for item in yaml.safe_load(path.read_text()).get("nlu", []):
            for line in item.get("examples", "").splitlines():
                if line.strip().startswith("- "):
                    examples.add(_fold(line.strip()[2:]))
    assert len(examples) > 500
    return examples
