"""NLU parse timing: ``python -m bot.bench.parse MODEL TEXTS.json OUT.json``, run as its own process.

Loads the model once, parses each text once to warm up, then times a second pass message by message.
Writes the predicted intent and the parse time (ms) of each text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path


async def _parse_all(model: str, texts: list[str]) -> dict:
    from rasa.core.agent import Agent
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    # Rasa logs every parse at debug level; that would be timed too.
    configure_logging_and_warnings(logging.WARNING)
    configure_structlog(logging.WARNING)
    started = time.monotonic()
    agent = Agent.load(model)
    load_seconds = time.monotonic() - started
    for text in texts:  # warm-up pass: first calls build TensorFlow graphs
        await agent.parse_message(text)
    intents, latencies = [], []
    for text in texts:
        t = time.perf_counter()
        parsed = await agent.parse_message(text)
        latencies.append((time.perf_counter() - t) * 1000)
        intents.append((parsed.get("intent") or {}).get("name"))
    return {"model": model, "load_seconds": load_seconds, "intents": intents, "latencies_ms": latencies}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m bot.bench.parse MODEL TEXTS.json OUT.json", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    texts = json.loads(Path(argv[1]).read_text())
    result = asyncio.run(_parse_all(argv[0], texts))
    Path(argv[2]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
