"""Text segmentation shared by the checks: words and sentences with character spans.

Every check reports spans as ``(start, end)`` character offsets into the exact text it was
given, so the draft page can highlight them without re-tokenising. Nothing here touches the ORM.

Chinese is segmented by script, not by a language decision, so mixed Chinese-English text works
too: a run of Han characters is cut into words by jieba's dictionary and HMM (``rjieba``, the
Rust port: the same words as ``jieba``, several times faster and without its second-long
dictionary build), everything else by the word pattern below. A sentence also ends at the
Chinese full stops and their full-width forms (。！？；……), which need no space after them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

# Han ideographs: the unified block, extension A, compatibility ideographs, extensions B and on.
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
HAN_RE = re.compile(f"[{HAN}]")
# A letter or digit that is not a Han character: where ``\w`` marks a word boundary in
# English, Chinese has none between words. On text without Han characters it is ``\w``.
WORD_NOT_HAN = f"[^\\W{HAN}]"
# One Han character, or a run of anything else.
HAN_OR_OTHER_RE = re.compile(f"[{HAN}]|[^{HAN}]+")

# Words: runs of letters/digits, keeping inner apostrophes and hyphens ("don't", "well-known")
# and decimal or grouped numbers ("3.5", "1,000") together. Han characters are not letters
# here: a run of them is segmented separately (``words``). On text without Han characters
# ``[^\W{HAN}]`` is exactly ``\w``.
_W = WORD_NOT_HAN
_WORD_RE = re.compile(rf"\d+(?:[.,]\d+)*|{_W}+(?:['’\-]{_W}+)*", re.UNICODE)
# A Han run or a word, in text order.
_WORD_OR_HAN_RE = re.compile(rf"(?P<han>[{HAN}]+)|{_WORD_RE.pattern}", re.UNICODE)

_CLOSERS = "\"'”’)\\]」』）》】〕"
# A sentence ends at ., ! or ? (optionally followed by closing quotes/brackets) and whitespace
# or a Han character, or at a blank line. Abbreviations and initials are handled after the fact
# (see _ABBREVIATIONS).
# Chinese: 。！？； (and the halfwidth ｡) end a sentence with no space after them, as do !?;…
# right after a Han character; closing quotes and brackets stay with the sentence.
_SENTENCE_END_RE = re.compile(
    # The lookahead lets the engine skip other characters fast (4x on Chinese text).
    rf"(?=[.!?…\n。｡！？；;])(?:[.!?…]+[{_CLOSERS}]*(?=[\s{HAN}])|\n\s*\n"
    rf"|(?:[。｡！？；]|(?<=[{HAN}])[!?;…])[。｡！？；!?;…]*[{_CLOSERS}]*)"
)

_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt vs etc inc ltd co corp gen gov sen rep col lt sgt capt no
    nos fig figs approx dept est jan feb mar apr jun jul aug sep sept oct nov dec e.g i.e
    u.s u.k u.n a.m p.m
    """.split()  # noqa: SIM905 - a word list is easier to read and extend
)


class Token(NamedTuple):
    """A word with its span in the original text and its normalised form.

    A named tuple, immutable like the frozen dataclass it was and built 2-3x faster: a Chinese
    text has about four words per ten characters, and building them cost more than jieba."""

    start: int
    end: int
    norm: str


_new_tuple = tuple.__new__  # builds a Token without the call through Token.__new__


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


# Runs of what is not a letter, and of what is not Han: counting the characters outside them is
# about twice as fast as listing every letter (Chinese text is nearly all letters).
_NOT_LETTERS_RE = re.compile(r"[\W\d_]+")
_NOT_HAN_RE = re.compile(f"[^{HAN}]+")


def han_share(text: str) -> float:
    """Share of Han characters among the letters of ``text`` (0 when it has none)."""
    letters = len(text) - sum(map(len, _NOT_LETTERS_RE.findall(text)))
    if not letters:
        return 0.0
    return (len(text) - sum(map(len, _NOT_HAN_RE.findall(text)))) / letters


def looks_chinese(text: str) -> bool:
    """A cheap script rule: most letters are Han characters. A stand-in for the language
    detector (``review.checks.language``) where only "is this Chinese" is needed."""
    return han_share(text) >= 0.5


@lru_cache(maxsize=1 << 14)
def segment_han(run: str) -> tuple[str, ...]:
    """Words of a run of Han characters (jieba's dictionary and HMM, via ``rjieba``)."""
    import rjieba  # imported on first use: loading the dictionary takes about 0.15 s

    return tuple(rjieba.cut(run))


def words(text: str) -> list[Token]:
    """All words of ``text`` with their spans, normalised for comparison.

    Han runs are cut into words by :func:`segment_han`; each word's span is exact.
    """
    result: list[Token] = []
    append = result.append
    for m in _WORD_OR_HAN_RE.finditer(text):
        run = m.group("han")
        if run is None:
            append(Token(m.start(), m.end(), normalise_word(m.group())))
            continue
        start = m.start()
        for word in segment_han(run):
            end = start + len(word)
            append(_new_tuple(Token, (start, end, word)))  # Token(start, end, word), faster
            start = end
    return result


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

    The sentences of the last few texts are kept (:func:`clear_caches`): the checks of one
    draft (claims, passages, semantic, toxicity) each ask for them, and split it once. Each call
    returns a new list of the same immutable sentences.
    """
    return list(_sentences(text))


@lru_cache(maxsize=32)
def _sentences(text: str) -> tuple[Sentence, ...]:
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
    return tuple(result)


def clear_caches() -> None:
    """Forget the segmentations kept for reuse (Han runs, sentences): for benchmarks that time
    each check from scratch."""
    segment_han.cache_clear()
    _sentences.cache_clear()


def _append_sentence(result: list[Sentence], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        result.append(Sentence(start, end, text[start:end]))
