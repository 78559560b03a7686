"""The Rasa project stays in step with the topic catalogue: every topic is reachable and answered."""

import ast
from pathlib import Path

import pytest
import yaml

from bot.answering import intent_for_topic


def _yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def topics(project_root):
    return [t["id"] for t in _yaml(project_root / "knowledge" / "topics.yml")["topics"]]


@pytest.fixture(scope="module")
def domain(project_root):
    return _yaml(project_root / "domain.yml")


def test_every_topic_has_an_intent_in_the_domain(topics, domain):
    policy_intents = {i for i in domain["intents"] if i.startswith("policy_")}
    assert policy_intents == {intent_for_topic(t) for t in topics}


def test_every_topic_intent_is_answered_by_the_policy_action(topics, project_root):
    rules = _yaml(project_root / "data" / "rules" / "policy.yml")["rules"]
    answered = {
        rule["steps"][0]["intent"]
        for rule in rules
        if rule["steps"][1:] == [{"action": "action_answer_policy"}]
    }
    assert answered == {intent_for_topic(t) for t in topics}


def test_every_domain_intent_has_training_examples(domain, project_root):
    examples: dict[str, int] = {}
    for path in (project_root / "data" / "nlu").glob("*.yml"):
        for item in _yaml(path).get("nlu", []):
            if "intent" in item:
                name = item["intent"].split("/")[0]
                examples[name] = examples.get(name, 0) + len(
                    [line for line in item["examples"].splitlines() if line.strip().startswith("- ")]
                )
    missing = [i for i in domain["intents"] if i != "nlu_fallback" and examples.get(i, 0) == 0]
    assert missing == []


def test_every_custom_action_in_the_domain_is_implemented(domain, project_root):
    implemented = set()
    for path in (project_root / "actions").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "name":
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Constant):
                        implemented.add(ret.value.value)
    assert set(domain["actions"]) <= implemented


def test_no_policy_text_in_domain_responses(domain, project_root):
    # Answers come only from the clause base: no response may quote a school's policy.
    policies = [p.read_text() for p in (project_root / "knowledge").glob("*/policy.txt")]
    for name, variants in domain["responses"].items():
        for variant in variants:
            for sentence in variant["text"].split(". "):
                if len(sentence) > 40:
                    assert not any(sentence in policy for policy in policies), (name, sentence)
