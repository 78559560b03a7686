"""``schoolguide build-nlp``."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.settings import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("build-nlp", help="build the project's spaCy pipeline (no downloads)")
    parser.add_argument("--output", type=Path, help="where to write it (default: SCHOOLGUIDE_SPACY_MODEL)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from bot.nlp.build import ensure_pipeline

    settings = get_settings()
    output = args.output or settings.spacy_model_path
    output.parent.mkdir(parents=True, exist_ok=True)
    built = ensure_pipeline(output, settings.knowledge_dir / "entities.yml", force=args.force)
    print(f"spaCy pipeline {'built' if built else 'up to date'}: {output}")
    return 0
