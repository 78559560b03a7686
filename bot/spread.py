"""``schoolguide spread``: how much the held-out scores move with the training seed and the CPU's code paths.

The quality gate in ``make test`` scores the model trained on whatever machine runs it. A gate is only honest
if it holds for every model the same commit can train, so this command trains the NLU model once per variant
(several seeds, then the CPU paths that can be switched on one machine: BLAS kernels, thread counts, numpy's
SIMD dispatch, TensorFlow's oneDNN), each from an empty Rasa cache and in its own process, scores each with
``schoolguide eval`` in that same environment, and writes the mean, minimum and maximum of every gated measure
to ``reports/spread.json``. ``reports/eval.md`` shows it next to the gates, and a test checks that every gate
sits at or below the worst case measured here (tests/test_spread.py).

It takes about 4 minutes a variant on 2 cores, so it is its own target (``make spread``), not part of
``make test``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bot.settings import get_settings

SPREAD_FILE = Path("reports/spread.json")
SEEDS = (42, 1, 2, 3, 4)
# Environment variables that choose a different CPU code path for the same computation.
CPU_VARIANTS: dict[str, dict[str, str]] = {
    # One thread for BLAS, OpenMP and TensorFlow: a different summation order in every parallel reduction.
    "threads=1": {
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
    },
    # OpenBLAS kernels written for older CPUs (AVX without AVX2; SSE3 only).
    "openblas=Sandybridge": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "openblas=Prescott": {"OPENBLAS_CORETYPE": "Prescott"},
    # numpy's own SIMD loops (exp, log, sums) without AVX2/FMA3, as on an older CPU.
    "numpy-no-avx2": {"NPY_DISABLE_CPU_FEATURES": "AVX2 FMA3 F16C"},
    # TensorFlow's oneDNN kernels, which TensorFlow switches on by itself on some Intel CPUs.
    "onednn=on": {"TF_ENABLE_ONEDNN_OPTS": "1"},
}
# The measures the gate in bot/evaluation.py checks, and which way is better.
MEASURES = {
    "topic_accuracy": "higher",
    "grounding": "higher",
    "unreachable_pairs": "lower",
    "disclosure_recall": "higher",
    "false_escalation_rate": "lower",
    "off_topic_rate": "lower",
}


@dataclass
class Variant:
    name: str
    seed: int = SEEDS[0]
    env: dict[str, str] = field(default_factory=dict)


def variants(seeds: tuple[int, ...] = SEEDS, cpu: bool = True) -> list[Variant]:
    found = [Variant(f"seed={s}", seed=s) for s in seeds]
    if cpu:
        found += [Variant(name, env=env) for name, env in CPU_VARIANTS.items()]
    return found


def recipe_fingerprint(home: Path) -> str:
    """What the spread depends on: the NLU config and training data (seeds are set per variant), and the
    scope words (bot/nlp/scope.yml), which decide what is out of scope."""
    digest = hashlib.sha256()
    files = [home / "config.yml", *sorted((home / "data" / "nlu").rglob("*.yml")), home / "bot/nlp/scope.yml"]
    for file in files:
        digest.update(file.relative_to(home).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def seeded_config(config_text: str, seed: int) -> str:
    """``config.yml`` with every component's seed set to ``seed`` (``random_seed`` and ``random_state``)."""
    config = yaml.safe_load(config_text)
    for section in ("pipeline", "policies"):
        for component in config.get(section) or []:
            for key in ("random_seed", "random_state"):
                if key in component:
                    component[key] = seed
            if component.get("name") == "LogisticRegressionClassifier":
                component["random_state"] = seed
    return yaml.safe_dump(config, sort_keys=False)


def cpu_description() -> str:
    model = platform.processor() or platform.machine()
    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        model = found.group(1).strip() if found else model
        listed = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
        have = set(listed.group(1).split()) if listed else set()
        wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
        flags = " ".join(f for f in wanted if f in have)
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores; {flags or 'flags unknown'})"


def run_variant(variant: Variant, home: Path, work: Path) -> dict:
    """Train the NLU model for one variant from an empty cache, then score it in the same environment."""
    from bot.runner import rasa_env

    folder = work / re.sub(r"[^A-Za-z0-9]+", "-", variant.name)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yml"
    config.write_text(seeded_config((home / "config.yml").read_text(), variant.seed))
    env = rasa_env(get_settings())
    env.update(variant.env)
    env["RASA_CACHE_DIRECTORY"] = str(folder / "cache")
    started = time.monotonic()
    subprocess.run(
        [str(Path(sys.executable).with_name("rasa")), "train", "nlu", "--config", str(config),
         "--nlu", "data/nlu", "--out", str(folder), "--fixed-model-name", "nlu"],
        cwd=home, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    trained = time.monotonic() - started
    reports = folder / "reports"
    subprocess.run(
        [sys.executable, "-m", "bot.cli", "eval", "--model", str(folder / "nlu.tar.gz"),
         "--report-dir", str(reports)],
        cwd=home, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    results = json.loads((reports / "eval.json").read_text())
    return {"variant": variant.name, "seed": variant.seed, "env": variant.env,
            "training_seconds": round(trained, 1), **measures(results)}  # fmt: skip


def measures(results: dict) -> dict:
    """The gated measures of one ``eval.json``."""
    a, d = results["assistant"], results["detection"]
    return {
        "topic_accuracy": a["accuracy"],
        "grounding": a["grounding"],
        "unreachable_pairs": len(a.get("unreachable", [])),
        "disclosure_recall": d["recall"],
        "false_escalation_rate": d["false_escalation_rate"],
        "off_topic_rate": results["dialogue"]["off_topic"]["rate"],
    }


def summarise(runs: list[dict]) -> dict:
    """Mean, minimum, maximum and worst case of each measure over the runs."""
    summary = {}
    for name, better in MEASURES.items():
        values = [r[name] for r in runs]
        low, high = min(values), max(values)
        summary[name] = {
            "mean": statistics.fmean(values),
            "min": low,
            "max": high,
            "worst": low if better == "higher" else high,
        }
    return summary


def write_report(runs: list[dict], home: Path, path: Path) -> dict:
    report = {
        "recipe": recipe_fingerprint(home),
        "cpu": cpu_description(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": runs,
        "summary": summarise(runs),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def load_spread(home: Path) -> dict | None:
    path = home / SPREAD_FILE
    return json.loads(path.read_text()) if path.exists() else None


def render_markdown(spread: dict | None, gates: dict, current_recipe: str) -> list[str]:
    """The spread section of reports/eval.md."""
    lines = ["## Spread across seeds and CPU settings (`make spread`)", ""]
    if not spread:
        return lines + ["Not measured yet: run `make spread`.", ""]
    stale = (
        ""
        if spread["recipe"] == current_recipe
        else " **The config or NLU data changed since: run `make spread` again.**"
    )
    runs = spread["runs"]
    lines += [
        f"{len(runs)} trainings of the NLU model (recipe `{spread['recipe']}`), each from an empty cache, on "
        f"{spread['cpu']}, {spread['measured_at']}.{stale} Each gate sits at or below the worst case.",
        "",
        "| measure | mean | min | max | worst case | gate |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, better in MEASURES.items():
        s = spread["summary"].get(name)
        if s is None:  # measured before this measure existed
            continue
        fmt = (lambda v: f"{v:.0f}") if name == "unreachable_pairs" else (lambda v: f"{v:.1%}")
        sign = ">=" if better == "higher" else "<="
        lines.append(
            f"| {name.replace('_', ' ')} | {fmt(s['mean'])} | {fmt(s['min'])} | {fmt(s['max'])} "
            f"| {fmt(s['worst'])} | {sign} {fmt(gates[name])} |"
        )
    lines += [
        "",
        "| variant | topic accuracy | grounding | unreached pairs | recall | false esc. | off-topic "
        "| training |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        r = {"off_topic_rate": float("nan"), **r}
        lines.append(
            f"| {r['variant']} | {r['topic_accuracy']:.1%} | {r['grounding']:.1%} | {r['unreachable_pairs']} "
            f"| {r['disclosure_recall']:.1%} | {r['false_escalation_rate']:.1%} "
            f"| {r['off_topic_rate']:.1%} | {r['training_seconds']:.0f} s |"
        )
    return lines + [""]


def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    chosen = variants(tuple(args.seeds), cpu=not args.seeds_only)
    work = Path(tempfile.mkdtemp(prefix="schoolguide-spread-"))
    runs = []
    try:
        for variant in chosen:
            print(f"training and scoring {variant.name} ...", flush=True)
            run = run_variant(variant, settings.home, work)
            print(
                f"  topic accuracy {run['topic_accuracy']:.1%}  grounding {run['grounding']:.1%}  "
                f"unreached {run['unreachable_pairs']}  recall {run['disclosure_recall']:.1%}  "
                f"false escalations {run['false_escalation_rate']:.1%}  ({run['training_seconds']:.0f} s)",
                flush=True,
            )
            runs.append(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = write_report(runs, settings.home, settings.home / args.output)
    for name, s in report["summary"].items():
        print(f"{name:<22} mean {s['mean']:.4f}  min {s['min']:.4f}  max {s['max']:.4f}")
    print(f"report: {args.output}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "spread", help="train with several seeds and CPU settings; record how much the held-out scores move"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds to train with")
    parser.add_argument("--seeds-only", action="store_true", help="skip the CPU-setting variants")
    parser.add_argument("--output", type=Path, default=SPREAD_FILE, help="where to write the JSON report")
    parser.set_defaults(func=_run)
