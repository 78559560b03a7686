"""Training cost, and the stock-pipeline baseline: train into temporary directories, never into models/."""

from __future__ import annotations

import logging
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


def train(settings: Settings, config: Path, out_dir: Path, name: str, nlu_only: bool = False) -> dict:
    """Train from scratch (an empty Rasa cache in ``out_dir``) and time it; returns seconds and model size."""
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
        subprocess.run(cmd, cwd=settings.home, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    seconds = time.monotonic() - started
    model = out_dir / f"{name}.tar.gz"
    return {"seconds": seconds, "model": str(model), "size_mib": model.stat().st_size / 1024 / 1024}


def write_stock_config(path: Path) -> Path:
    path.write_text(STOCK_CONFIG)
    return path
