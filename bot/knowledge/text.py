"""Plain-text rules shared by the loader, the checks and the answer renderer.

Kept free of any knowledge-base types so that each rule can be tested on its own strings.
"""

from __future__ import annotations

import re

import textstat

# Folding used to compare a clause quote with policy.txt. The policies were converted from Word and PDF, so
# typographic quotes, dashes, non-breaking spaces and markdown emphasis are noise; every other character
# counts.
_QUOTE_FOLD = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2015": "-",
        "\u00a0": " ",
        "\u202f": " ",
        "\u2007": " ",
        "*": None,
    }
)
_WHITESPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Fold whitespace, typographic quotes and dashes, NBSPs and markdown emphasis for quote comparison."""
    return _WHITESPACE.sub(" ", text.translate(_QUOTE_FOLD)).strip()


def matching_prefix(needle: str, haystack: str) -> str:
    """The longest start of ``needle`` that occurs in ``haystack`` (both already normalised)."""
    # If a prefix occurs, every shorter prefix does too, so the length can be found by bisection.
    low, high = 0, len(needle)
    while low < high:
        mid = (low + high + 1) // 2
        if needle[:mid] in haystack:
            low = mid
        else:
            high = mid - 1
    return needle[:low]


# Abbreviations whose full stop does not end a sentence.
_ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|etc|Mr|Mrs|Ms|Dr|St|vs)\.$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def sentences(text: str) -> list[str]:
    """Split prose into sentences (good enough for short answer texts, not a general tokenizer)."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start : match.start()]
        if _ABBREVIATIONS.search(candidate):
            continue
        pieces.append(text[start : match.end()].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [piece for piece in pieces if piece]


_WORD = re.compile(r"[A-Za-z0-9\u00c0-\u024f]+(?:['\u2019\-][A-Za-z0-9\u00c0-\u024f]+)*")


def words(text: str) -> list[str]:
    """The words of ``text`` ("grown-up" and "don't" count as one word each)."""
    return _WORD.findall(text)


def reading_grade(text: str) -> float:
    """Flesch-Kincaid grade level (textstat 0.7.3)."""
    return float(textstat.flesch_kincaid_grade(text))


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"]+"
    r"|\b(?:[a-z0-9-]+\.)+(?:uk|com|org|net|gov|edu|ac|sch|io|co|info|me|tv|app)\b(?:/[^\s<>\"]*)?",
    re.IGNORECASE,
)
_DIGITS = re.compile(r"\+?\d(?:[\d \-]*\d)?")
# UK service numbers too short to look like phone numbers by length alone.
_SHORT_SERVICE_NUMBERS = frozenset({"999", "112", "111", "101", "105", "119"})
_TRAILING = ".,;:!?)'\""


def emails(text: str) -> list[str]:
    """Email addresses in ``text``."""
    return [match.rstrip(_TRAILING) for match in _EMAIL.findall(text)]


def urls(text: str) -> list[str]:
    """Web addresses in ``text`` (with or without a scheme), email addresses excluded."""
    without_emails = _EMAIL.sub(" ", text)
    return [match.rstrip(_TRAILING) for match in _URL.findall(without_emails)]


def phone_numbers(text: str) -> list[str]:
    """Things that look like phone numbers: six or more digits, or a short UK service number such as 999."""
    found = []
    for match in _DIGITS.finditer(text):
        digits = only_digits(match.group())
        if len(digits) >= 6 or digits in _SHORT_SERVICE_NUMBERS:
            found.append(match.group().strip())
    return found


def only_digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def canonical_url(url: str) -> str:
    """A URL without scheme, ``www.``, trailing slash or case, so spellings of one address compare equal."""
    url = re.sub(r"^https?://", "", url.strip(), flags=re.IGNORECASE)
    url = re.sub(r"^www\.", "", url, flags=re.IGNORECASE)
    return url.rstrip("/").lower()


_HTML = re.compile(r"<\s*/?\s*[a-zA-Z][^<>]*>|&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);")


def html_fragments(text: str) -> list[str]:
    """HTML tags or entities in ``text``: answers are plain text, rendered safely by each channel."""
    return _HTML.findall(text)


def shorten(text: str, limit: int) -> str:
    """``text`` with whitespace folded, cut at a word boundary to at most ``limit`` characters plus " ..."."""
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-") + " ..."
