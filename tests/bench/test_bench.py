"""The bench's pure functions: percentile maths, memory slopes, disclosure counting, synthetic schools and
report rendering. No servers and no load here: the numbers themselves live in reports/bench.md."""

from __future__ import annotations

import random

import pytest

from bot.bench import report
from bot.bench.load import Conversations, _reply_problem
from bot.bench.schools import copy_slug, synthetic_knowledge
from bot.bench.stats import (
    count_stored,
    is_flat,
    linear_slope,
    memory_trend,
    percentile,
    summarise_latencies,
    throughput,
)


def test_percentile_interpolates_like_numpy():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1
    assert percentile([4, 1, 3, 2], 100) == 4
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summary_of_latencies():
    summary = summarise_latencies([30, 10, 20])
    assert summary == {"count": 3, "mean": 20, "p50": 20, "p95": 29, "p99": pytest.approx(29.8), "max": 30}
    assert summarise_latencies([])["p95"] is None


def test_slope_and_memory_trend():
    assert linear_slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2)
    assert linear_slope([(1, 1), (1, 2)]) is None
    assert linear_slope([(0, 1)]) is None
    # Growth in the first quarter (warm-up) is left out; then flat.
    samples = [(t, 100 + min(t, 10) * 5) for t in range(0, 121)]
    trend = memory_trend(samples)
    assert trend["slope_mib_per_min"] == pytest.approx(0)
    assert is_flat(trend)
    leaking = memory_trend([(t, 100 + t / 10) for t in range(0, 121)])  # 6 MiB a minute
    assert leaking["slope_mib_per_min"] == pytest.approx(6)
    assert not is_flat(leaking)
    assert memory_trend([])["slope_mib_per_min"] is None


def test_throughput():
    assert throughput(100, 20) == 5
    assert throughput(0, 20) is None
    assert throughput(5, 0) is None


def test_count_stored_finds_missing_and_duplicated():
    assert count_stored(["a", "b"], ["b", "a", "x"])["exactly_once"]
    result = count_stored(["a", "b", "c"], ["a", "a", "b", "other"])
    assert result["missing"] == ["c"] and result["duplicated"] == ["a"]
    assert result["stored"] == 3 and not result["exactly_once"]


def _plan(**extra):
    return {
        "run_id": "t",
        "questions": [
            {"text": "q1", "school": "a", "audience": "parent"},
            {"text": "q2", "school": "b", "audience": "pupil"},
        ],
        "disclosures": [{"text": "d", "audience": "pupil"}],
        "schools": ["a", "b"],
        "disclosure_share": 0.05,
        **extra,
    }


def test_conversations_keep_disclosures_near_their_share_with_unique_senders():
    conversations = Conversations(_plan(), random.Random(3))
    senders, kinds = [], []
    for _ in range(2000):
        sender, metadata, turns = conversations.next()
        senders.append(sender)
        kinds += [kind for kind, _ in turns]
        assert metadata["school"] in ("a", "b")
    assert len(set(senders)) == len(senders)
    share = kinds.count("disclosure") / len(kinds)
    assert 0.04 <= share <= 0.06
    assert {"question", "followup"} <= set(kinds)


def test_reply_problems():
    assert _reply_problem("question", []) == "empty reply"
    assert _reply_problem("question", [{"text": "hi"}]) is None
    policy = [{"custom": {"type": "policy_answer"}}]
    assert _reply_problem("disclosure", policy) == "disclosure answered as a policy question"
    assert _reply_problem("disclosure", [{"text": "Call 0800 1111"}]) is None


def test_copy_slug_rewrites_only_the_slug():
    text = "slug: lunsford\nid: lunsford.3.1\nschool: lunsford\nname: Lunsford Primary\nlunsfordians: x"
    out = copy_slug(text, "lunsford", "lunsford-copy2")
    assert "slug: lunsford-copy2" in out and "id: lunsford-copy2.3.1" in out
    assert "Lunsford Primary" in out and "lunsfordians" in out


def test_synthetic_knowledge_loads(project_root, tmp_path):
    from bot.knowledge.loader import load_knowledge

    slugs = synthetic_knowledge(project_root / "knowledge", tmp_path / "k", 12)
    kb = load_knowledge(tmp_path / "k")
    assert len(slugs) == 12 and set(kb.schools) == set(slugs)
    copy = next(s for s in slugs if s.startswith("lunsford-copy"))
    topic = next(iter(kb.answers["lunsford"]))
    assert kb.answer(copy, topic, "parent").text == kb.answer("lunsford", topic, "parent").text


def _phase(concurrency, p95, errors=0, disclosure_p95=None):
    latency = {"count": 10, "mean": p95 / 2, "p50": p95 / 2, "p95": p95, "p99": p95, "max": p95}
    empty = {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    disclosure = dict(latency, p95=disclosure_p95) if disclosure_p95 else empty
    return {
        "concurrency": concurrency,
        "seconds": 10,
        "messages": 10 + errors,
        "errors": errors,
        "error_examples": ["HTTP 500"] if errors else [],
        "latency_ms": latency,
        "by_kind": {"question": latency, "followup": latency, "disclosure": disclosure},
        "throughput": 1.0,
        "disclosures_sent": 1,
        "disclosures_replied": 1,
        "think_seconds": [0, 0],
    }


def _results(profile="quick", c8_p95=120.0, c32_errors=0, training=None):
    memory = {
        "idle": {"mean": 100.0, "max": 100.0},
        "soak": {"mean": 110.0, "max": 112.0},
        "after": {"mean": 111.0, "max": 111.0},
        "trend": {"slope_mib_per_min": 0.3, "start_mib": 110, "end_mib": 111, "growth_mib": 1, "n": 90},
    }
    backend = {
        "label": "sqlite",
        "database": "sqlite:///x.db",
        "startup_seconds": 30,
        "phases": {"c1": _phase(1, 60), "c8": _phase(8, c8_p95, 0, 100), "c32": _phase(32, 900, c32_errors)},
        "soak": _phase(50, 1500),
        "memory": {"rasa server": memory, "action server": memory},
        "memory_samples": [
            {"t": t, "phase": "soak", "rasa server": 100.0, "action server": 50.0} for t in range(5)
        ],
        "disclosures": {
            "sent": 3, "stored": 3, "missing": [], "duplicated": [], "exactly_once": True, "store_total": 3,
        },
        "schools": {"1": _phase(1, 50) | {"action_rss_mib": 80.0}},
    }  # fmt: skip
    return {
        "profile": profile,
        "profile_settings": {
            "postgres": False,
            "train": training is not None,
            "baseline": False,
            "phases": [["c1", 1, 10, [0, 0]]],
            "soak_seconds": 30,
        },  # fmt: skip
        "started_at": "2026-01-01T00:00:00+00:00",
        "total_seconds": 300,
        "machine": {"cpus": 2, "memory_gib": 8, "python": "3.10"},
        "model": {"name": "m.tar.gz", "size_mib": 40.0},
        "backends": {"sqlite": backend},
        "nlu": {
            "ours": {
                "accuracy": 0.95,
                "grounding": 0.93,
                "questions": 10,
                "parse_ms": _phase(1, 20)["latency_ms"],
            },
            "bm25": {
                "accuracy": 0.5,
                "grounding": 0.4,
                "questions": 10,
                "parse_ms": _phase(1, 1)["latency_ms"],
            },
        },  # fmt: skip
        **({"training": training} if training else {}),
    }


def test_targets_met_and_missed():
    rows = {r["target"]: r for r in report.evaluate_targets(_results())}
    assert rows["p95 < 150 ms at 8 concurrent conversations (sqlite)"]["met"] is True
    assert rows["zero errors at 32 concurrent conversations (sqlite)"]["met"] is True
    assert rows["training from scratch under 5 minutes"]["met"] is None

    rows = report.evaluate_targets(
        _results(c8_p95=400, c32_errors=2, training={"seconds": 400, "size_mib": 40, "what": "rasa train"})
    )
    missed = {r["target"]: r for r in rows if r["met"] is False}
    assert "p95 < 150 ms at 8 concurrent conversations (sqlite)" in missed
    assert "p50 at 1 conversation" in missed["p95 < 150 ms at 8 concurrent conversations (sqlite)"]["why"]
    assert "zero errors at 32 concurrent conversations (sqlite)" in missed
    assert "training from scratch under 5 minutes" in missed


def test_quick_report_says_so_and_names_what_is_missing():
    text = report.render_markdown(_results(), plot_name="bench.png")
    assert "QUICK RUN" in text
    assert "the PostgreSQL repeat" in text and "stock `rasa init` pipeline baseline" in text
    assert "| c8 | 8 |" in text and "![" in text
    assert "BM25 keyword search | 50.0%" in text
    assert "not measured" in text


def test_incomplete_run_says_so():
    results = _results() | {"incomplete": "stopped during training from scratch: SystemExit: signal 15"}
    assert "INCOMPLETE RUN" in report.render_markdown(results)


def test_full_report_names_missed_targets():
    results = _results(profile="full", c8_p95=400, training={"seconds": 100, "size_mib": 40, "what": "x"})
    text = report.render_markdown(results, plot_name=None)
    assert "QUICK RUN" not in text
    assert "### Missed targets and why" in text and "**MISSED**" in text


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = report.plot(_results(), tmp_path / "bench.png")
    assert path and path.read_bytes()[:4] == b"\x89PNG"


def test_training_progress_reads_rasa_progress_bars():
    from bot.bench.training import training_progress

    log = (
        "Starting to train component 'CountVectorsFeaturizer'\n"
        "Starting to train component 'DIETClassifier'\n"
        "Epochs:  19%|█▉        | 19/100 [05:05<19:27, 14.41s/it, t_loss=4.29]"
        "Epochs:  20%|██        | 20/100 [05:14<17:19, 12.99s/it, t_loss=4.19, i_acc=0.996]"
    )
    progress = training_progress(log)
    assert progress["component"] == "DIETClassifier"
    assert (progress["epochs_done"], progress["epochs_total"]) == (20, 100)
    assert progress["component_seconds_estimate"] == pytest.approx(1299)
    assert training_progress("nothing yet") == {"component": None}


def test_full_run_without_training_says_what_it_left_out():
    results = _results(profile="full")
    results["profile_settings"] = results.get("profile_settings", {}) | {
        "postgres": True,
        "train": False,
        "baseline": False,
    }
    text = report.render_markdown(results, plot_name=None)
    assert "PARTIAL RUN" in text and "QUICK RUN" not in text
    assert "training time from scratch" in text and "stock `rasa init` pipeline baseline" in text
    assert "the PostgreSQL repeat" not in text.split("PARTIAL RUN")[1].split("\n")[0]


def test_component_times_read_each_components_last_bar():
    from bot.bench.training import component_times

    log = (
        "Starting to train component 'CountVectorsFeaturizer'.\n"
        "Starting to train component 'DIETClassifier'.\n"
        "Epochs:  98%|█████████▊| 59/60 [06:02<00:06,  6.12s/it, t_loss=1.1]\r"
        "Epochs: 100%|██████████| 60/60 [06:08<00:00,  6.14s/it, t_loss=1.0, i_acc=0.999]\n"
        "Starting to train component 'ResponseSelector'.\n"
        "Epochs: 100%|██████████| 20/20 [00:41<00:00,  2.05s/it]\n"
        "Starting to train component 'TEDPolicy'.\n"
        "Epochs: 100%|██████████| 100/100 [1:02:03<00:00,  1.23it/s]\n"
    )
    assert component_times(log) == {
        "DIETClassifier": {"epochs_done": 60, "epochs_total": 60, "seconds": 368},
        "ResponseSelector": {"epochs_done": 20, "epochs_total": 20, "seconds": 41},
        "TEDPolicy": {"epochs_done": 100, "epochs_total": 100, "seconds": 3723},
    }


def test_a_missed_training_target_says_where_the_time_went():
    training = {
        "seconds": 600,
        "size_mib": 40,
        "what": "rasa train",
        "load_average_after": [1.9, 1.5, 1.0],
        "components": {
            "DIETClassifier": {"epochs_done": 60, "epochs_total": 60, "seconds": 360},
            "TEDPolicy": {"epochs_done": 100, "epochs_total": 100, "seconds": 120},
        },
    }
    rows = {r["target"]: r for r in report.evaluate_targets(_results(profile="full", training=training))}
    why = rows["training from scratch under 5 minutes"]["why"]
    assert "DIETClassifier 360 s (60 epochs, 6.0 s each)" in why
    assert why.index("DIETClassifier") < why.index("TEDPolicy")
    assert "everything else (spaCy, featurizers, rules, packing the model) 120 s" in why
    fast = report.evaluate_targets(_results(profile="full", training=training | {"seconds": 200}))
    assert [r["why"] for r in fast if r["target"].startswith("training")] == [None]


def test_report_gives_ratios_against_each_baseline():
    results = _results(profile="full", training={"seconds": 600, "size_mib": 40, "what": "rasa train"})
    results["nlu"]["stock"] = {
        "accuracy": 0.5,
        "grounding": 0.62,
        "questions": 10,
        "parse_ms": _phase(1, 40)["latency_ms"],
        "training_seconds": 1200,
        "size_mib": 30.0,
    }
    text = report.render_markdown(results, plot_name=None)
    assert "- vs stock `rasa init` config: topic accuracy 1.90x (95.0% vs 50.0%), grounding 1.50x" in text
    assert "parse p50 0.50x, training time 0.50x" in text
    assert "- vs BM25: topic accuracy 1.90x (95.0% vs 50.0%), grounding 2.33x, parse p50 20.00x" in text
    results["nlu"]["stock"] = {"timed_out": True, "seconds": 3600, "limit_seconds": 3600}
    assert "- vs stock `rasa init` config: not measured in this run" in report.render_markdown(results)
