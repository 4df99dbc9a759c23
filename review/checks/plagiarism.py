"""Lexical plagiarism check: word 5-gram shingles, MinHash + LSH for candidates, exact verification.

How a check runs:

1. Everything that can be copied from (archive passages ``"a:123"``, drafts ``"d:45"``, published
   items ``"p:7"``) is added to a :class:`LexicalIndex` under its key. Its text is cut into
   passages of about 40-150 words (:func:`split_passages`) and each passage's MinHash signature
   (datasketch's ``affine32`` scheme) is stored as LSH band hashes in a compact
   :class:`~review.checks.lsh.BandStore`.
2. A draft is checked by sliding windows of several sizes over its words (so that one copied
   paragraph inside a long draft resembles a window, not the whole draft: containment, not
   whole-document similarity), looking the windows' band hashes up, and taking the union of the
   keys found.
3. Each candidate's current text (from the caller's ``fetch_texts``) is compared exactly: shared
   shingles, merged into maximal matched passages with character spans on both sides.

Similarity is the share of a source passage's shingles that occur in the draft (containment of
the source in the draft, in percent); Jaccard is the exact Jaccard similarity between the source
passage's shingles and the best-matching draft window (what the LSH index estimates), also in
percent. Both are the best over the source's passages when a source is long.

Nothing here touches the ORM; the Django side feeds texts in and stores the returned dicts.
"""

from __future__ import annotations

import hashlib
import threading
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from itertools import islice
from typing import TypedDict

import numpy as np
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from review.checks.lsh import BandStore, MemoryBandStore, RedisBandStore
from review.checks.text import _WORD_RE, normalise_word, sentences

__all__ = [
    "SHINGLE_WORDS",
    "LexicalIndex",
    "LexicalMatch",
    "compare_texts",
    "split_passages",
]

# Words per shingle. Five-word shingles rarely repeat by chance between unrelated texts, yet an
# edited word only breaks five of them.
SHINGLE_WORDS = 5

# Bump when the hashing scheme changes: it is part of the Redis key prefix, so old entries are
# never mixed with new ones (the new prefix starts empty and the caller rebuilds).
_INDEX_VERSION = 1

# Passage lengths in words (see split_passages). The window sizes below cover them within a
# factor of 1.5, so some window of a draft that contains a whole passage overlaps it with an
# exact Jaccard of about 0.8 or more.
MIN_PASSAGE_WORDS = 40
TARGET_PASSAGE_WORDS = 100
MAX_PASSAGE_WORDS = 150
DEFAULT_WINDOW_SIZES: tuple[int, ...] = (40, 60, 90, 135)


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


# -- hashing ----------------------------------------------------------------------------------

_U64 = np.uint64
_SHINGLE_MULT = _U64(0x9E3779B97F4A7C15)
_FMIX64 = (_U64(33), _U64(0xFF51AFD7ED558CCD), _U64(33), _U64(0xC4CEB9FE1A85EC53), _U64(33))
# datasketch's MurmurHash3 32-bit finalizer, applied to every input hash by its affine32 scheme.
_FMIX32 = (
    np.uint32(16),
    np.uint32(0x85EBCA6B),
    np.uint32(13),
    np.uint32(0xC2B2AE35),
    np.uint32(16),
)


def _fmix(values: np.ndarray, constants: tuple[np.integer, ...]) -> np.ndarray:
    s1, m1, s2, m2, s3 = constants
    values = values ^ (values >> s1)
    values = values * m1
    values = values ^ (values >> s2)
    values = values * m2
    return values ^ (values >> s3)


@lru_cache(maxsize=1 << 16)
def _word_hash(raw: str) -> int:
    """64-bit hash of a word's normalised form, cached by surface form.

    A process-independent hash (not ``hash()``, which is salted per process): Redis indexes are
    shared by workers and rebuilt indexes must agree. The cache (about 10 MB when full) makes
    the slow parts (normalisation, blake2b) run once per distinct word, not once per occurrence.
    """
    digest = hashlib.blake2b(normalise_word(raw).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _word_hashes(text: str) -> np.ndarray:
    # Same regex as text.words(), without building Token objects (5x faster when indexing);
    # tests check that the two agree.
    return np.fromiter(map(_word_hash, _WORD_RE.findall(text)), dtype=np.uint64)


def _tokens(text: str) -> tuple[list[int], list[int], np.ndarray]:
    """Word starts, word ends and word hashes: the same words as ``text.words(text)``."""
    starts: list[int] = []
    ends: list[int] = []
    hashes: list[int] = []
    for match in _WORD_RE.finditer(text):
        starts.append(match.start())
        ends.append(match.end())
        hashes.append(_word_hash(match.group()))
    return starts, ends, np.array(hashes, dtype=np.uint64)


def _shingle_hashes(word_hashes: np.ndarray, k: int = SHINGLE_WORDS) -> np.ndarray:
    """64-bit hash of every run of ``k`` consecutive words; shingle i starts at word i."""
    n = len(word_hashes) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = word_hashes[:n].copy()
    for j in range(1, k):
        # Polynomial in the word hashes, modulo 2^64 (numpy arrays wrap silently).
        h = h * _SHINGLE_MULT + word_hashes[j : j + n]
    return _fmix(h, _FMIX64)


class _MinHasher:
    """datasketch ``MinHash`` (affine32 scheme) signatures, computed for many sets at once.

    ``MinHash.update_batch`` calls its hash function once per element in Python; here the
    elements are already 32-bit shingle hashes, so the permutations are applied to whole
    arrays. The permutation parameters come from datasketch itself and the result equals
    ``MinHash(num_perm, seed, hashfunc=int).update_batch(...)`` (tested).
    """

    # Shingles permuted per numpy call: (1024 x 128) uint32 is 512 KB, which stays in cache
    # between the permutation and the min-reduction (2.7x faster than 16k-shingle chunks).
    _CHUNK = 1024

    def __init__(self, *, num_perm: int, seed: int) -> None:
        template = MinHash(num_perm=num_perm, seed=seed, scheme="affine32")
        a, b = template.permutations
        self.num_perm = num_perm
        self.seed = seed
        self._a = np.asarray(a, dtype=np.uint32)
        self._b = np.asarray(b, dtype=np.uint32)

    def permuted(self, shingles32: np.ndarray) -> np.ndarray:
        """(n, num_perm) permuted hash values of n shingles."""
        hv = _fmix(np.asarray(shingles32, dtype=np.uint32), _FMIX32)
        out = np.multiply(hv[:, None], self._a[None, :])
        out += self._b
        return out

    def signatures(self, sets: Sequence[np.ndarray]) -> np.ndarray:
        """(len(sets), num_perm) signatures; an empty set gets the all-max empty signature."""
        out = np.full((len(sets), self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        nonempty = [r for r, values in enumerate(sets) if len(values)]
        if not nonempty:
            return out
        rows = np.array(nonempty, dtype=np.int64)
        hv = _fmix(np.concatenate([sets[r] for r in nonempty]).astype(np.uint32), _FMIX32)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(sets[r]) for r in nonempty], out=offsets[1:])
        buffer = np.empty((self._CHUNK, self.num_perm), dtype=np.uint32)
        i = 0
        while i < len(rows):
            # Whole sets with about _CHUNK shingles in all (at least one set).
            j = int(np.searchsorted(offsets, offsets[i] + self._CHUNK, side="right")) - 1
            j = min(max(j, i + 1), len(rows))
            lo, hi = int(offsets[i]), int(offsets[j])
            values = buffer[: hi - lo] if hi - lo <= self._CHUNK else None
            values = np.multiply(hv[lo:hi, None], self._a[None, :], out=values)
            values += self._b
            out[rows[i:j]] = np.minimum.reduceat(values, offsets[i:j] - lo, axis=0)
            i = j
        return out


def _band_salts(bands: int) -> np.ndarray:
    return _fmix((np.arange(1, bands + 1, dtype=np.uint64) * _SHINGLE_MULT), _FMIX64)


def _band_hashes(signatures: np.ndarray, *, bands: int, rows: int, salts: np.ndarray) -> np.ndarray:
    """(n, bands) uint64: one hash per LSH band, salted by band number so all bands can share
    one table (equal values in different bands never collide by construction)."""
    n = len(signatures)
    values = signatures[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    h = np.broadcast_to(salts, (n, bands)).copy()
    for j in range(rows):
        h = _fmix(h ^ values[:, :, j], _FMIX64)
    return h


# -- passages ---------------------------------------------------------------------------------


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
    starts, ends, _ = _tokens(text)
    ranges = _passage_word_ranges(
        text,
        starts,
        min_words=min_words,
        target_words=target_words,
        max_words=max_words,
    )
    spans: list[tuple[int, int]] = []
    for w0, w1 in ranges:
        # Widen to whitespace so a passage keeps its opening quote and closing period, without
        # reaching into the neighbouring words.
        start = starts[w0]
        floor = ends[w0 - 1] if w0 else 0
        while start > floor and not text[start - 1].isspace():
            start -= 1
        end = ends[w1 - 1]
        ceiling = starts[w1] if w1 < len(starts) else len(text)
        while end < ceiling and not text[end].isspace():
            end += 1
        spans.append((start, end))
    return spans


def _passage_word_ranges(
    text: str,
    starts: Sequence[int],
    *,
    min_words: int = MIN_PASSAGE_WORDS,
    target_words: int = TARGET_PASSAGE_WORDS,
    max_words: int = MAX_PASSAGE_WORDS,
) -> list[tuple[int, int]]:
    """Passages as half-open word-index ranges ``(first word, last word + 1)``."""
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


def _windows(n_words: int, sizes: Sequence[int], k: int) -> list[tuple[int, int]]:
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


# -- the index --------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    # datasketch's own optimiser: bands x rows minimising the (equally weighted) false positive
    # and false negative areas around the threshold.
    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return int(bands), int(rows)


class _Draft:
    """A text being checked: words, shingles, query windows; verification helpers."""

    def __init__(self, text: str, *, k: int, window_sizes: Sequence[int]) -> None:
        self.text = text
        self.k = k
        self.starts, self.ends, word_hashes = _tokens(text)
        self.shingles = _shingle_hashes(word_hashes, k)
        self.windows = _windows(len(self.starts), window_sizes, k)
        self._positions: dict[int, list[int]] | None = None
        self._window_sets: list[set[int]] | None = None

    @property
    def positions(self) -> dict[int, list[int]]:
        """Shingle hash -> the draft positions where it occurs."""
        if self._positions is None:
            positions: dict[int, list[int]] = {}
            for i, h in enumerate(self.shingles.tolist()):
                positions.setdefault(h, []).append(i)
            self._positions = positions
        return self._positions

    def window_shingles(self, index: int) -> set[int]:
        if self._window_sets is None:
            shingles = self.shingles.tolist()
            self._window_sets = [set(shingles[w0 : w1 - self.k + 1]) for w0, w1 in self.windows]
        return self._window_sets[index]


class LexicalIndex:
    """The lexical plagiarism index of one project, and the check that queries it.

    ``namespace`` names the project (e.g. ``"project-3"``). With ``redis_url`` the band store
    lives in Redis under ``{redis_prefix}:{namespace}:{fingerprint}`` and is shared by every
    worker; the fingerprint encodes the hashing parameters, so a change of parameters starts
    from an empty index (``len(index) == 0``: rebuild it) instead of mixing schemes. Without
    ``redis_url`` the store lives in this process and must be rebuilt from the database when the
    process starts (:meth:`rebuild`). ``store`` overrides both (tests).

    ``threshold`` is the Jaccard similarity (between a source passage and a draft window) around
    which datasketch's optimiser lays out the LSH bands. 0.3 gives 37 bands of 3 rows at 128
    permutations (about 620 bytes per passage in the in-process store, keys included).
    Measured on 20k synthetic passages planted in 300-word drafts: with 10% of the words edited
    it still finds 93% of the copies, against 67% for 0.4 (32 bands of 4 rows), at the same
    query time and with no extra candidates from unrelated text. Pairs at Jaccard >= 0.5 are
    found with recall ~0.99 (bench/bench_plagiarism.py).

    ``window_sizes`` are the query window lengths in words. Several sizes, because a window much
    shorter than a copied passage caps their Jaccard. Measured as above: with one 50-word window
    (stride 12), copies with 10% of words edited were found 81% of the time (76% for passages
    over 100 words), against 93% (95%) with the default sizes, for about 0.3 ms more per
    300-word draft (61 windows instead of 21).
    """

    def __init__(
        self,
        namespace: str,
        *,
        redis_url: str | None = None,
        redis_prefix: str = "contentstudio:plagiarism",
        store: BandStore | None = None,
        num_perm: int = 128,
        threshold: float = 0.3,
        seed: int = 1,
        window_sizes: Sequence[int] = DEFAULT_WINDOW_SIZES,
    ) -> None:
        if not namespace:
            raise ValueError("namespace must be non-empty")
        self.namespace = namespace
        self.k = SHINGLE_WORDS
        self.bands, self.rows = _lsh_params(threshold, num_perm)
        self.window_sizes = tuple(sorted(window_sizes))
        self._hasher = _MinHasher(num_perm=num_perm, seed=seed)
        self._salts = _band_salts(self.bands)
        self.fingerprint = (
            f"v{_INDEX_VERSION}-k{self.k}-p{num_perm}-s{seed}-b{self.bands}r{self.rows}"
            f"-w{MIN_PASSAGE_WORDS}.{TARGET_PASSAGE_WORDS}.{MAX_PASSAGE_WORDS}"
        )
        if store is not None:
            self.store: BandStore = store
        elif redis_url:
            prefix = f"{redis_prefix}:{namespace}:{self.fingerprint}"
            self.store = RedisBandStore(redis_url, prefix=prefix)
        else:
            self.store = MemoryBandStore()
        # Serialises writes and reads of the in-process store, which web threads and a worker
        # thread may share. Redis needs none: each write is one atomic script.
        self._lock: AbstractContextManager[object] = (
            threading.RLock() if isinstance(self.store, MemoryBandStore) else nullcontext()
        )

    # -- writes -------------------------------------------------------------------------------

    def add(self, *, key: str, text: str) -> None:
        """Index ``text`` under ``key``, replacing the key's previous text.

        Side effect: writes to the band store (Redis when configured). A text with fewer than
        five words is registered but can match nothing.
        """
        self.add_many([(key, text)])

    def add_many(self, items: Iterable[tuple[str, str]], *, batch_size: int = 2000) -> int:
        """Index many ``(key, text)`` pairs (the rebuild path); returns how many were given.

        Side effect: writes to the band store, one batch at a time.
        """
        count = 0
        iterator = iter(items)
        while batch := list(islice(iterator, batch_size)):
            entries = self.band_entries(batch)
            with self._lock:
                self.store.add_many(entries)
            count += len(batch)
        return count

    def remove(self, key: str) -> bool:
        """Forget ``key`` (a deleted archive document, draft or publication); True if known.

        Side effect: writes to the band store.
        """
        with self._lock:
            return self.store.remove(key)

    def clear(self) -> None:
        """Forget every key. Side effect: with Redis, deletes the shared index of this project."""
        with self._lock:
            self.store.clear()

    def rebuild(self, items: Iterable[tuple[str, str]]) -> int:
        """Replace the whole index by ``items`` (``(key, text)`` pairs from the database).

        Side effects: clears the store first, so queries during the rebuild see a partial index;
        with Redis this affects every worker of the project.
        """
        self.clear()
        return self.add_many(items)

    def __len__(self) -> int:
        return len(self.store)

    def __contains__(self, key: object) -> bool:
        return key in self.store

    def band_entries(self, batch: Sequence[tuple[str, str]]) -> list[tuple[str, np.ndarray]]:
        """What :meth:`add_many` stores: per key, the band hashes of all its passages.

        Pure computation, no store access: lets a caller fill another store (a migration from
        the in-process store to Redis, a benchmark) without hashing twice.
        """
        k = self.k
        sets: list[np.ndarray] = []
        owners: list[int] = []
        for index, (_key, text) in enumerate(batch):
            word_hashes = _word_hashes(text)
            if len(word_hashes) <= MAX_PASSAGE_WORDS:
                ranges = [(0, len(word_hashes))]
            else:
                starts, _ends, word_hashes = _tokens(text)
                ranges = _passage_word_ranges(text, starts)
            shingles32 = (_shingle_hashes(word_hashes, k) >> _U64(32)).astype(np.uint32)
            for w0, w1 in ranges:
                if w1 - w0 >= k:
                    sets.append(shingles32[w0 : w1 - k + 1])
                    owners.append(index)
        per_key: list[list[np.ndarray]] = [[] for _ in batch]
        if sets:
            signatures = self._hasher.signatures(sets)
            bands = _band_hashes(signatures, bands=self.bands, rows=self.rows, salts=self._salts)
            for owner, row in zip(owners, bands, strict=True):
                per_key[owner].append(row)
        return [
            (key, np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64))
            for (key, _text), parts in zip(batch, per_key, strict=True)
        ]

    # -- queries ------------------------------------------------------------------------------

    def _window_band_hashes(self, draft: _Draft) -> np.ndarray:
        if not draft.windows:
            return np.zeros(0, dtype=np.uint64)
        permuted = self._hasher.permuted((draft.shingles >> _U64(32)).astype(np.uint32))
        k = self.k
        signatures = np.stack([permuted[w0 : w1 - k + 1].min(axis=0) for w0, w1 in draft.windows])
        return _band_hashes(signatures, bands=self.bands, rows=self.rows, salts=self._salts)

    def candidates(self, text: str, *, exclude: Collection[str] | str = ()) -> dict[str, int]:
        """Keys whose passages share an LSH band with some window of ``text``, with the number
        of distinct shared band hashes (a rough rank). No verification; reads the store only."""
        return self._candidates(
            _Draft(text, k=self.k, window_sizes=self.window_sizes), exclude=exclude
        )

    def _candidates(self, draft: _Draft, *, exclude: Collection[str] | str) -> dict[str, int]:
        hashes = self._window_band_hashes(draft)
        if not len(hashes):
            return {}
        with self._lock:
            found = self.store.query(hashes)
        for key in _as_key_set(exclude):
            found.pop(key, None)
        return found

    def find_matches(
        self,
        text: str,
        *,
        fetch_texts: Callable[[list[str]], Mapping[str, str]],
        exclude: Collection[str] | str = (),
        min_similarity: float = 20.0,
        max_candidates: int = 500,
        min_span_words: int = 8,
    ) -> list[LexicalMatch]:
        """Sources that ``text`` copies from, best first.

        ``fetch_texts(keys)`` returns the current text of each key (keys it omits, e.g. deleted
        since they were indexed, are skipped); ``exclude`` is the key (or keys) of the draft
        itself. Sources whose best passage has less than ``min_similarity`` percent of its
        shingles in the draft are dropped, as are matched passages shorter than
        ``min_span_words`` words (stray common phrases) unless nothing longer matched. At most
        ``max_candidates`` candidates (those sharing the most bands) are verified.

        Side effects: reads the band store and calls ``fetch_texts`` once.
        """
        draft = _Draft(text, k=self.k, window_sizes=self.window_sizes)
        found = self._candidates(draft, exclude=exclude)
        if not found:
            return []
        keys = sorted(found, key=lambda key: (-found[key], key))[:max_candidates]
        texts = fetch_texts(keys)
        matches: list[LexicalMatch] = []
        for key in keys:
            source = texts.get(key)
            if source is None:
                continue
            match = _verify(draft, key=key, source=source, k=self.k, min_span_words=min_span_words)
            if match is not None and match["similarity"] >= min_similarity:
                matches.append(match)
        matches.sort(key=lambda m: (-m["similarity"], -m["jaccard"], m["key"]))
        return matches


def _as_key_set(exclude: Collection[str] | str) -> set[str]:
    # A lone key is a str, itself a Collection[str] of characters: don't split it.
    return {exclude} if isinstance(exclude, str) else set(exclude)


# -- exact verification -----------------------------------------------------------------------


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
    prepared = _Draft(draft, k=SHINGLE_WORDS, window_sizes=tuple(sorted(window_sizes)))
    return _verify(prepared, key=key, source=source, k=SHINGLE_WORDS, min_span_words=min_span_words)


def _verify(
    draft: _Draft, *, key: str, source: str, k: int, min_span_words: int
) -> LexicalMatch | None:
    """Compare a candidate source text with the draft exactly; None when nothing is shared."""
    if not len(draft.shingles):
        return None
    s_starts, s_ends, s_word_hashes = _tokens(source)
    s_shingles = _shingle_hashes(s_word_hashes, k).tolist()
    positions = draft.positions
    # Shared shingles as (draft position, source position) pairs.
    pairs = [(i, j) for j, h in enumerate(s_shingles) if h in positions for i in positions[h]]
    if not pairs:
        return None

    # Similarity per source passage (the unit that was indexed), keep the best.
    best_containment = 0.0
    best_jaccard = 0.0
    for w0, w1 in _passage_word_ranges(source, s_starts):
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
