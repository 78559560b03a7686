"""The dialogue around contact details split over two messages, checked against the project's own rules.

Rasa's RulePolicy (the policy that decides every step of these flows) is trained in-process on domain.yml,
data/rules and data/stories, then each story in tests/conversations/disclosure_contact.yml is replayed the way
``rasa test core`` replays it: every action is predicted from the conversation so far, and a form the story
leaves for another action is rejected first. This needs no trained model (``make test-conversations`` runs
the same stories against the full one), and fails when a rule change sends a message in these conversations
somewhere else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("rasa")

STORIES = "tests/conversations/disclosure_contact.yml"


@pytest.fixture(scope="module")
def rules(project_root: Path, tmp_path_factory):
    from rasa.core.policies.rule_policy import RulePolicy
    from rasa.engine.graph import ExecutionContext, GraphSchema
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.shared.core.generator import TrainingDataGenerator
    from rasa.shared.importers.importer import TrainingDataImporter

    importer = TrainingDataImporter.load_from_dict(
        domain_path=str(project_root / "domain.yml"),
        # data/nlu too: the chitchat retrieval intent there is what makes utter_chitchat an action.
        training_data_paths=[str(project_root / "data")],
    )
    domain = importer.get_domain()
    trackers = TrainingDataGenerator(
        importer.get_stories(), domain, remove_duplicates=True, augmentation_factor=0
    ).generate()
    # As in config.yml.
    config = {
        **RulePolicy.get_default_config(),
        "core_fallback_threshold": 0.3,
        "core_fallback_action_name": "action_default_fallback",
        "enable_fallback_prediction": True,
    }
    policy = RulePolicy.create(
        config,
        LocalModelStorage(tmp_path_factory.mktemp("rule_policy")),
        Resource("rule_policy"),
        ExecutionContext(GraphSchema({}), "contact_followup"),
    )
    policy.train(trackers, domain)  # also checks the rules for contradictions and incomplete rules
    return policy, domain


def _stories(project_root: Path, domain):
    from rasa.shared.core.generator import TrainingDataGenerator
    from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
    from rasa.shared.core.training_data.structures import StoryGraph

    steps = YAMLStoryReader(domain).read_from_file(project_root / STORIES)
    return TrainingDataGenerator(
        StoryGraph(steps),
        domain,
        remove_duplicates=False,
        unique_last_num_states=None,
        augmentation_factor=0,
        use_story_concatenation=False,
    ).generate_story_trackers()


def _predict(policy, domain, tracker) -> str | None:
    prediction = policy.predict_action_probabilities(tracker, domain)
    best = max(range(len(prediction.probabilities)), key=prediction.probabilities.__getitem__)
    if prediction.probabilities[best] < 0.5:  # RulePolicy's fallback guess: no rule applies
        return None
    return domain.action_names_or_texts[best]


def _replay(policy, domain, story) -> list[str]:
    """Every step where the rules predict something other than the story: empty when the story holds."""
    from rasa.shared.core.events import ActionExecuted, ActionExecutionRejected, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    tracker = DialogueStateTracker(story.sender_id, domain.slots)
    started = False
    problems = []
    for event in story.events:
        if isinstance(event, UserUttered):
            started = True
        if isinstance(event, ActionExecuted) and started:
            gold = event.action_name
            predicted = _predict(policy, domain, tracker)
            if predicted != gold and predicted == tracker.active_loop_name in domain.form_names:
                # What rasa test core does: the story says the form did not take this message.
                tracker.update(ActionExecutionRejected(predicted))
                predicted = _predict(policy, domain, tracker)
            if predicted != gold:
                problems.append(f"after {len(tracker.events)} events: expected {gold}, rules say {predicted}")
        tracker.update(event, domain)
    return problems


def test_every_contact_conversation_follows_the_rules(rules, project_root):
    policy, domain = rules
    stories = _stories(project_root, domain)
    names = {story.sender_id for story in stories}
    assert "a pupil gives their name, then their class in the next message, and both are kept" in names
    assert (
        "a parent says yes, is asked for the number, sends it, then an email, both kept with the same report"
        in names
    )
    # Issue #15: only contact details are taken as contact details.
    assert {
        "a parent's question after the offer gets the policy answer and is not kept as contact details",
        "a child's safety question after the offer is answered, not kept as contact details",
        "why after the offer is answered as a follow-up, not kept as contact details",
        "a pupil says yes, is asked for their name and class, and gives them",
        "a pupil answers the offer with their name and year straight away",
        "a new disclosure instead of an answer to the offer is recorded and the offer made again",
    } <= names
    failures = {story.sender_id: _replay(policy, domain, story) for story in stories}
    assert {name: problems for name, problems in failures.items() if problems} == {}


def _waiting_for_more(domain):
    """A pupil's disclosure, "jess" kept as contact details, and contact_more_form now waiting."""
    from rasa.shared.core.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    def user(text, intent):
        return [ActionExecuted("action_listen"), UserUttered(text, {"name": intent, "confidence": 0.9})]

    events = [
        *user("my teacher keeps messaging me and says its our secret", "disclose"),
        ActionExecuted("action_log_disclosure"),
        SlotSet("disclosure_reference", "SG-7K3P-QX9M"),
        ActionExecuted("utter_disclosure_safe"),
        ActionExecuted("action_disclosure_reference"),
        SlotSet("contact_offered", True),
        ActionExecuted("contact_form"),
        ActiveLoop("contact_form"),
        SlotSet("requested_slot", "contact_details"),
        *user("jess", "disclose"),
        SlotSet("contact_details", "jess"),
        ActionExecuted("contact_form"),
        ActiveLoop(None),
        SlotSet("requested_slot", None),
        ActionExecuted("action_save_contact_details"),
        SlotSet("contact_details", None),
        SlotSet("contact_offered", None),
        SlotSet("contact_followup", True),
        ActionExecuted("contact_more_form"),
        ActiveLoop("contact_more_form"),
        SlotSet("requested_slot", "contact_more"),
    ]
    return DialogueStateTracker.from_events("widget-42", events, slots=domain.slots), user


@pytest.mark.parametrize(
    ("intent", "answer"),
    [
        ("disclose", "action_log_disclosure"),  # a new disclosure is recorded first, as always
        ("policy_minimum_age", "action_answer_policy"),
        ("thank", "action_follow_up"),
        ("greet", "utter_greet"),
        ("affirm", "action_follow_up"),
        ("deny", "action_follow_up"),
        ("out_of_scope", "action_default_fallback"),
        ("nlu_fallback", "action_two_stage_fallback"),
        ("chitchat", "utter_chitchat"),
        ("ask_why", "action_follow_up"),
    ],
)
def test_a_message_the_form_does_not_take_is_answered_as_usual_then_the_wait_ends(rules, intent, answer):
    from rasa.shared.core.events import ActionExecuted, ActionExecutionRejected, ActiveLoop, SlotSet

    policy, domain = rules
    tracker, user = _waiting_for_more(domain)
    assert _predict(policy, domain, tracker) == "action_listen"
    for event in user("something that is not contact details", intent):
        tracker.update(event, domain)
    assert _predict(policy, domain, tracker) == "contact_more_form"  # the form sees every message first
    tracker.update(ActionExecutionRejected("contact_more_form"))  # action_extract_contact_more took nothing
    assert _predict(policy, domain, tracker) == answer
    tracker.update(ActionExecuted(answer))
    if answer in ("action_log_disclosure", "action_default_fallback", "action_two_stage_fallback"):
        return  # the disclosure rules, the hand-off and the fallback loop take over from here
    # Back to the form, which validate_contact_more_form ends; nothing more is said.
    assert _predict(policy, domain, tracker) == "contact_more_form"
    for event in (ActionExecuted("contact_more_form"), ActiveLoop(None), SlotSet("requested_slot", None)):
        tracker.update(event, domain)
    assert _predict(policy, domain, tracker) == "action_save_more_contact_details"
    tracker.update(ActionExecuted("action_save_more_contact_details"))
    tracker.update(SlotSet("contact_followup", None))
    assert _predict(policy, domain, tracker) == "action_listen"


def test_after_a_decline_nothing_waits(rules):
    from rasa.shared.core.events import ActionExecuted, SlotSet
    from rasa.shared.core.trackers import DialogueStateTracker

    policy, domain = rules
    waiting, _ = _waiting_for_more(domain)
    events = list(waiting.events)
    # As if the person had said "no thanks": action_save_contact_details keeps nothing and opens no wait.
    saved = events.index(ActionExecuted("action_save_contact_details"))
    declined = events[: saved + 3] + [SlotSet("contact_followup", None)]
    tracker = DialogueStateTracker.from_events("widget-42", declined, slots=domain.slots)
    assert _predict(policy, domain, tracker) == "action_listen"
    kept = DialogueStateTracker.from_events("widget-42", events[: saved + 4], slots=domain.slots)
    assert _predict(policy, domain, kept) == "contact_more_form"


def _offer_waiting(domain):
    """A pupil's disclosure, and contact_form asking for contact details (the offer)."""
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    waiting, user = _waiting_for_more(domain)
    events = list(waiting.events)
    answer = [i for i, event in enumerate(events) if isinstance(event, UserUttered)][1]
    return DialogueStateTracker.from_events("widget-42", events[: answer - 1], slots=domain.slots), user


@pytest.mark.parametrize(
    ("intent", "answer"),
    [
        ("disclose", "action_log_disclosure"),  # a new disclosure is recorded first, as always
        ("policy_minimum_age", "action_answer_policy"),  # "what age can kids have WhatsApp"
        ("policy_meeting_online_friends", "action_answer_policy"),  # "is it ok to meet my online bestie irl"
        ("ask_why", "action_follow_up"),  # "why?"
        ("thank", "action_follow_up"),
        ("greet", "utter_greet"),
        ("affirm", "action_follow_up"),  # a yes the form did not take (after the prompt)
        ("deny", "action_follow_up"),
        ("out_of_scope", "action_default_fallback"),
        ("nlu_fallback", "action_two_stage_fallback"),
        ("chitchat", "utter_chitchat"),
    ],
)
def test_a_message_the_contact_form_does_not_take_is_answered_as_usual_then_the_form_ends(
    rules, intent, answer
):
    """Issue #15: after the offer, anything but an answer to it is handled as a new message."""
    from rasa.shared.core.events import ActionExecuted, ActionExecutionRejected, ActiveLoop, SlotSet

    policy, domain = rules
    tracker, user = _offer_waiting(domain)
    assert tracker.active_loop_name == "contact_form"
    assert _predict(policy, domain, tracker) == "action_listen"
    for event in user("something that is not an answer to the offer", intent):
        tracker.update(event, domain)
    assert _predict(policy, domain, tracker) == "contact_form"  # the form sees every message first
    tracker.update(ActionExecutionRejected("contact_form"))  # action_extract_contact_details took nothing
    assert _predict(policy, domain, tracker) == answer
    tracker.update(ActionExecuted(answer))
    if answer in ("action_log_disclosure", "action_default_fallback", "action_two_stage_fallback"):
        return  # the disclosure rules (see the story in STORIES) and the fallback loop take over from here
    # Back to the form, which validate_contact_form ends; action_save_contact_details keeps and says nothing.
    assert _predict(policy, domain, tracker) == "contact_form"
    for event in (ActionExecuted("contact_form"), ActiveLoop(None), SlotSet("requested_slot", None)):
        tracker.update(event, domain)
    assert _predict(policy, domain, tracker) == "action_save_contact_details"
    tracker.update(ActionExecuted("action_save_contact_details"))
    for event in (SlotSet("contact_offered", None), SlotSet("contact_followup", None)):
        tracker.update(event, domain)
    assert _predict(policy, domain, tracker) == "action_listen"
