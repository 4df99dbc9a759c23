"""Text segmentation shared by the checks: words and sentences with character spans.

Every check reports spans as ``(start, end)`` character offsets into the exact text it was
given, so the draft page can highlight them without re-tokenising. Nothing here touches the ORM.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Words: runs of letters/digits, keeping inner apostrophes and hyphens ("don't", "well-known")
# and decimal or grouped numbers ("3.5", "1,000") together.
_WORD_RE = re.compile(r"\d+(?:[.,]\d+)*|\w+(?:['’\-]\w+)*", re.UNICODE)

# A sentence ends at ., ! or ? (optionally followed by closing quotes/brackets) and whitespace,
# or at a blank line. Abbreviations and initials are handled after the fact (see _ABBREVIATIONS).
_SENTENCE_END_RE = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|\n\s*\n")

_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt vs etc inc ltd co corp gen gov sen rep col lt sgt capt no
    nos fig figs approx dept est jan feb mar apr jun jul aug sep sept oct nov dec e.g i.e
    u.s u.k u.n a.m p.m
    """.split()  # noqa: SIM905 - a word list is easier to read and extend
)


@dataclass(frozen=True, slots=True)
class Token:
    """A word with its span in the original text and its normalised form."""

    start: int
    end: int
    norm: str


@dataclass(frozen=True, slots=True)
class Sentence:
    start: int
    end: int
    text: str


def normalise_word(word: str) -> str:
    """Case-fold and strip accents so "Café" and "cafe" compare equal."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.replace("’", "'")


def words(text: str) -> list[Token]:
    """All words of ``text`` with their spans, normalised for comparison."""
    return [Token(m.start(), m.end(), normalise_word(m.group())) for m in _WORD_RE.finditer(text)]


def _is_abbreviation(text: str, dot_at: int) -> bool:
    """True when the period at ``dot_at`` ends an abbreviation or an initial, not a sentence."""
    start = dot_at
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "."):
        start -= 1
    word = text[start:dot_at].casefold()
    if not word:
        return False
    if word in _ABBREVIATIONS:
        return True
    # A single capital letter ("J. Smith") is an initial.
    return len(word) == 1 and text[start].isupper()


def sentences(text: str) -> list[Sentence]:
    """Split ``text`` into sentences with spans; whitespace between sentences belongs to none.

    A rule-based splitter: good enough for highlighting and per-sentence scoring, and it never
    loses text (every non-space character lies in exactly one sentence).
    """
    result: list[Sentence] = []
    start = 0
    for match in _SENTENCE_END_RE.finditer(text):
        end = match.end()
        is_single_period = match.group().startswith(".") and (
            len(match.group().rstrip("\"'”’)]")) == 1
        )
        if is_single_period and _is_abbreviation(text, match.start()):
            continue
        if match.group().strip() == "":
            end = match.start()
        _append_sentence(result, text, start, end)
        start = match.end()
    _append_sentence(result, text, start, len(text))
    return result


def _append_sentence(result: list[Sentence], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        result.append(Sentence(start, end, text[start:end]))
