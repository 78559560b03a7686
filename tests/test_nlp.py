"""The project's own spaCy pipeline: spacy.blank("en"), lookup lemmas, entities from knowledge/."""

import shutil

import pytest
import spacy

from bot.nlp.build import FINGERPRINT_FILE, ensure_pipeline
from bot.nlp.entities import EntityVocabularyError, canonical, load_everyday_words, load_vocabulary


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, project_root):
    out = tmp_path_factory.mktemp("nlp") / "en_schoolguide"
    assert ensure_pipeline(out, project_root / "knowledge" / "entities.yml") is True
    return out


def test_pipeline_loads_by_path_like_rasa_does(pipeline):
    nlp = spacy.load(pipeline, disable=["parser"])
    assert nlp.path is not None  # Rasa's SpacyNLP refuses a pipeline that was not loaded from disk
    assert nlp.pipe_names == ["lemmatizer", "entity_ruler", "everyday_words"]
    assert spacy.util.is_compatible_version(
        spacy.about.__version__, spacy.info(str(pipeline))["spacy_version"]
    )


def test_lookup_lemmas_work_without_downloads(pipeline):
    nlp = spacy.load(pipeline)
    lemmas = [t.lemma_ for t in nlp("teachers were following children")]
    assert lemmas == ["teacher", "be", "follow", "child"]


@pytest.mark.parametrize(
    ("text", "label", "expected"),
    [
        ("can i b frends with miss on snap", "platform", "snapchat"),
        ("how old for WhatsApp?", "platform", "whatsapp"),
        ("is tik tok ok for year 6", "platform", "tiktok"),
        ("my son plays Roblox", "platform", "roblox"),
        ("can I follow a former pupil", "role", "former_pupil"),
        ("who is the DSL", "role", "dsl"),
    ],
)
def test_entity_ruler_finds_platforms_and_roles(pipeline, text, label, expected):
    doc = spacy.load(pipeline)(text)
    found = {(ent.label_, canonical(ent.label_, ent.text)) for ent in doc.ents}
    assert (label, expected) in found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("snap a photo of the board", set()),
        ("is sir allowed to snap me about football practice", {("role", "sir"), ("platform", "snap")}),
        ("he sent me a snap", {("platform", "snap")}),
        ("we go back in a fortnight", set()),
        ("can i play fortnight with my form tutor", {("platform", "fortnight"), ("role", "form tutor")}),
        ("follow the school on x", {("platform", "x")}),
        ("i got an x in my book", set()),
        ("i miss my old school", set()),
        ("can i message miss on insta", {("role", "miss"), ("platform", "insta")}),
        ("ta very much", set()),
        ("can my ta add me", {("role", "ta")}),
        ("my head hurts", set()),
        ("the head said no", {("role", "head")}),
    ],
)
def test_everyday_words_keep_their_everyday_sense(pipeline, text, expected):
    doc = spacy.load(pipeline)(text)
    assert {(ent.label_, ent.text.lower()) for ent in doc.ents} == expected


def test_everyday_pipe_loads_in_a_process_that_never_imported_bot(pipeline):
    """SpacyNLP calls spacy.load by path: the factory must come from the spacy_factories entry point."""
    import subprocess
    import sys

    code = "import spacy, sys; print([e.text for e in spacy.load(sys.argv[1])('snap a pic on snap').ents])"
    out = subprocess.run(
        [sys.executable, "-c", code, str(pipeline)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['snap']"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("  platform:\n    snapp: {not_before: [a]}\n", "not one of the platform spellings"),
        ("  platform:\n    snap: {sometimes: [a]}\n", "expected some of"),
        ("  platform:\n    snap: {not_before: [off]}\n", "quote on, off"),
        ("  colour:\n    red: {not_before: [a]}\n", "expected a known label"),
    ],
)
def test_bad_everyday_words_name_the_entry(tmp_path, block, message):
    bad = tmp_path / "entities.yml"
    bad.write_text("everyday_words:\n" + block + "platform:\n  snapchat: [snap]\n")
    with pytest.raises(EntityVocabularyError, match=message):
        load_everyday_words(bad)


def test_second_build_is_skipped_and_a_vocabulary_change_rebuilds(tmp_path, project_root):
    entities = tmp_path / "entities.yml"
    shutil.copy(project_root / "knowledge" / "entities.yml", entities)
    out = tmp_path / "nlp"
    assert ensure_pipeline(out, entities) is True
    stamp = (out / FINGERPRINT_FILE).read_text()
    assert ensure_pipeline(out, entities) is False
    entities.write_text(entities.read_text() + "\n  mastodon: [mastodon]\n")
    load_vocabulary.cache_clear()
    assert ensure_pipeline(out, entities) is True
    assert (out / FINGERPRINT_FILE).read_text() != stamp


def test_canonical_handles_junk():
    assert canonical("platform", None) is None
    assert canonical("platform", "") is None
    assert canonical("platform", "Tik-Tok") == "tiktok"
    assert canonical("platform", "not a platform") is None
    assert canonical("nonsense-label", "snap") is None


def test_bad_vocabulary_names_file_and_field(tmp_path):
    bad = tmp_path / "entities.yml"
    bad.write_text("platform:\n  whatsapp: whatsapp\n")
    with pytest.raises(EntityVocabularyError, match=r"entities.yml: platform.whatsapp"):
        load_vocabulary(bad)
    bad.write_text("colour:\n  red: [red]\n")
    with pytest.raises(EntityVocabularyError, match="unknown entity label"):
        load_vocabulary(bad)
