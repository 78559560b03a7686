"""The rules layer of disclosure detection (bot/safeguarding/detector.py + vocabulary.yml).

Everything here runs the real spaCy pipeline and the real vocabulary; nothing is stubbed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from bot.safeguarding import detector as detector_module
from bot.safeguarding.detector import (
    CATEGORIES,
    NO_RISK,
    RISKS,
    Assessment,
    Detector,
    VocabularyError,
    assess,
    assessment_from_parse_data,
    blank_pipeline,
    get_detector,
    load_pipeline,
    load_vocabulary,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# The issue's examples: (text, a category that must be among the result's, the lowest acceptable risk).
ISSUE_EXAMPLES = [
    ("my teacher keeps messaging me on snapchat and says its our secret", "adult_boundary_breach", "high"),
    ("someone is sharing my nudes", "image_sharing_sextortion", "high"),
    ("i want to kill myself", "self_harm_suicide", "high"),
    ("my step dad hits me", "physical_abuse_neglect", "high"),
    ("a man on roblox wants pictures", "sexual_abuse_grooming", "high"),
    ("a year 5 girl just told me an adult asked her for photos", "sexual_abuse_grooming", "high"),
    ("a stranger is asking my daughter to video call in her bedroom", "sexual_abuse_grooming", "high"),
    (
        "everyone in my class is sending mean messages about me and i cant stop crying",
        "bullying",
        "medium",
    ),
    ("i cut myself", "self_harm_suicide", "high"),
    ("i dont want to be here anymore", "self_harm_suicide", "high"),
    ("someone online keeps sending me videos saying we should attack people", "radicalisation", "high"),
    ("sir added me on insta and keeps dming me", "adult_boundary_breach", "high"),
    ("my mum never comes home and there is no food in the house", "physical_abuse_neglect", "high"),
]

ORDINARY_QUESTIONS = [
    "what laws cover grooming?",
    "what should a teacher do if a child reports bullying?",
    "what does the policy say about sexting?",
    "how do I report a post?",
    "Can staff send friend requests to pupils on Facebook?",
    "What happens if a member of staff messages a pupil on Snapchat?",
    "how can i tell if my child is being groomed online?",
    "What is the procedure for reporting self-harm concerns?",
    "can my teacher follow me on tiktok",
    "What should staff do if a pupil says they want to kill themselves?",
    "What support is there for children who have been bullied?",
    "Our year 6 class is learning about cyberbullying",
    "Does the policy say anything about extremist content or radicalisation online?",
]


def _rank(risk: str) -> int:
    return len(RISKS) - RISKS.index(risk)


def _training_examples() -> list[str]:
    data = yaml.safe_load((PROJECT_ROOT / "data" / "nlu" / "disclosure.yml").read_text(encoding="utf-8"))
    blocks = [block for block in data["nlu"] if block.get("intent") == "disclose"]
    return [
        line[2:].strip()
        for block in blocks
        for line in block["examples"].splitlines()
        if line.startswith("- ")
    ]


# --- vocabulary -------------------------------------------------------------------------------------------


def test_vocabulary_loads_from_yaml_and_compiles():
    vocabulary = load_vocabulary()
    assert len(vocabulary.rules) >= 30
    assert {category for rule in vocabulary.rules for category in rule.categories} == set(CATEGORIES)
    # text-speak lives in the YAML, not in Python
    for variant in ("kms", "unalive", "sum1", "ma", "nudez", "pics", "snap", "dm", "step dad"):
        assert variant in vocabulary.variants
    assert {"anchor", "policy", "hypothetical", "specific", "kin"} <= set(vocabulary.cues)
    assert get_detector().vocabulary.rules == vocabulary.rules


def test_vocabulary_is_the_source_of_truth(tmp_path):
    """A rule added to the YAML changes what is detected: nothing about words is hard-coded in Python."""
    raw = yaml.safe_load(detector_module.VOCABULARY_PATH.read_text(encoding="utf-8"))
    text = "the wibblewobble asked me to zorp"
    base = Detector(get_detector().nlp, load_vocabulary())
    assert not base.assess(text).is_disclosure
    raw["rules"].append(
        {
            "name": "test.invented",
            "category": "other",
            "strength": "strong",
            "patterns": ["wibblewobble ~4 zorp"],
        }
    )
    path = tmp_path / "vocabulary.yml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    extended = Detector(get_detector().nlp, load_vocabulary(path))
    assert extended.assess(text) == Assessment(True, ("other",), "medium", ("test.invented",))


@pytest.mark.parametrize(
    "bad_rule",
    [
        {"name": "x", "category": "not_a_category", "patterns": ["a"]},
        {"name": "x", "category": "other", "strength": "sometimes", "patterns": ["a"]},
        {"name": "x", "category": "other", "patterns": []},
        {"name": "x", "category": "other", "risk": "low", "patterns": ["a"]},
    ],
)
def test_malformed_rules_are_rejected(tmp_path, bad_rule):
    path = _vocabulary_with(tmp_path, rules=[bad_rule])
    with pytest.raises(VocabularyError, match="x|rule"):
        load_vocabulary(path)


def test_unknown_class_in_a_pattern_is_rejected(tmp_path):
    path = _vocabulary_with(tmp_path, rules=[{"name": "x", "category": "other", "patterns": ["@NOPE me"]}])
    vocabulary = load_vocabulary(path)  # the file itself is well formed
    with pytest.raises(VocabularyError, match="NOPE"):
        Detector(blank_pipeline(), vocabulary)


@pytest.mark.parametrize("key", ["askers", "asker_determiners", "adjective_endings", "subjects"])
def test_every_grammar_word_list_is_required(tmp_path, key):
    """The grammar's word lists live in vocabulary.yml; a missing one is an error, not a silent empty set."""
    grammar = yaml.safe_load(detector_module.VOCABULARY_PATH.read_text(encoding="utf-8"))["grammar"]
    del grammar[key]
    with pytest.raises(VocabularyError, match=key):
        load_vocabulary(_vocabulary_with(tmp_path, grammar=grammar))


def _vocabulary_with(tmp_path: Path, **replace) -> Path:
    """A copy of the real vocabulary.yml with some top-level sections replaced."""
    raw = yaml.safe_load(detector_module.VOCABULARY_PATH.read_text(encoding="utf-8")) | replace
    path = tmp_path / "vocabulary.yml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


# --- detection ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "category", "min_risk"), ISSUE_EXAMPLES)
def test_issue_examples_are_disclosures(text, category, min_risk):
    result = assess(text)
    assert result.is_disclosure, text
    assert category in result.categories, (text, result)
    assert set(result.categories) <= set(CATEGORIES)
    assert _rank(result.risk) >= _rank(min_risk), (text, result)
    assert result.matched


@pytest.mark.parametrize("text", ORDINARY_QUESTIONS)
def test_ordinary_questions_are_not_escalated(text):
    result = assess(text)
    assert not result.is_disclosure, (text, result.matched)
    assert result == Assessment(False, (), NO_RISK, ())


def test_topic_catalogue_questions_are_not_escalated():
    topics = yaml.safe_load((PROJECT_ROOT / "knowledge" / "topics.yml").read_text(encoding="utf-8"))["topics"]
    questions = [topic["question"] for topic in topics] + [topic["title"] for topic in topics]
    escalated = [(q, assess(q).matched) for q in questions if assess(q).is_disclosure]
    assert escalated == []


def test_every_training_example_is_caught_by_the_rules_alone():
    """Two independent layers: the rules must not depend on the classifier having learnt these."""
    examples = _training_examples()
    assert len(examples) >= 120
    missed = [text for text in examples if not assess(text).is_disclosure]
    assert missed == []


# Grammar that tells an asked-about act from a reported one (each pair differs only in that respect).
@pytest.mark.parametrize(
    ("question", "report"),
    [
        # a modal before the subject asks about an act: "should i put it on facebook?"
        ("they filmed the fight, should i put it on tiktok?", "they filmed me and he put it on tiktok"),
        ("can the school post my photo on the website?", "someone posted my photo on a hate page"),
        # a word after "friend"/"his"/"a" is a noun, not an event: "friend requests"
        ("can staff accept friend requests from parents?", "my teacher requests to follow me on insta"),
        # an -s word after an adjective is a plural noun: "controversial views"
        (
            "is a teacher allowed to have controversial views on his tiktok?",
            "my tutor views my stories every night",
        ),
        # "private" as a setting is not a secret
        ("miss keeps her insta private, can she accept pupils?", "miss told me to keep it private"),
    ],
)
def test_asking_about_an_act_is_not_reporting_it(question, report):
    assert not assess(question).is_disclosure, (question, assess(question).matched)
    assert assess(report).is_disclosure, report


def _ordinary_training_questions() -> list[str]:
    texts = []
    for name in ("policy.yml", "chitchat.yml", "out_of_scope.yml"):
        data = yaml.safe_load((PROJECT_ROOT / "data" / "nlu" / name).read_text(encoding="utf-8"))
        for block in data["nlu"]:
            if block.get("intent") and block["intent"] != "disclose":
                texts += [ln[2:].strip() for ln in block["examples"].splitlines() if ln.startswith("- ")]
    return texts


def test_rules_flag_few_ordinary_training_questions():
    """Precision guard on the training data (never the held-out sets): the rules may escalate an ordinary
    question when in doubt ("a random person added me on snap what do i do"), but that must stay rare.
    41 of ~4,800 are flagged today, nearly all borderline; the ceiling stops the vocabulary drifting wider."""
    questions = _ordinary_training_questions()
    assert len(questions) >= 4000
    flagged = [(q, assess(q).matched) for q in questions if assess(q).is_disclosure]
    assert len(flagged) <= 45, "\n".join(f"{q} {m}" for q, m in flagged)


@pytest.mark.parametrize(
    "text",
    [
        "im going to kill myself tonight",
        "he's here and i'm scared",
        "someone is outside my house and my dad hits me",
        "my step dad hit me and im bleeding",
        "my teacher is messaging me right now and says its our secret",
        "i took a load of tablets and want to die",
    ],
)
def test_immediate_danger_is_immediate(text):
    result = assess(text)
    assert result.is_disclosure and result.risk == "immediate", (text, result)


@pytest.mark.parametrize(
    ("text", "risk"),
    [
        ("i want to kill myself", "high"),
        ("my uncle touches me", "high"),
        ("they keep calling me names in the group chat", "medium"),
    ],
)
def test_risk_by_category(text, risk):
    assert assess(text).risk == risk


@pytest.mark.parametrize(
    ("hypothetical", "real"),
    [
        (
            "What should I do if a stranger contacts my child online?",
            "A stranger has contacted my child online.",
        ),
        ("Can teachers message pupils on Snapchat?", "My teacher messaged me on Snapchat, is that allowed?"),
        (
            "What happens if someone is being bullied online?",
            "My son is being bullied online, what happens now?",
        ),
        (
            "What should I do if a pupil tells me they want to die?",
            "What should I do? A pupil told me today she wants to die.",
        ),
    ],
)
def test_framing_separates_questions_from_events(hypothetical, real):
    assert not assess(hypothetical).is_disclosure, hypothetical
    assert assess(real).is_disclosure, real


def test_when_in_doubt_a_close_person_in_a_hypothetical_still_escalates():
    assert assess("what do i do if my friend wants to kill herself").is_disclosure


# --- normalisation and nasty input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "i want to k\u200bill my\u200dself",  # zero-width characters
        "<p>my step dad <b>hits</b> me</p>",  # HTML
        "i want to kiiiiiill myself",  # stretched letters
        "i want to k1ll mys3lf",  # look-alike digits
        "\uff49 \uff57\uff41\uff4e\uff54 \uff54\uff4f \uff44\uff49\uff45",  # full-width letters (NFKC)
        "\u202bmy step dad hits me\u202c",  # bidi embedding controls
        "MY STEP-DAD HITS ME!!!",
        "i wanna kms 😭😭😭",
        "someone is sharing my nudez",
        "ma stepdad beats me",
    ],
)
def test_obfuscated_disclosures_are_still_caught(text):
    assert assess(text).is_disclosure, text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t  ",
        None,
        12345,
        b"bytes are not text",
        "😀" * 5000,
        "مرحبا، أريد أن أعرف عن سياسة المدرسة",  # Arabic (RTL)
        "שלום, מה המדיניות של בית הספר?",  # Hebrew (RTL)
        "\u200b\u200c\u200d\ufeff\u2060" * 1000,
        "<script>alert('x')</script>" * 200,
        "\x00\x01\x02 control \x7f characters",
        "a" * 100_000,
        "Ṫ̶̢̧̛̺h̴͕͎̆i̵̢̛s̷̨̛ ̷͙̈́i̶̱̍s̵̰̿ ̸̣̈ẓ̵̛a̶̜͝l̷̰̈́g̸͚̈ő̷̬",
        "%s %d {0} {{}} \\ $1 ${x}",
    ],
)
def test_nasty_input_never_raises(text):
    result = assess(text)
    assert isinstance(result, Assessment)
    assert "detector_error" not in result.matched


def test_very_long_input_is_capped_but_keeps_start_and_end():
    filler = "this is a long pasted policy document about school trips. " * 2000  # ~118k characters
    started = time.monotonic()
    assert not assess(filler).is_disclosure
    assert assess("my step dad hits me. " + filler).is_disclosure
    assert assess(filler + " my step dad hits me").is_disclosure
    assert time.monotonic() - started < 30


def test_a_spacy_doc_that_matches_the_text_is_reused():
    """Rasa's SpacyNLP doc is used as is when it fits; the pipeline is not run again."""
    real = get_detector()

    class NoSecondRun:
        def __init__(self, nlp):
            self._nlp = nlp

        def __getattr__(self, name):
            return getattr(self._nlp, name)

        def __call__(self, text):
            raise AssertionError("the pipeline ran although a matching doc was given")

    detector = Detector(real.nlp, real.vocabulary)
    doc = real.nlp("my uncle hits me")  # what SpacyNLP makes of it (lower-cased)
    detector.nlp = NoSecondRun(real.nlp)
    result = detector.assess("My uncle hits me", doc)
    assert result.is_disclosure and result == real.assess("my uncle hits me")


def test_an_unsuitable_doc_is_ignored():
    nlp = get_detector().nlp
    no_lemmas = nlp.make_doc("my step dad hits me")  # tokenised only: no lemmas
    other_text = nlp("what time is lunch")
    assert assess("my step dad hits me", no_lemmas).is_disclosure
    assert assess("my step dad hits me", other_text).is_disclosure
    assert not assess("what time is lunch", nlp("my step dad hits me")).is_disclosure


def test_pipeline_falls_back_to_blank_english_with_lookup_lemmas(tmp_path):
    nlp = load_pipeline(tmp_path / "missing-model")
    assert nlp.lang == "en" and "lemmatizer" in nlp.pipe_names
    assert [t.lemma_ for t in nlp("hits touched")] == ["hit", "touch"]
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.cfg").write_text("not a spaCy config", encoding="utf-8")
    assert "lemmatizer" in load_pipeline(broken).pipe_names


def test_pipeline_saved_by_the_project_is_used(tmp_path):
    saved = blank_pipeline()
    saved.to_disk(tmp_path / "model")
    nlp = load_pipeline(tmp_path / "model")
    assert nlp.path is not None and Path(nlp.path) == tmp_path / "model"


# --- assessment round trip ----------------------------------------------------------------------------------


def test_assessment_round_trips_through_parse_data():
    result = assess("sir added me on insta and keeps dming me")
    assert assessment_from_parse_data({"safeguarding": result.as_dict()}) == result
    from_entities = assessment_from_parse_data(
        {
            "entities": [
                {"entity": "safeguarding_category", "value": "bullying"},
                {"entity": "safeguarding_risk", "value": "medium"},
            ]
        }
    )
    assert from_entities == Assessment(True, ("bullying",), "medium", ("entities",))
    assert assessment_from_parse_data({"entities": []}) is None
    assert assessment_from_parse_data(None) is None
