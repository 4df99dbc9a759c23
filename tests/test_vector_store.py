"""The shared semantic store: a memory-mapped base segment, a delta, tombstones (issue 7, part 6).

Publishing, unpublishing, importing and deleting change the indexes incrementally (the base
segment file stays as it is); a compaction builds a new segment beside the live one and swaps
the pointer, and a check running meanwhile always searches a complete index.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from review import services, source_indexes
from review.checks import semantic
from review.checks.semantic import store as vector_store
from review.models import ArchiveDocument, IndexState, PassageSentence, SourcePassage
from tests.factories import ARCHIVE, FLOOD, HARBOUR, LIBRARY, make_archive


def doc(n: int) -> dict[str, str]:
    return ARCHIVE[n]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, semantic.EMBEDDING_DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- The store on its own (no database) ---------------------------------------------------------


def test_a_mapped_segment_finds_what_the_in_process_index_finds(tmp_path: Path) -> None:
    # given: 3,000 sentences of 600 passages, as a segment file and as the old in-process index
    rng = np.random.default_rng(1)
    vectors = _unit(rng, 3000)
    rows = [
        vector_store.SegmentRow(i // 5 + 1, "a" if i % 2 else "p", i % 5, vectors[i])
        for i in range(3000)
    ]
    vector_store.write_segment(tmp_path, "seg-1", rows)
    store = vector_store.SemanticStore(base=vector_store.open_segment(tmp_path, "seg-1"))
    reference = semantic.VectorIndex()
    reference.add([f"{r.kind}:{r.passage_id}#{r.number}" for r in rows], vectors)
    queries = _unit(rng, 10) * 0.3 + vectors[:10] * 0.95
    # when: both are searched
    got = store.search(queries, k=10)
    want = reference.search(queries, k=10)
    # then: the same keys, the same scores (both rescored in float32 from bf16 rows)
    assert [[k for k, _ in hits] for hits in got] == [[k for k, _ in hits] for hits in want]
    assert np.allclose([s for h in got for _, s in h], [s for h in want for _, s in h], atol=1e-5)
    assert len(store) == 3000
    assert isinstance(store.base.bits, np.memmap)


def test_tombstones_and_exclusions_hide_base_rows_and_the_delta_adds_new_ones(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(2)
    vectors = _unit(rng, 40)
    rows = [vector_store.SegmentRow(i // 4 + 1, "a", i % 4, vectors[i]) for i in range(40)]
    vector_store.write_segment(tmp_path, "seg-1", rows)
    store = vector_store.SemanticStore(base=vector_store.open_segment(tmp_path, "seg-1"))
    assert store.search(vectors[5:6], k=1)[0][0][0] == "a:2#1"
    # a removed passage (all its sentences) no longer matches, in the base
    assert store.remove_item("a:2") == 4
    hits = store.search(vectors[5:6], k=40)[0]
    assert all(not key.startswith("a:2#") for key, _ in hits) and len(hits) == 36
    assert len(store) == 36 and "a:2#1" not in store and "a:3#0" in store
    # excluded items and keys are skipped for one search only
    hits = store.search(vectors[8:9], k=3, exclude_keys=["a:3#0"])[0]
    assert hits[0][0] != "a:3#0"
    # a newer sentence goes to the delta and is found with the base rows
    fresh = _unit(rng, 1)
    store.add(["p:99#0"], fresh)
    assert store.search(fresh, k=2)[0][0][0] == "p:99#0" and len(store) == 37


def test_a_half_written_segment_is_never_visible(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = _unit(rng, 20)

    def rows() -> Any:
        for i in range(20):
            if i == 10:
                raise OSError("disk full")
            yield vector_store.SegmentRow(i + 1, "a", 0, vectors[i])

    with pytest.raises(OSError):
        vector_store.write_segment(tmp_path, "seg-broken", rows())
    assert vector_store.open_segment(tmp_path, "seg-broken") is None
    assert list(tmp_path.iterdir()) == []


# --- In the studio: incremental changes, compaction beside the live segment ---------------------


@pytest.fixture
def index_dir(settings: Any, tmp_path: Path) -> Path:
    settings.INDEX_DIR = tmp_path / "indexes"
    return settings.INDEX_DIR


def _digest(path: Path) -> tuple[str, int]:
    data = (path / "vectors.bf16").read_bytes()
    return hashlib.sha256(data).hexdigest(), (path / "vectors.bf16").stat().st_mtime_ns


def _first_sentence(title: str) -> tuple[str, np.ndarray]:
    passage = SourcePassage.objects.get(document__title=title)
    sentence = semantic.index_passages(passage.text)[1]
    vector = services.get_embedder().encode([sentence.text])
    return f"a:{passage.pk}#{sentence.number}", vector


def test_import_and_delete_change_the_store_incrementally_without_touching_the_base(
    cast: dict, hold_queue: list, index_dir: Path
) -> None:
    # given: an archive folded into a base segment
    project = cast["newsroom"]
    make_archive(project, [doc(HARBOUR), doc(FLOOD)])
    name = source_indexes.semantic_compact(project_id=project.pk, force=True)
    state = IndexState.objects.get(project=project)
    assert name and state.segment == name
    assert state.segment_upto == PassageSentence.objects.latest("pk").pk
    segment = index_dir / f"project-{project.pk}" / name
    before = _digest(segment)
    store = source_indexes.indexes_for(project.pk).semantic
    assert store.base is not None and store.base.size == PassageSentence.objects.count()
    assert len(store.delta) == 0
    # when: a document is imported and embedded
    make_archive(project, [doc(LIBRARY)])
    library_key, library_vector = _first_sentence(doc(LIBRARY)["title"])
    store = source_indexes.indexes_for(project.pk).semantic
    # then: it is found, from the delta; the base segment is the same file, unchanged
    [[(key, score), *_]] = store.search(library_vector, k=3)
    assert (key, round(score, 2)) == (library_key, 1.0)
    assert library_key in store.delta and _digest(segment) == before
    # when: a document in the base is deleted
    harbour_key, harbour_vector = _first_sentence(doc(HARBOUR)["title"])
    harbour = ArchiveDocument.objects.get(title=doc(HARBOUR)["title"])
    services.document_delete(document=harbour, user=cast["alice"])
    project_indexes = source_indexes.indexes_for(project.pk)
    # then: it no longer matches, lexically or semantically; nothing was rebuilt
    hits = project_indexes.semantic.search(harbour_vector, k=10)[0]
    assert all(not key.startswith(harbour_key.split("#")[0] + "#") for key, _ in hits)
    assert harbour_key.split("#")[0] not in project_indexes.lexical
    assert project_indexes.semantic is store and _digest(segment) == before
    assert IndexState.objects.get(project=project).epoch == state.epoch
    assert len(store) == PassageSentence.objects.count()


def test_publish_and_unpublish_change_the_store_incrementally(
    cast: dict, hold_queue: list, index_dir: Path
) -> None:
    from review import archive
    from tests.factories import make_draft

    project = cast["newsroom"]
    make_archive(project, ARCHIVE[:2])
    name = source_indexes.semantic_compact(project_id=project.pk, force=True)
    # a publication becomes a source: embedded, it joins the delta
    text = doc(LIBRARY)["text"]
    draft = make_draft(project, cast["bob"], text)
    archive.publication_add(draft)
    services.passages_embed(project_id=project.pk)
    passage = SourcePassage.objects.get(draft=draft)
    sentence = semantic.index_passages(passage.text)[0]
    vector = services.get_embedder().encode([sentence.text])
    store = source_indexes.indexes_for(project.pk).semantic
    assert store.search(vector, k=1)[0][0][0] == f"p:{passage.pk}#{sentence.number}"
    # folded into a new base by a compaction, then unpublished: a tombstone hides it
    second = source_indexes.semantic_compact(project_id=project.pk, force=True)
    assert second and second != name
    store = source_indexes.indexes_for(project.pk).semantic
    assert store.segment_name == second and len(store.delta) == 0
    assert store.search(vector, k=1)[0][0][0] == f"p:{passage.pk}#{sentence.number}"
    archive.publication_remove(draft)
    store = source_indexes.indexes_for(project.pk).semantic
    assert store.segment_name == second  # not rebuilt
    hits = store.search(vector, k=10)[0]
    assert all(not key.startswith(f"p:{passage.pk}#") for key, _ in hits)
    assert f"p:{passage.pk}" not in source_indexes.indexes_for(project.pk).lexical
    # old segments beyond the one just replaced are removed
    folders = {p.name for p in (index_dir / f"project-{project.pk}").iterdir()}
    assert folders == {name, second}


def test_a_check_during_a_rebuild_always_searches_a_complete_index(
    transactional_db: None, cast: dict, hold_queue: list, index_dir: Path
) -> None:
    # given: an archive with a delta and a removal, so the old and the new store differ in shape
    project = cast["newsroom"]
    make_archive(project, ARCHIVE[:2])
    source_indexes.semantic_compact(project_id=project.pk, force=True)
    make_archive(project, [doc(LIBRARY)])
    key, vector = _first_sentence(doc(LIBRARY)["title"])
    expected = PassageSentence.objects.count()
    source_indexes.indexes_for(project.pk)
    seen: list[tuple[int, str, str | None, float]] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def checker() -> None:
        from django.db import connections

        try:
            while not stop.is_set():
                store = source_indexes.indexes_for(project.pk).semantic
                hits = store.search(vector, k=1)[0]
                seen.append((len(store), store.segment_name, hits[0][0], hits[0][1]))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=checker)
    thread.start()
    try:
        # when: the index is rebuilt (beside the live one, then swapped) three times meanwhile
        names = [
            source_indexes.semantic_compact(project_id=project.pk, force=True) for _ in range(3)
        ]
    finally:
        import time

        time.sleep(0.3)
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors
    # then: every search saw the whole index (old or new), and found the sentence
    assert len({name for _, name, _, _ in seen}) >= 2, "the checks never saw a swap"
    assert all(size == expected for size, _, _, _ in seen), {s for s, *_ in seen}
    assert all(hit == key and score > 0.99 for _, _, hit, score in seen)
    assert seen[-1][1] == names[-1]


# --- Two real worker processes on the shared store (PostgreSQL + Redis) -------------------------


def _mapping(pid: int, path: Path) -> dict[str, int]:
    """The /proc/<pid>/smaps fields (kB) of the process's mapping of ``path`` ({} if unmapped)."""
    fields: dict[str, int] = {}
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = line.rstrip().endswith(str(path))
            continue
        if inside and len(head) >= 2 and head[0].endswith(":") and head[1].isdigit():
            fields[head[0][:-1]] = fields.get(head[0][:-1], 0) + int(head[1])
    return fields


def _app(broker: str, prefix: str) -> Any:
    from celery import Celery

    app = Celery("store-test", broker=broker, set_as_current=False)
    app.conf.broker_transport_options = {"global_keyprefix": prefix}
    return app


def _send(task: str, args: list[int], *, broker: str, prefix: str) -> None:
    app = _app(broker, prefix)
    with app.connection_for_write() as conn:
        app.send_task(task, args=args, queue="review", connection=conn)


def _ready(broker: str, prefix: str, name: str) -> bool:
    return bool(_app(broker, prefix).control.ping(destination=[name], timeout=1.0))


@pytest.mark.skipif(
    not __import__("os").environ.get("REDIS_URL")
    or not __import__("os").environ.get("DATABASE_URL"),
    reason="needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL)",
)
def test_two_worker_processes_check_drafts_against_one_mapped_store(
    transactional_db: None, cast: dict, index_dir: Path, tmp_path: Path
) -> None:
    import uuid

    from generation.models import Draft
    from review.lifecycle import DraftStatus
    from review.models import CheckResult, CheckRun
    from tests import processes
    from tests.conftest import wait_for
    from tests.factories import make_draft

    # given: an archive folded into a base segment, then one more document imported after it
    project = cast["newsroom"]
    make_archive(project, [d for i, d in enumerate(ARCHIVE) if i != LIBRARY])
    name = source_indexes.semantic_compact(project_id=project.pk, force=True)
    make_archive(project, [doc(LIBRARY)])
    vectors = index_dir / f"project-{project.pk}" / name / "vectors.bf16"
    broker = processes.side_redis_url()
    processes.purge(broker)
    env = processes.required_settings(
        {
            **processes.db_env(),
            "REDIS_URL": broker,
            "CONTENTSTUDIO_INDEX_DIR": str(index_dir),
            # the sweep must not hand one worker's draft to the other
            "CONTENTSTUDIO_CHECKS_START_GRACE": "3600",
        }
    )
    # two workers, each on its own queues, so each checks one draft for sure
    prefixes = {name: f"store-{uuid.uuid4().hex[:6]}-{name}:" for name in ("a", "b")}
    workers = {
        name: processes.start_worker(
            name=f"store-{name}@host",
            env={**env, "CONTENTSTUDIO_BROKER_PREFIX": prefix},
            log=tmp_path / "workers.log",
        )
        for name, prefix in prefixes.items()
    }
    try:
        # (both started: a worker's start re-sends every draft it finds checking)
        for name, prefix in prefixes.items():
            assert wait_for(
                lambda p=prefix, n=name: _ready(broker, p, f"store-{n}@host"), timeout=180
            )
        # when: a draft copying an archived document (in the base) goes to worker a, and one
        # copying the document imported since (in the delta) to worker b
        drafts = {
            "a": make_draft(project, cast["bob"], doc(HARBOUR)["text"], status="checking"),
            "b": make_draft(project, cast["bob"], doc(LIBRARY)["text"], status="checking"),
        }
        for name, draft in drafts.items():
            _send(
                "review.tasks.draft_check",
                [draft.pk, draft.version],
                broker=broker,
                prefix=prefixes[name],
            )
        assert wait_for(
            lambda: (
                not Draft.objects.filter(
                    pk__in=[d.pk for d in drafts.values()], status=DraftStatus.CHECKING
                ).exists()
            ),
            timeout=240,
            interval=0.5,
        ), (tmp_path / "workers.log").read_text()[-3000:]
        # then: each worker checked its draft and found the copied sentences
        for name, draft in drafts.items():
            assert CheckRun.objects.get(draft=draft).worker == f"store-{name}@host"
            result = CheckResult.objects.get(draft=draft, kind="semantic")
            assert result.status == "ok" and result.scores["paraphrased_sentences"] >= 3
            assert result.scores["indexed_sentences"] == PassageSentence.objects.count()
        # and both map the one segment file, not a copy each: its pages are shared and counted
        # once across the workers (Pss sums to one Rss), nothing private was written
        maps = [_mapping(proc.pid, vectors) for proc in workers.values()]
        assert all(m.get("Rss", 0) > 0 for m in maps), maps
        assert all(m.get("Private_Dirty", 0) == 0 and m.get("Anonymous", 0) == 0 for m in maps)
        # (shared pages count as Shared_Dirty until the kernel writes the new file back, which
        # may be 30 s after the test wrote it)
        assert all(m.get("Shared_Clean", 0) + m.get("Shared_Dirty", 0) > 0 for m in maps), maps
        assert sum(m["Pss"] for m in maps) <= max(m["Rss"] for m in maps) + 1
    finally:
        for proc in workers.values():
            processes.stop(proc)
        processes.purge(broker)


def test_a_check_during_an_import_hashes_at_most_its_budget_says_so_and_runs_again(
    cast: dict, hold_queue: list, settings: Any, index_dir: Path
) -> None:
    from generation.models import Draft
    from review import tasks
    from review.models import CheckResult
    from review.services import embedding, pipeline
    from tests.factories import make_draft

    # given: an import whose passages are not indexed yet, more than a check hashes itself
    settings.LEXICAL_CHECK_BUDGET = 2
    project = cast["newsroom"]
    make_archive(project, embed=False)
    total = SourcePassage.objects.filter(project=project).count()
    assert total > 2
    draft = make_draft(project, cast["bob"], doc(LIBRARY)["text"], status="checking")
    # when: a draft is checked meanwhile
    pipeline.draft_checks_run(draft_id=draft.pk, version=draft.version, worker="t")
    # then: its lexical check ran against the two passages it hashed and says so
    lexical = CheckResult.objects.get(draft=draft, kind="lexical")
    assert lexical.status == "ok" and lexical.details["partial"] is True
    assert lexical.scores["indexed_passages"] == 2
    assert lexical.scores["coverage"] == round(2 / total, 4)
    assert lexical.reason.startswith(f"Checked against {2 / total:.0%} of the archive")
    assert f"(2 of {total} passages indexed so far)" in lexical.reason
    assert lexical.scores["max_similarity"] < 100.0  # its source was not indexed yet
    assert Draft.objects.get(pk=draft.pk).status == "awaiting_review"
    # when: the embedding chain runs to the end (it hashes the rest between its batches)
    hold_queue.clear()
    while embedding.embed_chain_step(project_id=project.pk).again:
        pass
    assert len(source_indexes.indexes_for(project.pk, lexical_budget=1).lexical) == total
    for item in list(hold_queue):
        if isinstance(item, tuple) and len(item) == 2:
            tasks.draft_check(*item)
    # then: the draft was checked again, against the whole archive
    rerun = CheckResult.objects.filter(draft=draft, kind="lexical").latest("draft_version")
    assert rerun.status == "ok" and rerun.scores["max_similarity"] == 100.0
    assert rerun.scores["indexed_passages"] == total
