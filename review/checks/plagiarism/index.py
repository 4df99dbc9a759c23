"""The lexical index of one project: passages stored as LSH band hashes, drafts queried by windows.

Everything that can be copied from (archive passages ``"a:123"``, published items ``"p:7"``) is
added under its key: its text is cut into passages (:mod:`.passages`) and each passage's MinHash
signature is stored as band hashes in a band store (:mod:`.band_store`: in the process, or in
Redis shared by every worker). A draft is queried by sliding windows of several sizes, so one
copied paragraph inside a long draft resembles a window, not the whole draft. Each passage also
stores its anchors (winnowed shingles, :func:`.shingles.anchor_positions`) and every draft
shingle is looked up among them, so a short run copied from a long passage (which no window
resembles whole) is a candidate too. The candidates are then compared exactly (:mod:`.compare`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from itertools import islice

import numpy as np
from datasketch.lsh import _optimal_param

from review.checks.plagiarism.band_store import BandStore, MemoryBandStore, RedisBandStore
from review.checks.plagiarism.compare import DraftText, LexicalMatch, verify
from review.checks.plagiarism.passages import (
    DEFAULT_WINDOW_SIZES,
    HAN_SCALE,
    MAX_PASSAGE_WORDS,
    MIN_PASSAGE_WORDS,
    TARGET_PASSAGE_WORDS,
    passage_word_ranges,
    size_scale,
)
from review.checks.plagiarism.shingles import (
    ANCHOR_WINDOW,
    SHINGLE_WORDS,
    MinHasher,
    anchor_hashes,
    anchor_positions,
    band_hashes,
    band_salts,
    count_tokens,
    shingle_hashes,
    tokens,
    word_hashes,
)

# Bump when the hashing scheme changes: it is part of the Redis key prefix, so old entries are
# never mixed with new ones (the new prefix starts empty and the caller rebuilds).
_INDEX_VERSION = 3  # 2: Han characters are tokens one by one; 3: anchors (winnowed shingles)


@lru_cache(maxsize=64)
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    # datasketch's own optimiser: bands x rows minimising the (equally weighted) false positive
    # and false negative areas around the threshold.
    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return int(bands), int(rows)


class LexicalIndex:
    """The lexical plagiarism index of one project, and the check that queries it.

    ``namespace`` names the project (e.g. ``"project-3"``). With ``redis_url`` the band store
    lives in Redis under ``{redis_prefix}:{namespace}:{fingerprint}`` and is shared by every
    worker; the fingerprint encodes the hashing parameters, so a change of parameters starts
    from an empty index (``len(index) == 0``: rebuild it) instead of mixing schemes. Without
    ``redis_url`` the store lives in this process and must be rebuilt from the database when the
    process starts (:meth:`rebuild`). ``store`` overrides both (tests).

    ``threshold`` is the Jaccard similarity (between a source passage and a draft window) around
    which datasketch's optimiser lays out the LSH bands: 0.3 (37 bands of 3 rows at 128
    permutations) finds lightly edited copies that 0.4 misses, at the same query time.
    ``window_sizes`` are the query window lengths in words: several, because a window much
    shorter than a copied passage caps their Jaccard. ``min_anchors``: anchors a passage must
    share with the draft to be a candidate on their evidence alone. The measurements are in
    docs/review.md.
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
        min_anchors: int = 1,
    ) -> None:
        if not namespace:
            raise ValueError("namespace must be non-empty")
        self.namespace = namespace
        self.k = SHINGLE_WORDS
        self.bands, self.rows = _lsh_params(threshold, num_perm)
        self.window_sizes = tuple(sorted(window_sizes))
        self.min_anchors = min_anchors
        self._hasher = MinHasher(num_perm=num_perm, seed=seed)
        self._salts = band_salts(self.bands)
        self.fingerprint = (
            f"v{_INDEX_VERSION}-k{self.k}-p{num_perm}-s{seed}-b{self.bands}r{self.rows}"
            f"-w{MIN_PASSAGE_WORDS}.{TARGET_PASSAGE_WORDS}.{MAX_PASSAGE_WORDS}x{HAN_SCALE}"
            f"-a{ANCHOR_WINDOW}"
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
        """What :meth:`add_many` stores: per key, the band hashes and anchors of all its passages.

        Pure computation, no store access: lets a caller fill another store (a migration from
        the in-process store to Redis, a benchmark) without hashing twice.
        """
        k = self.k
        sets: list[np.ndarray] = []
        owners: list[int] = []
        per_key: list[list[np.ndarray]] = [[] for _ in batch]
        for index, (_key, text) in enumerate(batch):
            hashes = word_hashes(text)
            if len(hashes) <= MAX_PASSAGE_WORDS * size_scale(text):
                ranges = [(0, len(hashes))]
            else:
                starts, _ends, hashes = tokens(text)
                ranges = passage_word_ranges(text, starts)
            shingles = shingle_hashes(hashes, k)
            shingles32 = (shingles >> np.uint64(32)).astype(np.uint32)
            for w0, w1 in ranges:
                if w1 - w0 >= k:
                    sets.append(shingles32[w0 : w1 - k + 1])
                    owners.append(index)
                    passage = shingles[w0 : w1 - k + 1]
                    per_key[index].append(anchor_hashes(passage[anchor_positions(passage)]))
        if sets:
            signatures = self._hasher.signatures(sets)
            bands = band_hashes(signatures, bands=self.bands, rows=self.rows, salts=self._salts)
            for owner, row in zip(owners, bands, strict=True):
                per_key[owner].append(row)
        return [
            (key, np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64))
            for (key, _text), parts in zip(batch, per_key, strict=True)
        ]

    # -- queries ------------------------------------------------------------------------------

    def _window_band_hashes(self, draft: DraftText) -> np.ndarray:
        if not draft.windows:
            return np.zeros(0, dtype=np.uint64)
        # Permuted hashes one row per permutation, and every window's minima in one
        # ``reduceat``: its index list holds each window's (start, end), so the even outputs
        # are the windows and the odd ones (between windows) are dropped. The padding column
        # keeps an end equal to the last shingle's index valid. A Chinese draft has 10-30
        # windows where an English one of as many characters has one or two; one call per
        # window cost more than the minima.
        permuted = self._hasher.permuted_rows(
            (draft.shingles >> np.uint64(32)).astype(np.uint32), pad=1
        )
        bounds = np.array(draft.windows, dtype=np.intp)
        bounds[:, 1] -= self.k - 1
        signatures = np.minimum.reduceat(permuted, bounds.ravel(), axis=1)[:, ::2].T
        return band_hashes(signatures, bands=self.bands, rows=self.rows, salts=self._salts)

    def candidates(self, text: str, *, exclude: Collection[str] | str = ()) -> dict[str, int]:
        """Keys whose passages share an LSH band with some window of ``text``, with the number
        of distinct shared band hashes (a rough rank). No verification; reads the store only."""
        return self._candidates(
            DraftText(text, k=self.k, window_sizes=self.window_sizes), exclude=exclude
        )

    def _candidates(self, draft: DraftText, *, exclude: Collection[str] | str) -> dict[str, int]:
        hashes = self._window_band_hashes(draft)
        if not len(hashes):
            return {}
        with self._lock:
            found = self.store.query(hashes)
            # Every draft shingle is looked up among the passages' anchors: a passage sharing
            # ``min_anchors`` of them shares runs of words that no window need resemble whole.
            anchored = self.store.query(anchor_hashes(draft.shingles))
        for key, count in anchored.items():
            if count >= self.min_anchors:
                found[key] = found.get(key, 0) + count
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
        min_run_words: int = 20,
        language: str | None = None,
    ) -> list[LexicalMatch]:
        """Sources that ``text`` copies from, best first.

        ``fetch_texts(keys)`` returns the current text of each key (keys it omits, e.g. deleted
        since they were indexed, are skipped); ``exclude`` is the key (or keys) of the draft
        itself. Sources whose best passage has less than ``min_similarity`` percent of its
        shingles in the draft are dropped, as are matched passages shorter than
        ``min_span_words`` words (stray common phrases) unless nothing longer matched. A passage
        under ``min_similarity`` is kept when one of its spans lies in a run of at least
        ``min_run_words`` words that the matched spans make together (:func:`long_runs`). At most
        ``max_candidates`` candidates (those sharing the most bands) are verified.

        ``language``: the draft's stored language, which sizes its query windows
        (:func:`~review.checks.plagiarism.passages.size_scale`); without it, a script rule.

        Side effects: reads the band store and calls ``fetch_texts`` once.
        """
        draft = DraftText(text, k=self.k, window_sizes=self.window_sizes, language=language)
        found = self._candidates(draft, exclude=exclude)
        if not found:
            return []
        keys = sorted(found, key=lambda key: (-found[key], key))[:max_candidates]
        texts = fetch_texts(keys)
        verified: list[LexicalMatch] = []
        for key in keys:
            source = texts.get(key)
            if source is None:
                continue
            match = verify(draft, key=key, source=source, k=self.k, min_span_words=min_span_words)
            if match is not None:
                verified.append(match)
        runs = long_runs(text, verified, min_words=min_run_words)
        matches = [
            m
            for m in verified
            if m["similarity"] >= min_similarity
            or any(_within(span, runs) for span in m["draft_spans"])
        ]
        matches.sort(key=lambda m: (-m["similarity"], -m["jaccard"], m["key"]))
        return matches


# Words between two matched spans that still make one run (a passage boundary of the source
# falls between two of its passages; an edited word or two).
_RUN_GAP_WORDS = 3


def long_runs(
    text: str, matches: Sequence[LexicalMatch], *, min_words: int
) -> list[tuple[int, int]]:
    """Character ranges of the draft where the matched spans of ``matches`` (any passage) run
    on, gaps of at most ``_RUN_GAP_WORDS`` words bridged, for at least ``min_words`` words.

    A run of a source copied into new text may cross the source's passage boundaries: each of
    its passages then holds only part of it (and may be under the similarity threshold), where
    the run as a whole is the evidence. Pure function.
    """
    spans = sorted((s, e) for m in matches for s, e in m["draft_spans"])
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and count_tokens(text[merged[-1][1] : start]) <= _RUN_GAP_WORDS:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged if count_tokens(text[s:e]) >= min_words]


def _within(span: Sequence[int], runs: Sequence[tuple[int, int]]) -> bool:
    return any(s <= span[0] and span[1] <= e for s, e in runs)


def _as_key_set(exclude: Collection[str] | str) -> set[str]:
    # A lone key is a str, itself a Collection[str] of characters: don't split it.
    return {exclude} if isinstance(exclude, str) else set(exclude)
