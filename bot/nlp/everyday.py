"""Drop entity matches that are everyday words used in their everyday sense.

Some ways of typing a platform or role are also ordinary English: "snap" is Snapchat in "add me on snap" but
a verb in "snap a photo"; "fortnight" is Fortnite in "play fortnight" but two weeks in "in a fortnight";
"miss" is a teacher in "can i message miss" but a verb in "i miss my friends". ``knowledge/entities.yml``
lists those forms under ``everyday_words`` with the neighbouring words that decide:

* ``not_before``: the match is dropped when the next word is one of these ("snap" + "a"),
* ``not_after``: the match is dropped when the previous word is one of these ("a" + "fortnight"),
* ``only_after``: the match is kept only when the previous word is one of these ("on" + "x").

The pipe runs after the entity ruler in SchoolGuide's spaCy pipeline. spaCy finds the factory through the
``spacy_factories`` entry point in pyproject.toml, so ``spacy.load`` (Rasa's ``SpacyNLP``) needs no import.
"""

# No ``from __future__ import annotations``: spaCy validates factory signatures at run time.
from collections.abc import Mapping

from spacy.language import Language
from spacy.tokens import Doc

FACTORY = "schoolguide_everyday_words"
RULE_KEYS = ("not_before", "not_after", "only_after")


class EverydayWords:
    """``rules``: ``{label: {form: {"not_before": [...], "not_after": [...], "only_after": [...]}}}``."""

    def __init__(self, rules: Mapping) -> None:
        self.rules = {
            (str(label), str(form).lower()): {
                key: frozenset(w.lower() for w in rule.get(key, ())) for key in RULE_KEYS
            }
            for label, forms in rules.items()
            for form, rule in forms.items()
        }

    def keeps(self, doc: Doc, start: int, end: int, label: str) -> bool:
        rule = self.rules.get((label, doc[start:end].text.lower()))
        if rule is None:
            return True
        before = doc[start - 1].lower_ if start > 0 else None
        after = doc[end].lower_ if end < len(doc) else None
        if after is not None and after in rule["not_before"]:
            return False
        if before is not None and before in rule["not_after"]:
            return False
        return not rule["only_after"] or before in rule["only_after"]

    def __call__(self, doc: Doc) -> Doc:
        kept = [ent for ent in doc.ents if self.keeps(doc, ent.start, ent.end, ent.label_)]
        if len(kept) != len(doc.ents):
            doc.ents = kept
        return doc


@Language.factory(FACTORY, default_config={"rules": {}})
def make_everyday_words(nlp: Language, name: str, rules: dict) -> EverydayWords:
    return EverydayWords(rules)
