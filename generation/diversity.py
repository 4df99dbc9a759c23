"""How different a job's candidates are from each other (a figure for the job page and API).

Candidates of one job share a prompt, so they are alike by design: their similarity informs the
editor choosing between them, it never holds a draft (the review checks compare a draft with
the archive and published items only). Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import combinations
from typing import TypedDict

_WORD = re.compile(r"\w+")
SHINGLE_WORDS = 3


class Diversity(TypedDict):
    score: float | None  # 1 - mean pairwise similarity; None with fewer than two texts
    mean_similarity: float | None
    max_similarity: float | None
    most_similar: list[int] | None  # the candidate indexes of the most similar pair
    pairs: int


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < SHINGLE_WORDS:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def candidate_diversity(texts: Sequence[tuple[int, str]]) -> Diversity:
    """``texts``: (candidate index, text) of the candidates that have text."""
    sets = [(index, _shingles(text)) for index, text in texts if text.strip()]
    scored = [(jaccard(a, b), (i, j)) for (i, a), (j, b) in combinations(sets, 2)]
    if not scored:
        return Diversity(
            score=None, mean_similarity=None, max_similarity=None, most_similar=None, pairs=0
        )
    mean = sum(s for s, _ in scored) / len(scored)
    best, pair = max(scored)
    return Diversity(
        score=round(1.0 - mean, 3),
        mean_similarity=round(mean, 3),
        max_similarity=round(best, 3),
        most_similar=list(pair),
        pairs=len(scored),
    )
