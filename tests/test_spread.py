"""The quality gate is honest: every gate sits at or below the worst case measured across seeds and CPU
settings (reports/spread.json, written by `make spread`), and that measurement is of the recipe in this
commit."""

from __future__ import annotations

import yaml

from bot.evaluation import GATES
from bot.settings import get_settings
from bot.spread import (
    MEASURES,
    load_spread,
    recipe_fingerprint,
    render_markdown,
    seeded_config,
    summarise,
    variants,
)


def test_the_spread_was_measured_for_this_commits_recipe():
    spread = load_spread(get_settings().home)
    assert spread, "reports/spread.json is missing: run `make spread`"
    assert spread["recipe"] == recipe_fingerprint(get_settings().home), (
        "config.yml or data/nlu changed since the spread was measured: run `make spread` and check the gates"
    )


def test_every_gate_sits_at_or_below_the_worst_case_measured():
    spread = load_spread(get_settings().home)
    names = {run["variant"] for run in spread["runs"]}
    # At least five seeds and the CPU paths that can be switched on one machine.
    assert sum(name.startswith("seed=") for name in names) >= 5
    assert {"threads=1", "numpy-no-avx2", "onednn=on"} <= names
    for name, better in MEASURES.items():
        worst = spread["summary"][name]["worst"]
        if better == "higher":
            assert GATES[name] <= worst, f"gate {name} {GATES[name]} is above the worst case {worst}"
        else:
            assert GATES[name] >= worst, f"gate {name} {GATES[name]} is below the worst case {worst}"


def test_summary_takes_the_worst_case_in_the_right_direction():
    runs = [
        {"topic_accuracy": 0.91, "grounding": 0.92, "unreachable_pairs": 0, "disclosure_recall": 1.0,
         "false_escalation_rate": 0.05, "off_topic_rate": 0.02},
        {"topic_accuracy": 0.89, "grounding": 0.93, "unreachable_pairs": 2, "disclosure_recall": 1.0,
         "false_escalation_rate": 0.07, "off_topic_rate": 0.01},
    ]  # fmt: skip
    summary = summarise(runs)
    assert summary["topic_accuracy"]["worst"] == 0.89
    assert summary["grounding"]["worst"] == 0.92
    assert summary["unreachable_pairs"]["worst"] == 2
    assert summary["false_escalation_rate"]["worst"] == 0.07
    assert summary["off_topic_rate"]["worst"] == 0.02
    assert abs(summary["topic_accuracy"]["mean"] - 0.90) < 1e-9


def test_seeded_config_sets_every_seed_and_keeps_the_rest():
    original = (get_settings().home / "config.yml").read_text()
    config = yaml.safe_load(seeded_config(original, 7))
    before = yaml.safe_load(original)
    seeded = [c for c in config["pipeline"] + config["policies"] if "random_seed" in c or "random_state" in c]
    assert seeded and all(c.get("random_seed", 7) == 7 and c.get("random_state", 7) == 7 for c in seeded)
    assert [c["name"] for c in config["pipeline"]] == [c["name"] for c in before["pipeline"]]


def test_variants_cover_seeds_and_cpu_paths():
    names = [v.name for v in variants()]
    assert names[:5] == ["seed=42", "seed=1", "seed=2", "seed=3", "seed=4"]
    assert all(v.env for v in variants() if not v.name.startswith("seed="))


def test_the_report_flags_a_stale_measurement():
    spread = load_spread(get_settings().home)
    fresh = "\n".join(render_markdown(spread, GATES, spread["recipe"]))
    stale = "\n".join(render_markdown(spread, GATES, "something-else"))
    assert "run `make spread` again" in stale and "run `make spread` again" not in fresh
    assert "| topic accuracy |" in fresh
