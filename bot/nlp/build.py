"""Build SchoolGuide's spaCy pipeline from ``spacy.blank("en")``: nothing is downloaded.

Pipes: the lookup lemmatizer (tables from spacy-lookups-data, saved with the model so loading needs nothing
else), an entity ruler whose phrase patterns come from ``knowledge/entities.yml``, and a filter that drops
matches of everyday words used in their everyday sense (``bot/nlp/everyday.py``). Rasa's ``SpacyNLP``
loads the result by path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import spacy

from bot.nlp.entities import load_everyday_words, load_vocabulary
from bot.nlp.everyday import FACTORY as EVERYDAY_FACTORY

logger = logging.getLogger(__name__)
PIPELINE_NAME = "en_schoolguide"
FINGERPRINT_FILE = "schoolguide-fingerprint.txt"


def _patterns(entities_file: Path) -> list[dict]:
    patterns = []
    for label, values in load_vocabulary(entities_file).items():
        for key, forms in values.items():
            for form in sorted({key.replace("_", " "), *forms}):
                patterns.append({"label": label, "pattern": form, "id": key})
    return patterns


def fingerprint(entities_file: Path) -> str:
    """Changes whenever the vocabulary or the pipeline recipe (this file) changes."""
    digest = hashlib.sha256()
    digest.update(entities_file.read_bytes())
    digest.update(Path(__file__).read_bytes())
    digest.update((Path(__file__).parent / "everyday.py").read_bytes())
    digest.update(spacy.about.__version__.encode())
    return digest.hexdigest()


def build_pipeline(entities_file: Path) -> spacy.language.Language:
    """A blank English pipeline with the lookup lemmatizer and the knowledge entity ruler."""
    nlp = spacy.blank("en")
    nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER", "overwrite_ents": True})
    nlp.initialize()  # loads the lemma lookup tables from spacy-lookups-data into the pipe
    ruler.add_patterns(_patterns(entities_file))
    # "snap a photo" is not Snapchat: drop matches whose neighbours show the everyday sense.
    nlp.add_pipe(
        EVERYDAY_FACTORY, name="everyday_words", config={"rules": load_everyday_words(entities_file)}
    )
    nlp.meta["name"] = PIPELINE_NAME.removeprefix("en_")
    nlp.meta["version"] = "1.0.0"
    nlp.meta["description"] = "SchoolGuide: blank English + lookup lemmatizer + entity ruler from knowledge/"
    return nlp


def ensure_pipeline(output: Path, entities_file: Path, force: bool = False) -> bool:
    """Write the pipeline to ``output`` unless an up-to-date one is there. Returns True when it (re)built."""
    stamp = output / FINGERPRINT_FILE
    wanted = fingerprint(entities_file)
    if not force and stamp.exists() and stamp.read_text().strip() == wanted:
        logger.info("spaCy pipeline at %s is up to date", output)
        return False
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    nlp = build_pipeline(entities_file)
    nlp.to_disk(tmp)
    (tmp / FINGERPRINT_FILE).write_text(wanted + "\n")
    # Swap in whole so a half-written pipeline is never loaded.
    shutil.rmtree(output, ignore_errors=True)
    tmp.rename(output)
    logger.info("built spaCy pipeline at %s (%s)", output, json.dumps(nlp.pipe_names))
    return True
