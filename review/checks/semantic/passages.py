"""What the semantic index holds: one vector per sentence, keyed ``"<item>#<n>"``.

A paraphrased sentence matches its source sentence alone far better than a passage in which it
is one sentence of several (docs/review.md), so archive items, published items and sibling
drafts are indexed sentence by sentence. The part of a key before "#" names the item, so a whole
item can be excluded or removed at once; plain item keys ("a:123") work too.
"""

from __future__ import annotations

from dataclasses import dataclass

from review.checks.text import sentences, words

# Sentences with fewer words are skipped, in drafts and in the index: "Thank you." matches half
# an archive and says nothing about paraphrase.
DEFAULT_MIN_WORDS = 4


@dataclass(frozen=True, slots=True)
class Passage:
    """A sentence of an archive item to index: its number and span within the item's text."""

    number: int
    start: int
    end: int
    text: str


def index_passages(text: str, *, min_words: int = DEFAULT_MIN_WORDS) -> list[Passage]:
    """The sentences of an item worth indexing (the same split and filter the check uses).

    Numbers count every sentence of the item, kept or not, so a key "a:123#4" always names the
    same sentence of a given text.
    """
    return [
        Passage(number, s.start, s.end, s.text)
        for number, s in enumerate(sentences(text))
        if len(words(s.text)) >= min_words
    ]


def passage_key(item: str, number: int) -> str:
    """The index key of sentence ``number`` of ``item`` ("a:123" -> "a:123#4")."""
    return f"{item}#{number}"


def split_key(key: str) -> tuple[str, int | None]:
    """``("a:123", 4)`` for "a:123#4"; ``("a:123", None)`` for a plain item key."""
    item, sep, number = key.partition("#")
    return (item, int(number)) if sep and number.isdigit() else (key, None)
