"""Hashing for the lexical check: words, 5-word shingles, MinHash signatures and LSH band hashes.

A Han character is one token of its own (character n-grams for Chinese): a 10%-edited Chinese
copy keeps about as many 5-grams as a 10%-edited English one keeps 5-word shingles, where jieba
words lose more (an edited character breaks its word and often the segmentation around it;
bench/bench_chinese.py measures both). Text without Han characters gives exactly the words of
``text.words``.

Hashes are process-independent (blake2b, not the salted ``hash()``): a Redis index is shared by
workers and a rebuilt index must agree with the old one. Signatures are datasketch's ``MinHash``
(affine32 scheme) computed for whole arrays of shingles at once, equal to datasketch's own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from datasketch import MinHash

from review.checks.text import _WORD_RE, HAN, normalise_word

# The lexical tokens: one Han character, or a word of ``text.words``.
_TOKEN_RE = re.compile(rf"[{HAN}]|{_WORD_RE.pattern}", re.UNICODE)
_HAN_CHAR_RE = re.compile(f"[{HAN}]")
# ``_WORD_RE`` with a lookahead for the first character: the same matches, and the engine skips
# Han characters 5x faster.
_WORD_FAST_RE = re.compile(rf"(?=[^\W{HAN}])(?:{_WORD_RE.pattern})", re.UNICODE)

# Words per shingle. Five-word shingles rarely repeat by chance between unrelated texts, yet an
# edited word only breaks five of them.
SHINGLE_WORDS = 5


_SHINGLE_MULT = np.uint64(0x9E3779B97F4A7C15)
_FMIX64 = (
    np.uint64(33),
    np.uint64(0xFF51AFD7ED558CCD),
    np.uint64(33),
    np.uint64(0xC4CEB9FE1A85EC53),
    np.uint64(33),
)
# datasketch's MurmurHash3 32-bit finalizer, applied to every input hash by its affine32 scheme.
_FMIX32 = (
    np.uint32(16),
    np.uint32(0x85EBCA6B),
    np.uint32(13),
    np.uint32(0xC2B2AE35),
    np.uint32(16),
)


def _fmix(values: np.ndarray, constants: tuple[np.integer, ...]) -> np.ndarray:
    """The finalizer on a new array (``values`` is left alone); in place after the first step:
    on a Chinese draft's hundreds of band hashes the temporaries cost more than the arithmetic."""
    s1, m1, s2, m2, s3 = constants
    out = values ^ (values >> s1)
    out *= m1
    out ^= out >> s2
    out *= m2
    out ^= out >> s3
    return out


@lru_cache(maxsize=1 << 16)
def word_hash(raw: str) -> int:
    """64-bit hash of a word's normalised form, cached by surface form.

    A process-independent hash (not ``hash()``, which is salted per process): Redis indexes are
    shared by workers and rebuilt indexes must agree. The cache (about 10 MB when full) makes
    the slow parts (normalisation, blake2b) run once per distinct word, not once per occurrence.
    """
    digest = hashlib.blake2b(normalise_word(raw).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def word_hashes(text: str) -> np.ndarray:
    # Without the spans (5x faster when indexing English); tests check that this agrees with
    # tokens(), and that on text without Han characters the words are those of text.words().
    if _HAN_CHAR_RE.search(text) is None:
        return np.fromiter(map(word_hash, _WORD_FAST_RE.findall(text)), dtype=np.uint64)
    return tokens(text)[2]


def count_tokens(text: str) -> int:
    """Lexical tokens of ``text``, counted as ``len(text.split())`` counts English words (so
    English figures are unchanged): a whitespace-separated piece with Han characters counts its
    tokens instead of one."""
    return sum(
        len(_TOKEN_RE.findall(piece)) if _HAN_CHAR_RE.search(piece) else 1 for piece in text.split()
    )


# Han characters are hashed from their code point with numpy, all at once: a Python loop over
# the characters of a Chinese text cost more than the rest of the check.
# The Han blocks of text.HAN as [start, end) bounds: a code point is Han when it falls after an
# odd number of bounds.
_HAN_BOUNDS = np.array(
    [0x3400, 0x4DC0, 0x4E00, 0xA000, 0xF900, 0xFB00, 0x20000, 0x31350], dtype=np.uint32
)
_HAN_SALT = np.uint64(0x48414E0000000000)  # "HAN": keeps them apart from word hashes


def _han_hash(points: np.ndarray) -> np.ndarray:
    return _fmix((points.astype(np.uint64) | _HAN_SALT) * _SHINGLE_MULT, _FMIX64)


@lru_cache(maxsize=1)
def _bmp_tables() -> tuple[np.ndarray, np.ndarray]:
    """For every code point below U+10000: is it Han, and its hash (0.6 MB, built once)."""
    points = np.arange(0x10000, dtype=np.uint32)
    is_han = (np.searchsorted(_HAN_BOUNDS, points, side="right") & 1).astype(bool)
    return is_han, _han_hash(points)


def _han_tokens(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions and hashes of the Han characters of ``text``."""
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if len(points) and np.maximum.reduce(points) < 0x10000:
        # Nearly every text: two table look-ups instead of a search and the hash arithmetic.
        is_han, hashes = _bmp_tables()
        positions = np.flatnonzero(is_han[points])
        return positions, hashes[points[positions]]
    positions = np.flatnonzero(np.searchsorted(_HAN_BOUNDS, points, side="right") & 1)
    return positions, _han_hash(points[positions])


def tokens(text: str) -> tuple[list[int], list[int], np.ndarray]:
    """Token starts, ends and hashes: the words of ``text.words(text)``, except that Han
    characters are tokens one by one."""
    starts: list[int] = []
    ends: list[int] = []
    hashes: list[int] = []
    for match in _WORD_FAST_RE.finditer(text):
        starts.append(match.start())
        ends.append(match.end())
        hashes.append(word_hash(match.group()))
    if _HAN_CHAR_RE.search(text) is None:
        return starts, ends, np.array(hashes, dtype=np.uint64)
    han_at, han_hashes = _han_tokens(text)
    if not starts:  # Han characters only: nothing to interleave
        return han_at.tolist(), (han_at + 1).tolist(), han_hashes
    at = np.concatenate([han_at, np.array(starts, dtype=np.int64)])
    order = np.argsort(at, kind="stable")
    return (
        at[order].tolist(),
        np.concatenate([han_at + 1, np.array(ends, dtype=np.int64)])[order].tolist(),
        np.concatenate([han_hashes, np.array(hashes, dtype=np.uint64)])[order],
    )


def shingle_hashes(word_hashes: np.ndarray, k: int = SHINGLE_WORDS) -> np.ndarray:
    """64-bit hash of every run of ``k`` consecutive words; shingle i starts at word i."""
    n = len(word_hashes) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = word_hashes[:n].copy()
    for j in range(1, k):
        # Polynomial in the word hashes, modulo 2^64 (numpy arrays wrap silently).
        h = h * _SHINGLE_MULT + word_hashes[j : j + n]
    return _fmix(h, _FMIX64)


class MinHasher:
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

    def permuted_rows(self, shingles32: np.ndarray, *, pad: int = 0) -> np.ndarray:
        """(num_perm, n + pad) permuted hash values of n shingles, one row per permutation
        (reductions along a row run over contiguous memory), then ``pad`` columns of zeros."""
        hv = _fmix(np.asarray(shingles32, dtype=np.uint32), _FMIX32)
        n = len(hv)
        out = np.zeros((self.num_perm, n + pad), dtype=np.uint32)
        values = out[:, :n]
        np.multiply(self._a[:, None], hv[None, :], out=values)
        values += self._b[:, None]
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


def band_salts(bands: int) -> np.ndarray:
    return _fmix((np.arange(1, bands + 1, dtype=np.uint64) * _SHINGLE_MULT), _FMIX64)


def band_hashes(signatures: np.ndarray, *, bands: int, rows: int, salts: np.ndarray) -> np.ndarray:
    """(n, bands) uint64: one hash per LSH band, salted by band number so all bands can share
    one table (equal values in different bands never collide by construction)."""
    n = len(signatures)
    values = signatures[:, : bands * rows].reshape(n, bands, rows)
    h = np.empty((n, bands), dtype=np.uint64)
    h[:] = salts
    for j in range(rows):
        h ^= values[:, :, j]  # uint32 values widened to uint64, as an explicit cast would
        h = _fmix(h, _FMIX64)
    return h


# Anchors (winnowing, Schleimer et al. 2003): in every run of ``ANCHOR_WINDOW`` consecutive
# shingles of an indexed passage, the one with the smallest hash is kept as an anchor, about
# 2 / (ANCHOR_WINDOW + 1) of its shingles. Any run of ANCHOR_WINDOW + k - 1 words that a draft
# shares with the passage contains at least one of them, whatever the rest of the draft and of
# the passage: a short copied run that no window resembles as a whole (30 words of a 120-word
# passage inside new text, Jaccard 0.25 at best) is still found.
ANCHOR_WINDOW = 16
_ANCHOR_SALT = np.uint64(0xA5C3_5A3C_0F0F_F0F0)


def anchor_positions(shingles: np.ndarray, window: int = ANCHOR_WINDOW) -> np.ndarray:
    """Positions of the winnowed shingles (smallest hash of every ``window`` in a row; all of
    them when there are fewer), sorted, each once. Pure function."""
    n = len(shingles)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n <= window:
        return np.array([int(np.argmin(shingles))], dtype=np.int64)
    view = np.lib.stride_tricks.sliding_window_view(shingles, window)
    return np.unique(view.argmin(axis=1) + np.arange(n - window + 1))


def anchor_hashes(shingles: np.ndarray) -> np.ndarray:
    """Shingle hashes moved into the anchors' own hash space (salted and mixed again), so
    that an anchor meets a band hash of the same store only by a 64-bit accident. Pure function."""
    return _fmix(np.asarray(shingles, dtype=np.uint64) ^ _ANCHOR_SALT, _FMIX64)
