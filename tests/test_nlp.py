"""The project's own spaCy pipeline: spacy.blank("en"), lookup lemmas, entities from knowledge/."""

import shutil

import pytest
import spacy

from bot.nlp.build import FINGERPRINT_FILE, ensure_pipeline
from bot.nlp.entities import EntityVocabularyError, canonical, load_vocabulary


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, project_root):
    out = tmp_path_factory.mktemp("nlp") / "en_schoolguide"
    assert ensure_pipeline(out, project_root / "knowledge" / "entities.yml") is True
    return out


def test_pipeline_loads_by_path_like_rasa_does(pipeline):
    nlp = spacy.load(pipeline, disable=["parser"])
    assert nlp.path is not None  # Rasa's SpacyNLP refuses a pipeline that was not loaded from disk
    assert nlp.pipe_names == ["lemmatizer", "entity_ruler"]
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
