"""Cutting a text into the passages the lexical index stores, and a draft into query windows.

Passages of about 40-150 words keep a paragraph whole where it fits; the query window sizes
cover those lengths within a factor of 1.5, so some window of a draft that contains a whole
passage overlaps it closely. Pure functions.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from review.checks.language import UNDETERMINED
from review.checks.plagiarism.shingles import tokens
from review.checks.text import looks_chinese, sentences

# Passage lengths in words (see split_passages). The window sizes below cover them within a
# factor of 1.5, so some window of a draft that contains a whole passage overlaps it with an
# exact Jaccard of about 0.8 or more.
MIN_PASSAGE_WORDS = 40
TARGET_PASSAGE_WORDS = 100
MAX_PASSAGE_WORDS = 150
DEFAULT_WINDOW_SIZES: tuple[int, ...] = (40, 60, 90, 135)
# A Han character is a token of its own but carries about half a word (jieba finds 0.55 words
# per character in the Debian reference): in Chinese text, passages and query windows are
# twice as many tokens, so they hold as much text as English ones and a check costs about as
# much per character.
HAN_SCALE = 2


def size_scale(text: str, language: str | None = None) -> int:
    """How many tokens stand for one word of the sizes above: 2 for Chinese text, else 1.

    ``language``: the text's detected language (ISO 639-1, ``review.checks.language``) where the
    caller has it stored; without one (or ``"und"``) a script rule decides: most letters Han."""
    if language and language != UNDETERMINED:
        return HAN_SCALE if language == "zh" else 1
    return HAN_SCALE if looks_chinese(text) else 1


def split_passages(
    text: str,
    *,
    min_words: int = MIN_PASSAGE_WORDS,
    target_words: int = TARGET_PASSAGE_WORDS,
    max_words: int = MAX_PASSAGE_WORDS,
) -> list[tuple[int, int]]:
    """Cut ``text`` into passages of about ``min_words``-``max_words`` words, as char spans.

    Paragraph ends (a line break after a sentence) close a passage once it has ``min_words``,
    so paragraphs of up to ``max_words`` stay whole. A passage inside a longer paragraph closes
    at the first sentence end past ``target_words``. No passage grows past ``max_words``; one
    sentence longer than that (a list, text without punctuation) is cut between words.
    A text of at most ``max_words`` words is one passage. A short tail is merged into the passage
    before it when that stays within ``max_words``. A span runs from whitespace to whitespace
    (keeping quotes and the final period); whitespace between passages belongs to none; a text
    without words gives ``[]``. Pure function.
    """
    starts, ends, _ = tokens(text)
    ranges = passage_word_ranges(
        text,
        starts,
        min_words=min_words,
        target_words=target_words,
        max_words=max_words,
    )
    spans: list[tuple[int, int]] = []
    for w0, w1 in ranges:
        # Widen to whitespace so a passage keeps its opening quote and closing period, without
        # reaching into the neighbouring words nor into the passage before (Chinese puts no
        # space between them: its closing "。" went to that passage).
        start = starts[w0]
        floor = max(ends[w0 - 1] if w0 else 0, spans[-1][1] if spans else 0)
        while start > floor and not text[start - 1].isspace():
            start -= 1
        end = ends[w1 - 1]
        ceiling = starts[w1] if w1 < len(starts) else len(text)
        while end < ceiling and not text[end].isspace():
            end += 1
        spans.append((start, end))
    return spans


def passage_word_ranges(
    text: str,
    starts: Sequence[int],
    *,
    min_words: int = MIN_PASSAGE_WORDS,
    target_words: int = TARGET_PASSAGE_WORDS,
    max_words: int = MAX_PASSAGE_WORDS,
) -> list[tuple[int, int]]:
    """Passages as half-open word-index ranges ``(first word, last word + 1)``; the sizes are
    scaled by :func:`size_scale` of ``text``."""
    scale = size_scale(text)
    min_words, target_words, max_words = (x * scale for x in (min_words, target_words, max_words))
    n = len(starts)
    if n == 0:
        return []
    if n <= max_words:
        return [(0, n)]
    # Sentences as word ranges, each flagged when a line break follows it (a paragraph end).
    units: list[tuple[int, int, bool]] = []
    sents = sentences(text)
    for idx, sent in enumerate(sents):
        w0 = bisect_left(starts, sent.start)
        w1 = bisect_left(starts, sent.end)
        if w1 <= w0:
            continue
        following = sents[idx + 1].start if idx + 1 < len(sents) else len(text)
        breaks = "\n" in text[sent.end : following]
        # A sentence longer than max_words (a list, text without punctuation) is cut.
        while w1 - w0 > max_words:
            units.append((w0, w0 + target_words, False))
            w0 += target_words
        units.append((w0, w1, breaks))

    # Where each unit's paragraph ends (in words): a paragraph that fits is kept whole.
    paragraph_end = [0] * len(units)
    end_word = n
    for idx in range(len(units) - 1, -1, -1):
        if units[idx][2]:
            end_word = units[idx][1]
        paragraph_end[idx] = end_word

    ranges: list[tuple[int, int]] = []
    cur_start: int | None = None
    cur_end = 0
    for idx, (w0, w1, breaks) in enumerate(units):
        if cur_start is not None and w1 - cur_start > max_words:
            ranges.append((cur_start, cur_end))
            cur_start = None
        if cur_start is None:
            cur_start = w0
        cur_end = w1
        size = cur_end - cur_start
        if (breaks and size >= min_words) or (
            size >= target_words and paragraph_end[idx] - cur_start > max_words
        ):
            ranges.append((cur_start, cur_end))
            cur_start = None
    if cur_start is not None:
        if ranges and cur_end - cur_start < min_words and cur_end - ranges[-1][0] <= max_words:
            ranges[-1] = (ranges[-1][0], cur_end)
        else:
            ranges.append((cur_start, cur_end))
    return ranges


def windows(n_words: int, sizes: Sequence[int], k: int) -> list[tuple[int, int]]:
    """Word ranges of the query windows: for each size, a stride of a quarter of it, plus one
    window flush with the end; the whole text once when it is no longer than a size."""
    if n_words < k:
        return []
    found: set[tuple[int, int]] = set()
    for size in sizes:
        if n_words <= size:
            found.add((0, n_words))
            continue
        stride = max(1, size // 4)
        found.update((s, s + size) for s in range(0, n_words - size + 1, stride))
        found.add((n_words - size, n_words))
    return sorted(found)
