"""Training cost, and the stock-pipeline baseline: train into temporary directories, never into models/."""

from __future__ import annotations

import logging
import re
import subprocess
import time
from pathlib import Path

from bot.runner import _rasa, rasa_env
from bot.settings import Settings

logger = logging.getLogger(__name__)

# The config `rasa init` writes in Rasa 3.x (its commented defaults, spelled out), used as the baseline.
STOCK_CONFIG = """\
# Rasa 3.x `rasa init` default pipeline and policies (written by `schoolguide bench` as a baseline).
recipe: default.v1
language: en
assistant_id: stock-baseline
pipeline:
  - name: WhitespaceTokenizer
  - name: RegexFeaturizer
  - name: LexicalSyntacticFeaturizer
  - name: CountVectorsFeaturizer
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 1
    max_ngram: 4
  - name: DIETClassifier
    epochs: 100
    constrain_similarities: true
  - name: EntitySynonymMapper
  - name: ResponseSelector
    epochs: 100
    constrain_similarities: true
  - name: FallbackClassifier
    threshold: 0.3
    ambiguity_threshold: 0.1
policies:
  - name: MemoizationPolicy
  - name: RulePolicy
  - name: UnexpecTEDIntentPolicy
    max_history: 5
    epochs: 100
  - name: TEDPolicy
    max_history: 5
    epochs: 100
    constrain_similarities: true
"""


_EPOCHS = re.compile(r"Epochs:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+) \[[^,]*?,\s*([\d.]+)s/it")
_COMPONENT = re.compile(r"Starting to train component '(\w+)'")


def training_progress(log_text: str) -> dict:
    """Where a stopped training run had got to: the component, its epochs done/total and seconds per epoch
    (from Rasa's progress bars), and the time that component alone would need for every epoch."""
    components = _COMPONENT.findall(log_text)
    bars = _EPOCHS.findall(log_text)
    if not bars:
        return {"component": components[-1] if components else None}
    done, total, per_epoch = int(bars[-1][0]), int(bars[-1][1]), float(bars[-1][2])
    return {
        "component": components[-1] if components else None,
        "epochs_done": done,
        "epochs_total": total,
        "seconds_per_epoch": per_epoch,
        "component_seconds_estimate": per_epoch * total,
    }


_BAR = re.compile(r"Epochs:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)<")


def component_times(log_text: str) -> dict[str, dict]:
    """Seconds and epochs of each component that trained with an epoch bar (DIET, ResponseSelector, TED),
    from the last progress bar after Rasa's "Starting to train component" line."""
    out: dict[str, dict] = {}
    marks = list(_COMPONENT.finditer(log_text))
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        segment = log_text[mark.end() : following.start() if following else len(log_text)]
        bars = _BAR.findall(segment)
        if not bars:
            continue
        done, total, hours, minutes, seconds = bars[-1]
        out[mark.group(1)] = {
            "epochs_done": int(done),
            "epochs_total": int(total),
            "seconds": int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds),
        }
    return out


def train(settings: Settings, config: Path, out_dir: Path, name: str, nlu_only: bool = False,
          timeout: float | None = None) -> dict:  # fmt: skip
    """Train from scratch (an empty Rasa cache in ``out_dir``) and time it; returns seconds and model size.

    With ``timeout``, a run that takes longer is stopped and reported as ``timed_out`` with its progress."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = rasa_env(settings)
    env["RASA_CACHE_DIRECTORY"] = str(out_dir / f"cache-{name}")  # no reuse of earlier training runs
    if nlu_only:
        cmd = [
            _rasa(),
            "train",
            "nlu",
            "--config",
            str(config),
            "--domain",
            "domain.yml",
            "--nlu",
            "data/nlu",
        ]
    else:
        cmd = [_rasa(), "train", "--config", str(config), "--domain", "domain.yml", "--data", "data"]
    cmd += ["--out", str(out_dir), "--fixed-model-name", name]
    log = out_dir / f"train-{name}.log"
    logger.info("training %s: %s", name, " ".join(cmd))
    started = time.monotonic()
    with log.open("w") as out:
        try:
            subprocess.run(
                cmd, cwd=settings.home, env=env, stdout=out, stderr=subprocess.STDOUT,
                check=True, timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            seconds = time.monotonic() - started
            logger.warning("training %s stopped after %.0f s (time limit)", name, seconds)
            return {
                "timed_out": True,
                "seconds": seconds,
                **training_progress(log.read_text(errors="replace")),
            }
    seconds = time.monotonic() - started
    model = out_dir / f"{name}.tar.gz"
    return {
        "seconds": seconds,
        "model": str(model),
        "size_mib": model.stat().st_size / 1024 / 1024,
        "components": component_times(log.read_text(errors="replace")),
    }


def write_stock_config(path: Path) -> Path:
    path.write_text(STOCK_CONFIG)
    return path
