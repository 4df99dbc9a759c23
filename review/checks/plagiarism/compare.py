"""Exact comparison of a draft with a candidate source: shared shingles, merged into passages.

Similarity is the share of a source passage's shingles that occur in the draft (containment of
the source in the draft, in percent); Jaccard is the exact Jaccard similarity between the source
passage and the best-matching draft window (what the LSH index estimates). Both are the best
over the source's passages. Matched passages come with character spans on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from review.checks.plagiarism.passages import (
    DEFAULT_WINDOW_SIZES,
    passage_word_ranges,
    size_scale,
    windows,
)
from review.checks.plagiarism.shingles import SHINGLE_WORDS, shingle_hashes, tokens


class LexicalMatch(TypedDict):
    """One source that the draft copies from, as stored in a CheckResult and sent to the page."""

    key: str
    # Percent of the source passage's shingles found in the draft (containment), 0-100.
    similarity: float
    # Percent exact Jaccard between the source passage and the best draft window, 0-100.
    jaccard: float
    # Matched passages, aligned by index: draft_spans[i] was copied from source_spans[i].
    # Each is [start, end) in characters of the draft and of the source text respectively.
    draft_spans: list[list[int]]
    source_spans: list[list[int]]


class DraftText:
    """A text being checked: words, shingles, query windows; verification helpers."""

    def __init__(
        self, text: str, *, k: int, window_sizes: Sequence[int], language: str | None = None
    ) -> None:
        self.text = text
        self.k = k
        self.starts, self.ends, word_hashes = tokens(text)
        self.shingles = shingle_hashes(word_hashes, k)
        scale = size_scale(text, language)
        sizes = [size * scale for size in window_sizes]
        if scale > 1 and len(self.starts) <= max(sizes):
            # A short Chinese draft has few long windows: the unscaled sizes give its copied
            # part more chances to share an LSH band with the passage it comes from.
            sizes += list(window_sizes)
        self.windows = windows(len(self.starts), sizes, k)
        self._positions: dict[int, list[int]] | None = None
        self._shingle_list: list[int] | None = None
        self._window_sets: dict[int, set[int]] = {}

    @property
    def shingle_list(self) -> list[int]:
        if self._shingle_list is None:
            self._shingle_list = self.shingles.tolist()
        return self._shingle_list

    @property
    def positions(self) -> dict[int, list[int]]:
        """Shingle hash -> the draft positions where it occurs."""
        if self._positions is None:
            positions: dict[int, list[int]] = {}
            for i, h in enumerate(self.shingle_list):
                positions.setdefault(h, []).append(i)
            self._positions = positions
        return self._positions

    def window_shingles(self, index: int) -> set[int]:
        """The shingles of one query window, built when first asked for: verification looks
        only at the windows around a candidate's shared shingles (a Chinese draft has dozens)."""
        found = self._window_sets.get(index)
        if found is None:
            w0, w1 = self.windows[index]
            found = self._window_sets[index] = set(self.shingle_list[w0 : w1 - self.k + 1])
        return found


def compare_texts(
    draft: str,
    source: str,
    *,
    key: str = "",
    min_span_words: int = 8,
    window_sizes: Sequence[int] = DEFAULT_WINDOW_SIZES,
) -> LexicalMatch | None:
    """Exact comparison of two texts, without an index: what :meth:`LexicalIndex.find_matches`
    does for each candidate. None when they share no 5-word shingle. Pure function.

    ``min_span_words`` drops shorter matched passages unless nothing longer matched; no
    similarity threshold is applied.
    """
    prepared = DraftText(draft, k=SHINGLE_WORDS, window_sizes=tuple(sorted(window_sizes)))
    return verify(prepared, key=key, source=source, k=SHINGLE_WORDS, min_span_words=min_span_words)


def verify(
    draft: DraftText, *, key: str, source: str, k: int, min_span_words: int
) -> LexicalMatch | None:
    """Compare a candidate source text with the draft exactly; None when nothing is shared."""
    if not len(draft.shingles):
        return None
    s_starts, s_ends, s_word_hashes = tokens(source)
    s_shingles = shingle_hashes(s_word_hashes, k).tolist()
    positions = draft.positions
    # Shared shingles as (draft position, source position) pairs.
    pairs = [(i, j) for j, h in enumerate(s_shingles) if h in positions for i in positions[h]]
    if not pairs:
        return None

    # Similarity per source passage (the unit that was indexed), keep the best.
    best_containment = 0.0
    best_jaccard = 0.0
    for w0, w1 in passage_word_ranges(source, s_starts):
        last = w1 - k + 1
        if last <= w0:
            continue
        passage = set(s_shingles[w0:last])
        shared = passage.intersection(positions)
        if not shared:
            continue
        best_containment = max(best_containment, len(shared) / len(passage))
        # Only windows around the draft positions of the shared shingles can score.
        hit = [i for i, j in pairs if w0 <= j < last]
        lo, hi = min(hit), max(hit)
        for index, (d0, d1) in enumerate(draft.windows):
            if d0 <= hi and d1 - k >= lo:
                window = draft.window_shingles(index)
                inter = len(passage & window)
                best_jaccard = max(best_jaccard, inter / (len(passage) + len(window) - inter))

    spans = _matched_spans(pairs, k=k)
    long_spans = [s for s in spans if s[1] - s[0] + 1 >= min_span_words]
    if not long_spans:
        long_spans = [max(spans, key=lambda s: (s[1] - s[0], -s[0]))]
    long_spans.sort()
    return LexicalMatch(
        key=key,
        similarity=round(100.0 * best_containment, 1),
        jaccard=round(100.0 * best_jaccard, 1),
        draft_spans=[[draft.starts[d0], draft.ends[d1]] for d0, d1, _s0, _s1 in long_spans],
        source_spans=[[s_starts[s0], s_ends[s1]] for _d0, _d1, s0, s1 in long_spans],
    )


# Words that may separate two matched runs and still be shown as one passage (an edited or
# inserted word breaks the shingles around it but not the copying).
_MAX_GAP_WORDS = 3


def _matched_spans(pairs: list[tuple[int, int]], *, k: int) -> list[tuple[int, int, int, int]]:
    """Merge shared-shingle pairs into maximal passages ``(draft first word, draft last word,
    source first word, source last word)``, inclusive word indices."""
    # Runs along a diagonal: consecutive shingles on both sides.
    runs: list[tuple[int, int, int, int]] = []
    ordered = sorted(pairs, key=lambda p: (p[0] - p[1], p[0]))
    start = prev = ordered[0]
    for pair in ordered[1:]:
        if pair[0] - pair[1] == prev[0] - prev[1] and pair[0] == prev[0] + 1:
            prev = pair
            continue
        runs.append((start[0], prev[0] + k - 1, start[1], prev[1] + k - 1))
        start = prev = pair
    runs.append((start[0], prev[0] + k - 1, start[1], prev[1] + k - 1))

    # Join runs separated by a few edited words on both sides, in draft order.
    runs.sort()
    merged: list[tuple[int, int, int, int]] = [runs[0]]
    for d0, d1, s0, s1 in runs[1:]:
        m0, m1, n0, n1 = merged[-1]
        if -k < d0 - m1 - 1 <= _MAX_GAP_WORDS and -k < s0 - n1 - 1 <= _MAX_GAP_WORDS:
            merged[-1] = (m0, max(m1, d1), n0, max(n1, s1))
        else:
            merged.append((d0, d1, s0, s1))
    return merged
