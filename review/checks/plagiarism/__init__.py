"""Lexical plagiarism: word 5-gram shingles, MinHash + LSH for candidates, exact verification.

A check runs in three steps: sources are indexed passage by passage as LSH band hashes
(:mod:`.index`, :mod:`.band_store`); a draft is looked up by sliding windows of several sizes
(containment, not whole-document similarity: one copied paragraph in a long draft is found);
each candidate's current text is compared exactly (:mod:`.compare`), giving the share of the
source found in the draft and the matched passages with character spans on both sides.

Chinese: a Han character is a token of its own (character 5-grams, :mod:`.shingles`), and
Chinese passages and query windows count two characters per word (:mod:`.passages`), so they
hold as much text as English ones.

Nothing here touches the ORM; the Django side feeds texts in and stores the returned dicts.
"""

from __future__ import annotations

from review.checks.plagiarism.compare import LexicalMatch, compare_texts
from review.checks.plagiarism.index import LexicalIndex
from review.checks.plagiarism.passages import split_passages
from review.checks.plagiarism.shingles import SHINGLE_WORDS

__all__ = [
    "SHINGLE_WORDS",
    "LexicalIndex",
    "LexicalMatch",
    "compare_texts",
    "split_passages",
]
