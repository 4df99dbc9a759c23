"""Keep the splits of a labelled set apart: a near-duplicate guard, and rates with intervals.

Decision: two texts are near duplicates when the Jaccard similarity of their word sets (word
1-shingles, lower-cased, punctuation dropped) is at least ``NEAR_DUPLICATE_JACCARD`` (0.4), or
when their word 3-shingle sets are. Word sets catch what exact-string checks and longer shingles
miss: "Damn, this fucking app crashes every time." and "This damn app crashes every fucking
time." share every word (Jaccard 1.0) but only one 3-shingle in nine. The 3-shingle test adds
little on short texts and catches long texts that share whole phrases but differ in vocabulary.

Every pair between two splits is compared exactly: the word sets become a sparse 0/1 matrix and
one sparse product gives every intersection, so a few thousand texts against a few thousand take
well under a second. ``wilson`` is the 95% interval printed beside every rate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

NEAR_DUPLICATE_JACCARD = 0.4
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def word_list(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shingle_set(text: str, k: int = 1) -> frozenset[str]:
    """The set of word k-shingles of ``text`` (the whole text as one shingle if shorter)."""
    words = word_list(text)
    if len(words) <= k:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i : i + k]) for i in range(len(words) - k + 1))


def jaccard(a: str, b: str, k: int = 1) -> float:
    sa, sb = shingle_set(a, k), shingle_set(b, k)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


class NearDuplicate(NamedTuple):
    left: int  # index into the first list
    right: int  # index into the second list
    jaccard: float  # the larger of the word-set and 3-shingle Jaccard


def _jaccard_matrix(left: Sequence[str], right: Sequence[str], k: int) -> np.ndarray:
    from scipy import sparse

    vocabulary: dict[str, int] = {}

    def matrix(texts: Sequence[str]) -> sparse.csr_matrix:
        rows, cols = [], []
        for row, text in enumerate(texts):
            for shingle in shingle_set(text, k):
                rows.append(row)
                cols.append(vocabulary.setdefault(shingle, len(vocabulary)))
        return rows, cols

    lr, lc = matrix(left)
    rr, rc = matrix(right)
    size = len(vocabulary) or 1
    a = sparse.csr_matrix((np.ones(len(lr), np.float32), (lr, lc)), shape=(len(left), size))
    b = sparse.csr_matrix((np.ones(len(rr), np.float32), (rr, rc)), shape=(len(right), size))
    inter = (a @ b.T).toarray()
    sizes_a = np.asarray(a.sum(axis=1)).ravel()
    sizes_b = np.asarray(b.sum(axis=1)).ravel()
    union = sizes_a[:, None] + sizes_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def near_duplicates(
    left: Sequence[str], right: Sequence[str], *, threshold: float = NEAR_DUPLICATE_JACCARD
) -> list[NearDuplicate]:
    """Every (left, right) pair whose word-set or word 3-shingle Jaccard is >= ``threshold``."""
    if not left or not right:
        return []
    found: list[NearDuplicate] = []
    # In blocks, so a large split never needs one huge dense matrix.
    block = 2000
    for start in range(0, len(left), block):
        part = left[start : start + block]
        scores = np.maximum(_jaccard_matrix(part, right, 1), _jaccard_matrix(part, right, 3))
        for i, j in zip(*np.nonzero(scores >= threshold), strict=True):
            found.append(NearDuplicate(start + int(i), int(j), round(float(scores[i, j]), 3)))
    return found


def check_apart(
    splits: dict[str, Sequence[str]], *, threshold: float = NEAR_DUPLICATE_JACCARD
) -> list[tuple[str, str, str, str, float]]:
    """Near duplicates between every two named splits: (split, text, other split, text, J)."""
    names = list(splits)
    leaks = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            for pair in near_duplicates(splits[first], splits[second], threshold=threshold):
                leaks.append(
                    (
                        first,
                        splits[first][pair.left],
                        second,
                        splits[second][pair.right],
                        pair.jaccard,
                    )
                )
    return leaks


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a rate of ``successes`` in ``n``."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate_line(name: str, successes: int, n: int) -> str:
    """``name: rate`` with n and the 95% Wilson interval, as the benchmarks print it."""
    low, high = wilson(successes, n)
    rate = successes / n if n else float("nan")
    return f"{name}: {rate:.4f} (n={n}, {successes} of {n}, 95% CI {low:.4f}-{high:.4f})"
