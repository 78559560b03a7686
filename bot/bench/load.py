"""The load client: ``python -m bot.bench.load PLAN.json OUT.json``, run as its own process by the bench.

It keeps ``concurrency`` conversations going against the REST channel for ``duration`` seconds (or until
``max_messages``), each a realistic exchange: a policy question from one audience at one school, then
follow-ups ("why?", "where does it say that?") and sometimes a second question. About ``disclosure_share``
of the messages are disclosures, each from its own sender id so the store can be checked afterwards.
It writes every message's timing and outcome to OUT.json; the bench turns those into the report.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path

import aiohttp

WHY = ("why?", "why is that?", "but why", "what's the reason for that?")
SOURCE = ("where does it say that?", "which part of the policy is that?", "can I see the rule?")


class Conversations:
    """Hands out the next conversation (a list of messages) so disclosures stay near their share."""

    def __init__(self, plan: dict, rng: random.Random):
        self.plan = plan
        self.rng = rng
        self.messages = 0
        self.disclosures = 0
        self.serial = 0

    def next(self) -> tuple[str, dict, list[tuple[str, str]]]:
        """(sender id, metadata, [(kind, text), ...])."""
        plan, rng = self.plan, self.rng
        self.serial += 1
        prefix = plan["run_id"]
        share = plan.get("disclosure_share", 0.0)
        if plan.get("disclosures") and self.disclosures < share * (self.messages + 1):
            item = rng.choice(plan["disclosures"])
            self.disclosures += 1
            self.messages += 1
            metadata = {"school": rng.choice(plan["schools"]), "audience": item["audience"]}
            return f"{prefix}-d{self.serial}", metadata, [("disclosure", item["text"])]
        first = rng.choice(plan["questions"])
        turns = [("question", first["text"])]
        if plan.get("followups", True):
            if rng.random() < 0.5:
                turns.append(("followup", rng.choice(WHY)))
            if rng.random() < 0.4:
                turns.append(("followup", rng.choice(SOURCE)))
            if rng.random() < 0.3:
                second = rng.choice([q for q in plan["questions"] if q["school"] == first["school"]])
                turns.append(("question", second["text"]))
        self.messages += len(turns)
        metadata = {"school": first["school"], "audience": first["audience"]}
        return f"{prefix}-c{self.serial}", metadata, turns


def _reply_problem(kind: str, replies: object) -> str | None:
    """Why a 200 reply is still wrong (empty, or a disclosure answered as a policy question)."""
    if not isinstance(replies, list) or not replies:
        return "empty reply"
    if kind == "disclosure" and any(
        isinstance(m, dict) and (m.get("custom") or {}).get("type") == "policy_answer" for m in replies
    ):
        return "disclosure answered as a policy question"
    return None


async def _worker(plan, session, conversations, records, disclosures, t0, deadline):
    url = plan["url"].rstrip("/") + "/webhooks/rest/webhook"
    think = plan.get("think_seconds", [0, 0])
    max_messages = plan.get("max_messages")
    while time.monotonic() < deadline and (max_messages is None or len(records) < max_messages):
        sender, metadata, turns = conversations.next()
        for kind, text in turns:
            if time.monotonic() >= deadline:
                return
            started = time.monotonic()
            error = None
            try:
                async with session.post(
                    url, json={"sender": sender, "message": text, "metadata": metadata}
                ) as response:
                    body = await response.json(content_type=None)
                    if response.status != 200:
                        error = f"HTTP {response.status}"
                    else:
                        error = _reply_problem(kind, body)
            except Exception as exc:  # every failure is recorded, none stops the run
                error = f"{type(exc).__name__}: {exc}"[:200]
            finished = time.monotonic()
            records.append([round(started - t0, 4), round((finished - started) * 1000, 3), kind, error])
            if kind == "disclosure":
                disclosures[sender] = error is None
            if error is not None:
                break  # a broken conversation is not continued
            if think[1] > 0:
                await asyncio.sleep(conversations.rng.uniform(*think))


async def run(plan: dict) -> dict:
    rng = random.Random(plan.get("seed", 1))
    conversations = Conversations(plan, rng)
    records: list[list] = []
    disclosures: dict[str, bool] = {}  # sender id -> replied to correctly
    timeout = aiohttp.ClientTimeout(total=plan.get("timeout", 60))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        t0 = time.monotonic()
        deadline = t0 + plan["duration"]
        await asyncio.gather(
            *(
                _worker(plan, session, conversations, records, disclosures, t0, deadline)
                for _ in range(plan["concurrency"])
            )
        )
        elapsed = time.monotonic() - t0
    return {
        "run_id": plan["run_id"],
        "concurrency": plan["concurrency"],
        "elapsed": elapsed,
        "records": records,
        # Every disclosure sent, answered or not: each must be in the store exactly once afterwards.
        "disclosures_sent": sorted(disclosures),
        "disclosures_replied": sorted(s for s, ok in disclosures.items() if ok),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bot.bench.load PLAN.json OUT.json", file=sys.stderr)
        return 2
    plan = json.loads(Path(argv[0]).read_text())
    result = asyncio.run(run(plan))
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
