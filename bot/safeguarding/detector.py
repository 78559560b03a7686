"""The rules layer of disclosure detection: does this message tell us a child is being harmed?

``assess(text)`` runs spaCy (lower-cased lemmas) and ``Matcher`` rules compiled from ``vocabulary.yml``. The
vocabulary, not this module, says what a disclosure looks like; this module only knows *how* to decide:

* every rule is ``strong`` (always fires: "i want to kill myself"), ``firm`` or ``weak``;
* ``weak`` and ``firm`` hits are suppressed only when their sentence reads as a general policy question
  ("what should staff do if a pupil...", "can teachers message pupils?") and nothing in the message anchors it
  to a real event ("keeps", "last night", "told me", "i'm scared"). A weak hit in a question still fires when
  its verb describes something that happened to someone in particular ("is it ok that my teacher *messages*
  me?"); a firm hit also fires when the sentence names someone close ("what do i do if *my friend* wants to
  kill herself").

Recall matters far more than precision, so the default in every unclear branch is to escalate.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Any

import spacy
import yaml
from spacy.language import Language
from spacy.matcher import Matcher
from spacy.tokens import Doc

from bot.safeguarding.categories import CATEGORIES, RISKS

logger = logging.getLogger(__name__)

VOCABULARY_PATH = Path(__file__).with_name("vocabulary.yml")

NO_RISK = "none"
STRENGTHS = ("strong", "firm", "weak")

# How DisclosureDetector (component.py) records an assessment in Rasa's parse data; kept here so the action
# server can read it back without importing Rasa.
DISCLOSE_INTENT = "disclose"
CATEGORY_ENTITY = "safeguarding_category"
RISK_ENTITY = "safeguarding_risk"
PARSE_DATA_KEY = "safeguarding"
EXTRACTOR_NAME = "DisclosureDetector"

# Invisible characters people (and copy-paste) slip into text: zero-width, bidi controls, BOM, soft hyphen.
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG = re.compile(r"<[^<>]{0,300}>")
_QUOTES = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201b": "'", "`": "'", "\u201c": '"', "\u201d": '"'}
)
# "step-dad", "self-harm", "far-right": one spelling for the rules to match.
_WORD_HYPHEN = re.compile(r"(?<=[a-z])[-_]+(?=[a-z])")
_WORD = re.compile(r"[a-z0-9@$]+")
_RUN = re.compile(r"([a-z])\1{2,}")
_SPACES = re.compile(r"[ \t]+")
# Word endings that mark an adjective ("political", "personal", "explicit", "horrible"): a noun follows.
# spaCy's tokenizer is slow on very long runs without spaces (emoji walls, base64): break them up.
_LONG_RUN = re.compile(r"\S{40}(?=\S)")


@dataclass(frozen=True)
class Assessment:
    """What the rules found in one message."""

    is_disclosure: bool
    categories: tuple[str, ...] = ()
    risk: str = NO_RISK  # "immediate" | "high" | "medium" for disclosures, "none" otherwise
    matched: tuple[str, ...] = ()  # names of the rules (and immediacy cues) that fired

    def as_dict(self) -> dict[str, Any]:
        """Plain data for Rasa's parse data (``parse_data["safeguarding"]``) and logs."""
        return {
            "is_disclosure": self.is_disclosure,
            "categories": list(self.categories),
            "risk": self.risk,
            "matched": list(self.matched),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Assessment | None:
        """Inverse of :meth:`as_dict`; None when ``data`` is not a recorded assessment."""
        if not isinstance(data, dict) or "is_disclosure" not in data:
            return None
        categories = tuple(c for c in data.get("categories") or () if c in CATEGORIES)
        risk = data.get("risk") if data.get("risk") in RISKS else NO_RISK
        matched = tuple(str(m) for m in data.get("matched") or ())
        return cls(bool(data["is_disclosure"]), categories, risk, matched)


NOT_A_DISCLOSURE = Assessment(is_disclosure=False)
# What to record when the intent classifier alone said "disclose": the category is unknown, and an unknown
# harm is treated as serious until the DSL has read it.
CLASSIFIER_ONLY = Assessment(True, categories=("other",), risk="high", matched=("intent_classifier",))


@dataclass(frozen=True)
class Rule:
    """One named family of patterns that signal a disclosure."""

    name: str
    categories: tuple[str, ...]
    strength: str
    risk: str
    immediate: bool
    supporting: bool  # its categories count only when no other rule fired (e.g. secrecy on its own)
    patterns: tuple[str, ...]
    needs: tuple[str, ...] = ()  # cue names; when set, the rule fires only if one of them is in the message


@dataclass(frozen=True)
class Grammar:
    """Closed word lists the framing logic needs (all lower-case surface forms)."""

    openers: frozenset[str]
    fillers: frozenset[str]
    blockers: frozenset[str]  # a verb right after these is not an event: "can message", "to meet"
    progressive_aux: frozenset[str]
    skip: frozenset[str]
    irregular_past: frozenset[str]
    same_form_past: frozenset[str]
    sentence_ends: frozenset[str]
    clause_ends: frozenset[str]
    negated_statement_verbs: frozenset[str]  # "dont WANT to...": a statement, not a "do" question
    subjects: frozenset[str]  # "he hit me" (past) vs "and put it on facebook" (bare)
    # a word right after these is a noun, not an event: "friend requests", "his messages", "a text"
    noun_markers: frozenset[str]
    # "can the school post my photo": like ``subjects`` when only asked about (a modal before them)
    askers: frozenset[str]
    # skipped between the modal and the asker: "can THE school"
    asker_determiners: frozenset[str]
    # "political views": an -s word after a word with these endings is a plural noun, not an event
    adjective_endings: frozenset[str]


@dataclass(frozen=True)
class Vocabulary:
    """Everything ``vocabulary.yml`` holds, validated."""

    max_chars: int
    tail_chars: int
    variants: dict[str, str]
    leet: dict[str, str]
    classes: dict[str, tuple[str, ...]]
    cues: dict[str, tuple[str, ...]]
    immediacy: dict[str, tuple[str, ...]]
    category_risk: dict[str, str]
    grammar: Grammar
    rules: tuple[Rule, ...]


class VocabularyError(ValueError):
    """vocabulary.yml is malformed."""


def load_vocabulary(path: Path = VOCABULARY_PATH) -> Vocabulary:
    """Read and validate the detector vocabulary."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    limits = raw.get("limits", {})
    category_risk = {c: str(raw.get("category_risk", {}).get(c, "high")) for c in CATEGORIES}
    for category, risk in category_risk.items():
        if risk not in RISKS:
            raise VocabularyError(f"category_risk.{category}: {risk!r} is not one of {RISKS}")
    rules = tuple(_rule(entry, category_risk) for entry in raw.get("rules", []))
    cue_names = set(raw.get("cues") or {})
    for rule in rules:
        unknown = sorted(set(rule.needs) - cue_names)
        if unknown:
            raise VocabularyError(f"rule {rule.name!r}: needs unknown cues {unknown}")
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise VocabularyError("rule names must be unique")
    grammar_raw = raw.get("grammar", {})
    missing = sorted(key for key in Grammar.__dataclass_fields__ if not grammar_raw.get(key))
    if missing:
        raise VocabularyError(f"grammar: missing or empty word lists {missing}")
    grammar = Grammar(
        **{key: frozenset(str(w).lower() for w in grammar_raw[key]) for key in Grammar.__dataclass_fields__}
    )
    return Vocabulary(
        max_chars=int(limits.get("max_chars", 6000)),
        tail_chars=int(limits.get("tail_chars", 2000)),
        variants={str(k).lower(): str(v).lower() for k, v in (raw.get("variants") or {}).items()},
        leet={str(k): str(v) for k, v in (raw.get("leet") or {}).items()},
        classes={
            name: tuple(str(w).lower() for w in words) for name, words in raw.get("classes", {}).items()
        },
        cues={name: tuple(pats) for name, pats in raw.get("cues", {}).items()},
        immediacy={name: tuple(pats) for name, pats in raw.get("immediacy", {}).items()},
        category_risk=category_risk,
        grammar=grammar,
        rules=rules,
    )


def _rule(entry: dict[str, Any], category_risk: dict[str, str]) -> Rule:
    name = entry.get("name")
    categories = tuple(entry.get("categories") or [entry.get("category")])
    if not name or not categories or any(c not in CATEGORIES for c in categories):
        raise VocabularyError(f"rule {name!r}: needs a name and categories from {CATEGORIES}")
    strength = entry.get("strength", "weak")
    if strength not in STRENGTHS:
        raise VocabularyError(f"rule {name!r}: strength must be one of {STRENGTHS}")
    risk = entry.get("risk") or max((category_risk[c] for c in categories), key=_risk_rank)
    if risk not in RISKS:
        raise VocabularyError(f"rule {name!r}: risk must be one of {RISKS}")
    patterns = tuple(entry.get("patterns") or ())
    if not patterns:
        raise VocabularyError(f"rule {name!r}: no patterns")
    needs = tuple(entry.get("needs") or ())
    return Rule(
        name,
        categories,
        strength,
        risk,
        bool(entry.get("immediate", False)),
        bool(entry.get("supporting", False)),
        patterns,
        needs,
    )


def _risk_rank(risk: str) -> int:
    """Higher is more urgent."""
    return len(RISKS) - RISKS.index(risk) if risk in RISKS else 0


# --- the pipeline ------------------------------------------------------------------------------------------


def blank_pipeline() -> Language:
    """spaCy's blank English plus the lookup lemmatizer (tables from spacy-lookups-data)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    nlp.initialize()
    return nlp


def load_pipeline(model_path: Path | None = None) -> Language:
    """The project's pipeline (``schoolguide build-nlp``) if it is there, else :func:`blank_pipeline`."""
    if model_path is None:
        from bot.settings import get_settings

        model_path = get_settings().spacy_model_path
    if model_path is not None and Path(model_path).exists():
        try:
            nlp = spacy.load(model_path)
            if "lemmatizer" in nlp.pipe_names:
                return nlp
            logger.warning("spaCy pipeline at %s has no lemmatizer; using the blank pipeline", model_path)
        except Exception:  # a half-written or incompatible model must not stop detection
            logger.warning(
                "could not load spaCy pipeline at %s; using the blank pipeline", model_path, exc_info=True
            )
    return blank_pipeline()


# --- pattern compilation -----------------------------------------------------------------------------------

_MAX_EXPANSIONS = 4096


@dataclass(frozen=True)
class _Compiled:
    """One expanded pattern line and where its event verb is."""

    tokens: list[dict[str, Any]]
    verb_forms: frozenset[str]  # lemmas/forms of the element marked with ^ (empty when none)


class _PatternCompiler:
    """Turns the vocabulary's compact pattern lines into spaCy ``Matcher`` token patterns.

    Elements are separated by spaces: ``word`` matches its lemma (or the word as written), ``a|b`` either,
    ``@CLASS`` any entry of a class (entries may be several words), ``=form`` the exact lower-case form,
    ``=/regex/`` a lower-case regex, ``~N`` up to N tokens inside the same sentence; a trailing ``?`` makes an
    element optional and a leading ``^`` marks the event verb used to tell events from questions.
    """

    def __init__(self, nlp: Language, classes: dict[str, tuple[str, ...]], sentence_ends: Iterable[str]):
        self._nlp = nlp
        self._lemmatizer = nlp.get_pipe("lemmatizer")
        self._lemmas: dict[str, str] = {}
        self._classes = classes
        self._gap_token = {"TEXT": {"NOT_IN": sorted(set(sentence_ends) | {"\n", "\n\n"})}, "IS_SPACE": False}

    def lemma(self, word: str) -> str:
        """The pipeline's lemma for one word (only the lemmatizer runs: patterns are context-free)."""
        if word not in self._lemmas:
            doc = self._lemmatizer(self._nlp.make_doc(word))
            self._lemmas[word] = doc[0].lemma_.lower() if len(doc) == 1 and doc[0].lemma_ else word
        return self._lemmas[word]

    def compile(self, line: str) -> list[_Compiled]:
        elements: list[list[list[dict[str, Any]]]] = []
        verb_forms: set[str] = set()
        for raw in line.split():
            alternatives, forms = self._element(raw)
            if forms:
                verb_forms |= forms
            elements.append(alternatives)
        combos = 1
        for alternatives in elements:
            combos *= len(alternatives)
        if combos > _MAX_EXPANSIONS:
            raise VocabularyError(f"pattern {line!r} expands to {combos} patterns; split it")
        return [
            _Compiled([tok for part in choice for tok in part], frozenset(verb_forms))
            for choice in product(*elements)
        ]

    def _element(self, raw: str) -> tuple[list[list[dict[str, Any]]], set[str]]:
        if raw.startswith("~"):
            try:
                width = int(raw[1:])
            except ValueError as exc:
                raise VocabularyError(f"bad gap {raw!r}") from exc
            return [[{**self._gap_token, "OP": "?"} for _ in range(width)]], set()
        verb = raw.startswith("^")
        raw = raw.lstrip("^")
        optional = raw.endswith("?") and len(raw) > 1
        raw = raw[:-1] if optional else raw
        exact = raw.startswith("=")
        raw = raw[1:] if exact else raw
        if exact and raw.startswith("/") and raw.endswith("/") and len(raw) > 2:
            alternatives = [[{"LOWER": {"REGEX": raw[1:-1]}}]]
            forms: set[str] = set()
        else:
            alternatives, forms = self._alternatives(raw.split("|"), exact)
        if optional:
            alternatives = [[{**tok, "OP": "?"} for tok in alt] for alt in alternatives]
        return alternatives, (forms if verb else set())

    def _alternatives(self, words: Sequence[str], exact: bool) -> tuple[list[list[dict[str, Any]]], set[str]]:
        phrases: list[str] = []
        for word in words:
            if word.startswith("@"):
                if word[1:] not in self._classes:
                    raise VocabularyError(f"unknown class {word}")
                phrases.extend(self._classes[word[1:]])
            elif word:
                phrases.append(word.lower())
        single = sorted({p for p in phrases if " " not in p})
        multi = sorted({p for p in phrases if " " in p})
        alternatives: list[list[dict[str, Any]]] = []
        forms: set[str] = set()
        if single:
            alternatives.append([self._token(single, exact)])
            forms |= self._forms(single, exact)
        for phrase in multi:
            parts = phrase.split()
            alternatives.append([self._token([part], exact) for part in parts])
            forms |= self._forms(parts[:1], exact)
        if not alternatives:
            raise VocabularyError(f"empty element {'|'.join(words)!r}")
        return alternatives, forms

    def _token(self, words: Sequence[str], exact: bool) -> dict[str, Any]:
        if exact:
            return {"LOWER": {"IN": sorted(set(words))}}
        # The word as written as well as its lemma: robust to a doc lemmatised by a different pipeline.
        return {"LEMMA": {"IN": sorted(self._forms(words, exact))}}

    def _forms(self, words: Iterable[str], exact: bool) -> set[str]:
        words = set(words)
        return words if exact else words | {self.lemma(w) for w in words}


# --- the detector ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sentence:
    start: int
    end: int
    question: bool
    hypothetical_at: tuple[int, ...]
    specific: bool
    kin: bool


class Detector:
    """Compiled vocabulary plus the spaCy pipeline; build once (see :func:`get_detector`)."""

    def __init__(self, nlp: Language, vocabulary: Vocabulary):
        self.nlp = nlp
        self.vocabulary = vocabulary
        grammar = vocabulary.grammar
        self._grammar = grammar
        compiler = _PatternCompiler(nlp, vocabulary.classes, grammar.sentence_ends)
        self._rules: dict[str, Rule] = {}
        self._verbs: dict[str, frozenset[str]] = {}
        self._rule_matcher = Matcher(nlp.vocab)
        for rule in vocabulary.rules:
            self._rules[rule.name] = rule
            for index, line in enumerate(rule.patterns):
                for n, compiled in enumerate(compiler.compile(line)):
                    key = f"{rule.name}#{index}.{n}"
                    self._verbs[key] = compiled.verb_forms
                    self._rule_matcher.add(key, [compiled.tokens])
        self._cue_matcher = Matcher(nlp.vocab)
        for name, lines in vocabulary.cues.items():
            self._cue_matcher.add(f"cue:{name}", [c.tokens for line in lines for c in compiler.compile(line)])
        for name, lines in vocabulary.immediacy.items():
            self._cue_matcher.add(
                f"immediacy.{name}", [c.tokens for line in lines for c in compiler.compile(line)]
            )
        self._variants = vocabulary.variants
        self._known = self._known_words(compiler)
        keys = sorted(self._variants, key=len, reverse=True)
        self._variant_re = (
            re.compile(r"(?<![\w'])(" + "|".join(re.escape(k) for k in keys) + r")(?![\w'])")
            if keys
            else None
        )

    # -- normalisation --

    def _known_words(self, compiler: _PatternCompiler) -> frozenset[str]:
        words: set[str] = set()
        for phrases in self.vocabulary.classes.values():
            for phrase in phrases:
                words.update(phrase.split())
        for rule in self.vocabulary.rules:
            for line in rule.patterns:
                words.update(w for w in re.split(r"[\s|^=?@~]+", line) if w.isalpha())
        words.update(self._variants)
        words.update(self.nlp.Defaults.stop_words)  # "soooo" -> "so": the lemma table lacks function words
        try:
            table = self.nlp.get_pipe("lemmatizer").lookups.get_table("lemma_lookup")
            words.update(table.values())
            self._lemma_table = table
        except Exception:  # lookups are an optimisation for typo repair only
            self._lemma_table = None
        return frozenset(words)

    def _is_known(self, word: str) -> bool:
        return word in self._known or (self._lemma_table is not None and word in self._lemma_table)

    def _repair_word(self, match: re.Match[str]) -> str:
        """Undo stretched letters ("pleeease") and look-alike digits ("k1ll") when that gives a real word."""
        word = match.group(0)
        if self._is_known(word) or word in self._variants:
            return word
        candidates: list[str] = []
        if _RUN.search(word):
            parts = _RUN.split(word)  # text, run letter, text, run letter, ..., text
            letters = parts[1::2][:4]
            for lengths in product((2, 1), repeat=len(letters)):
                rebuilt = [parts[0]]
                for i, letter in enumerate(parts[1::2]):
                    rebuilt += [letter * (lengths[i] if i < len(lengths) else 2), parts[2 * i + 2]]
                candidates.append("".join(rebuilt))
        if any(ch.isalpha() for ch in word):
            leet = "".join(
                self.vocabulary.leet.get(ch, ch) if 0 < i < len(word) - 1 else ch for i, ch in enumerate(word)
            )
            if leet != word:
                candidates.append(leet)
        for candidate in candidates:
            if self._is_known(candidate) or candidate in self._variants:
                return candidate
        return candidates[0] if candidates and _RUN.search(word) else word

    def normalise(self, text: Any) -> str:
        """Lower-cased, tag-free, invisible-character-free text with text-speak spelled out; never raises."""
        if text is None:
            return ""
        if not isinstance(text, str):
            text = str(text)
        limit, tail = self.vocabulary.max_chars, self.vocabulary.tail_chars
        if len(text) > limit:
            # Keep the start and the end: a disclosure often comes after a long paste or preamble.
            text = text[: limit - tail] + "\n" + text[-tail:]
        text = html.unescape(_TAG.sub(" ", text))
        text = unicodedata.normalize("NFKC", text)
        text = _INVISIBLE.sub("", text)
        text = _CONTROL.sub(" ", text).translate(_QUOTES).lower()
        text = _WORD_HYPHEN.sub(" ", text)
        text = _LONG_RUN.sub(lambda m: m.group(0) + " ", text)
        text = _WORD.sub(self._repair_word, text)
        if self._variant_re is not None:
            text = self._variant_re.sub(lambda m: self._variants[m.group(1)], text)
        return _SPACES.sub(" ", text).strip()

    # -- assessment --

    def assess(self, text: Any, doc: Doc | None = None) -> Assessment:
        """Assess one message; ``doc`` (e.g. Rasa SpacyNLP's) is reused when it fits the normalised text."""
        try:
            normalised = self.normalise(text)
            if not normalised:
                return NOT_A_DISCLOSURE
            if not (doc is not None and doc.text == normalised and doc.has_annotation("LEMMA")):
                doc = self.nlp(normalised)
            return self._assess_doc(doc)
        except Exception:  # detection must never take the conversation down; the classifier layer remains
            logger.exception("safeguarding detector failed on a message; treating it as not detected")
            return Assessment(is_disclosure=False, matched=("detector_error",))

    def _assess_doc(self, doc: Doc) -> Assessment:
        cues: dict[str, list[tuple[int, int]]] = {}
        for key, start, end in self._cue_matcher(doc):
            cues.setdefault(self.nlp.vocab.strings[key], []).append((start, end))
        sentences = self._sentences(doc, cues)
        anchored = bool(cues.get("cue:anchor"))
        fired: dict[str, Rule] = {}
        for key, start, end in self._rule_matcher(doc):
            name = self.nlp.vocab.strings[key]
            rule = self._rules[name.split("#", 1)[0]]
            if rule.name in fired or (rule.needs and not any(f"cue:{cue}" in cues for cue in rule.needs)):
                continue
            sentence = next((s for s in sentences if s.start <= start < s.end), sentences[-1])
            if self._fires(doc, rule, start, end, self._verbs[name], sentence, anchored):
                fired[rule.name] = rule
        if not fired:
            return NOT_A_DISCLOSURE
        primary = [rule for rule in fired.values() if not rule.supporting] or list(fired.values())
        found = {category for rule in primary for category in rule.categories}
        categories = tuple(c for c in CATEGORIES if c in found) or ("other",)
        immediacy = sorted({key for key in cues if key.startswith("immediacy.")})
        if immediacy or any(rule.immediate for rule in fired.values()):
            risk = "immediate"
        else:
            risk = max((rule.risk for rule in fired.values()), key=_risk_rank)
        return Assessment(True, categories, risk, tuple(sorted(fired)) + tuple(immediacy))

    def _fires(
        self,
        doc: Doc,
        rule: Rule,
        start: int,
        end: int,
        verb_forms: frozenset[str],
        sentence: _Sentence,
        anchored: bool,
    ) -> bool:
        if rule.strength == "strong" or anchored:
            return True
        close_person = rule.strength == "firm" and sentence.kin
        verb = self._verb_index(doc, start, end, verb_forms)
        # "staff do WHEN a carer sends them...": the event is hypothetical if a marker comes before its verb
        event_at = start if verb is None else verb
        if sentence.question and any(at < event_at for at in sentence.hypothetical_at):
            return close_person
        realised = verb is not None and self._realised(doc, verb, sentence.start)
        if sentence.question:
            # "support for children who have been bullied?" is general; "...my teacher messages me?" is not.
            return (realised and sentence.specific) or close_person
        return realised or sentence.specific or rule.strength == "firm"

    @staticmethod
    def _verb_index(doc: Doc, start: int, end: int, verb_forms: frozenset[str]) -> int | None:
        """Where the pattern's event verb (marked ^ in the vocabulary) is in the match, if it has one."""
        if not verb_forms:
            return None
        return next(
            (
                i
                for i in range(start, end)
                if doc[i].lemma_.lower() in verb_forms or doc[i].lower_ in verb_forms
            ),
            None,
        )

    def _realised(self, doc: Doc, index: int, floor: int) -> bool:
        """Is the event verb a real event (past, 3rd person, progressive) rather than "can message"?"""
        g = self._grammar
        token = doc[index]
        lower, lemma = token.lower_, token.lemma_.lower()
        before = index - 1
        while before >= floor and doc[before].lower_ in g.skip and index - before <= 3:
            before -= 1
        previous = doc[before].lower_ if before >= floor else ""
        if previous in g.blockers or previous == "be" or previous in g.noun_markers:
            return False
        # "should i put it on facebook", "can the school post my photo": a modal before the subject asks
        # about an act; it does not report one
        if previous in g.subjects or previous in g.askers:
            modal_at = before - 1
            if modal_at >= floor and doc[modal_at].lower_ in g.asker_determiners:
                modal_at -= 1
            if modal_at >= floor and doc[modal_at].lower_ in g.blockers:
                return False
        if lower in g.irregular_past or (lower.endswith("ed") and lower != lemma):
            return True
        if lower.endswith("ing") and lower != lemma:
            return any(doc[i].lower_ in g.progressive_aux for i in range(max(floor, index - 3), index))
        if lower != lemma and lower.endswith("s"):
            # "political views", "personal messages": after an adjective an -s word is a plural noun
            return not (len(previous) > 4 and any(previous.endswith(end) for end in g.adjective_endings))
        return lower in g.same_form_past and previous in g.subjects

    def _sentences(self, doc: Doc, cues: dict[str, list[tuple[int, int]]]) -> list[_Sentence]:
        g = self._grammar
        bounds: list[tuple[int, int]] = []
        start = 0
        for token in doc:
            if token.lower_ in g.sentence_ends or "\n" in token.text:
                if token.i + 1 > start:
                    bounds.append((start, token.i + 1))
                start = token.i + 1
        if start < len(doc) or not bounds:
            bounds.append((start, max(len(doc), start)))

        def inside(name: str, lo: int, hi: int) -> list[int]:
            return [s for s, _ in cues.get(f"cue:{name}", []) if lo <= s < hi]

        sentences = []
        for lo, hi in bounds:
            question = (
                any(doc[i].lower_ == "?" for i in range(lo, hi))
                or bool(inside("policy", lo, hi))
                or bool(inside("question", lo, hi))
                or self._has_opener(doc, lo, hi)
            )
            sentences.append(
                _Sentence(
                    start=lo,
                    end=hi,
                    question=question,
                    hypothetical_at=tuple(inside("hypothetical", lo, hi)),
                    specific=bool(inside("specific", lo, hi)) or bool(inside("kin", lo, hi)),
                    kin=bool(inside("kin", lo, hi)),
                )
            )
        return sentences

    def _has_opener(self, doc: Doc, lo: int, hi: int) -> bool:
        """Does any clause of the sentence start (after greetings and fillers) with a question word?"""
        g = self._grammar
        clause_start = True
        for i in range(lo, hi):
            lower = doc[i].lower_
            if lower in g.clause_ends or doc[i].is_space:
                clause_start = True
                continue
            if not clause_start:
                continue
            if lower in g.fillers or doc[i].is_punct:
                continue
            if lower in g.openers and not self._negated_statement(doc, i, hi):
                return True
            clause_start = False
        return False

    def _negated_statement(self, doc: Doc, i: int, hi: int) -> bool:
        """ "dont want to wake up" starts with "do" but is a statement (the subject was dropped)."""
        return (
            i + 2 < hi
            and doc[i + 1].lower_ in {"nt", "n't", "not"}
            and doc[i + 2].lemma_.lower() in self._grammar.negated_statement_verbs
        )


@lru_cache(maxsize=1)
def get_detector() -> Detector:
    """The process-wide detector (pipeline and vocabulary loaded on first use)."""
    return Detector(load_pipeline(), load_vocabulary())


def assess(text: str, doc: Doc | None = None) -> Assessment:
    """Does ``text`` disclose harm to a child? Never raises; see :class:`Assessment`."""
    return get_detector().assess(text, doc)


def assessment_from_parse_data(parse_data: dict[str, Any] | None) -> Assessment | None:
    """What DisclosureDetector recorded in a parse result (``tracker.latest_message``), if anything.

    Prefers ``parse_data["safeguarding"]``; falls back to the ``safeguarding_*`` entities.
    """
    if not isinstance(parse_data, dict):
        return None
    recorded = Assessment.from_dict(parse_data.get(PARSE_DATA_KEY))
    if recorded is not None:
        return recorded
    entities = [e for e in parse_data.get("entities") or [] if isinstance(e, dict)]
    categories = tuple(
        c
        for c in CATEGORIES
        if any(e.get("entity") == CATEGORY_ENTITY and e.get("value") == c for e in entities)
    )
    risks = [e.get("value") for e in entities if e.get("entity") == RISK_ENTITY and e.get("value") in RISKS]
    if not categories and not risks:
        return None
    return Assessment(
        True, categories or ("other",), min(risks, key=RISKS.index) if risks else "high", ("entities",)
    )
