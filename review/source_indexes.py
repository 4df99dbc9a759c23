# Over 500 lines: one registry of both indexes per process and the sync that keeps them in step.
"""The plagiarism indexes of each project, kept in step with the database, incrementally.

``SourcePassage`` rows (archive passages, published drafts) are the truth. Each process keeps,
per project, a lexical LSH index (in Redis when REDIS_URL is set, shared by every worker; in
the process otherwise) and a semantic index (:class:`review.checks.semantic.store.SemanticStore`:
a memory-mapped base segment shared by every process on the host, plus a small in-process
delta of newer sentences). ``IndexState`` says what they must contain:

* ``version`` moves with every change. A process catches up by id: passages and sentences above
  its marks are added, ``SourceRemoval`` rows above its mark are applied (``remove`` of the
  lexical key, a tombstone in the semantic store). Nothing is rebuilt for a removal.
* ``segment`` names the semantic base segment. Compaction (:func:`semantic_compact`) writes a
  new one beside it and swaps the pointer; a process then builds its new store aside (open the
  segment, read the small delta) and replaces the old object in one assignment, so a check
  always searches a complete index, old or new.
* ``epoch`` moves only when an index must start again from nothing (never for a removal).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F, Max

from review.checks.plagiarism import LexicalIndex
from review.checks.semantic import from_bytes, passage_key
from review.checks.semantic import store as vector_store
from review.checks.semantic.store import SemanticStore
from review.models import (
    IndexState,
    PassageSentence,
    SourceKind,
    SourcePassage,
    SourceRemoval,
)

logger = logging.getLogger(__name__)

_BATCH = 2000


def passage_key_of(kind: str, pk: int) -> str:
    return f"{'a' if kind == SourceKind.ARCHIVE else 'p'}:{pk}"


def parse_source_key(key: str) -> int | None:
    """The SourcePassage id of "a:12" / "p:12" (sentence suffixes "#3" allowed)."""
    item = key.partition("#")[0]
    prefix, _, number = item.partition(":")
    return int(number) if prefix in {"a", "p"} and number.isdigit() else None


def lock(project_id: int) -> None:
    """Take the project's turn to change its sources, until the transaction ends.

    Call it (or :func:`bump`) inside the transaction that changes the sources, before writing
    any SourcePassage, PassageSentence or SourceRemoval row. Why: the indexes catch up by id
    ("every row above the highest id I have"), so a row must never become visible below that
    mark. Ids are handed out at insert time, and two transactions could commit in the other
    order; holding the project's IndexState row lock from before the first insert until the
    commit makes the writers of one project take turns, so their ids grow in commit order.
    (SQLite serialises writers anyway; this matters on PostgreSQL.) It also lets a writer read
    what the previous one committed (the archive's duplicate check) before it writes.
    """
    IndexState.objects.get_or_create(project_id=project_id)
    list(IndexState.objects.select_for_update().filter(project_id=project_id).values_list("pk"))


def bump(project_id: int) -> None:
    """Record a change of the project's sources, inside the transaction that made it (taking
    the project's turn if :func:`lock` was not called first: see there)."""
    state, _ = IndexState.objects.get_or_create(project_id=project_id)
    IndexState.objects.filter(pk=state.pk).update(version=F("version") + 1)


def passages_removed(project_id: int, keys: list[str]) -> None:
    """Log removed passages ("a:12", "p:7") for every process to apply, and bump the version.

    Call under :func:`lock`, in the transaction that deletes the rows (before or after the
    delete). Side effects: SourceRemoval rows; IndexState.version.
    """
    if not keys:
        return
    lock(project_id)
    SourceRemoval.objects.bulk_create(
        [SourceRemoval(project_id=project_id, key=key) for key in keys]
    )
    bump(project_id)


def passage_keys(queryset: object) -> list[str]:
    """The index keys of the passages of a SourcePassage queryset."""
    return [passage_key_of(kind, pk) for pk, kind in queryset.values_list("pk", "kind")]  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class _StateRow:
    version: int
    epoch: str
    segment: str
    segment_upto: int
    segment_removals_upto: int


def _state(project_id: int) -> _StateRow:
    """The project's index state. The epoch key carries the state row's token, so a shared
    Redis store built for another database (recreated, restored) never counts as built for
    this one."""
    row = (
        IndexState.objects.filter(project_id=project_id)
        .values_list(
            "version", "epoch", "token", "segment", "segment_upto", "segment_removals_upto"
        )
        .first()
    )
    if row is None:
        return _StateRow(0, "new-0", "", 0, 0)
    version, epoch, token, segment, upto, removals = row
    return _StateRow(version, f"{token.hex}-{epoch}", segment, upto, removals)


def _last_removal(project_id: int) -> int:
    return SourceRemoval.objects.filter(project_id=project_id).aggregate(m=Max("pk"))["m"] or 0


def _removals_after(project_id: int, mark: int) -> list[tuple[int, str]]:
    return list(
        SourceRemoval.objects.filter(project_id=project_id, pk__gt=mark)
        .order_by("pk")
        .values_list("pk", "key")
    )


def index_dir(project_id: int) -> Path:
    """Where the project's semantic segments live (a volume every worker of a host shares)."""
    return Path(settings.INDEX_DIR) / f"project-{project_id}"


@dataclass
class ProjectIndexes:
    project_id: int
    lexical: LexicalIndex
    semantic: SemanticStore
    version: int = -1
    epoch: str = ""
    segment: str | None = None  # None: the semantic store is not opened yet
    lexical_upto: int = 0  # highest SourcePassage id in the lexical index
    lexical_removals_upto: int = 0  # highest SourceRemoval id applied to the lexical index
    semantic_upto: int = 0  # highest PassageSentence id in the semantic store
    semantic_removals_upto: int = 0  # highest SourceRemoval id applied to the semantic store
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, *, lexical_budget: int | None = None) -> bool:
        """Bring both indexes up to the database's state (one query when nothing changed);
        True when they are up to date.

        ``lexical_budget`` caps how many new passages this call hashes into the lexical index
        (a 20k-document import is about 25k passages, a minute of MinHash on a busy core): a
        check passes it so that it never pays for a whole import; the embedding chain catches
        up in its own steps, and a check that ran meanwhile is re-run when indexing finishes.
        An unfinished catch-up returns False and leaves the version unrecorded, so the next
        call goes on from the last stored passage.
        """
        state = _state(self.project_id)
        with self.lock:
            if (state.version, state.epoch, state.segment) == (
                self.version,
                self.epoch,
                self.segment,
            ):
                return True
            if state.epoch != self.epoch:
                self._lexical_restart(state.epoch)
            complete = self._lexical_catch_up(state.epoch, budget=lexical_budget)
            if state.segment != self.segment or state.epoch != self.epoch:
                # Built aside (opened and caught up), then swapped in one assignment: a check
                # that took the old store finishes on it; none ever sees a half-built one.
                store, segment, upto, removals = self._semantic_open(state)
                upto, removals = self._semantic_catch_up(store, upto, removals)
                self.semantic, self.segment = store, segment
                self.semantic_upto, self.semantic_removals_upto = upto, removals
            else:
                self.semantic_upto, self.semantic_removals_upto = self._semantic_catch_up(
                    self.semantic, self.semantic_upto, self.semantic_removals_upto
                )
            self.epoch = state.epoch
            if complete:
                self.version = state.version
            return complete

    # -- lexical ----------------------------------------------------------------------------

    def _lexical_restart(self, epoch: str) -> None:
        self.lexical_upto = 0
        # Removals before this point are already absent from the rows read next.
        self.lexical_removals_upto = _last_removal(self.project_id)
        marker = self._shared_marker()
        if marker is None or marker[0] != epoch:
            self.lexical.clear()
            self._set_shared_marker(epoch, 0, self.lexical_removals_upto)

    def _lexical_catch_up(self, epoch: str, *, budget: int | None = None) -> bool:
        marker = self._shared_marker()
        if marker is not None and marker[0] == epoch:
            # Another worker may already have added newer passages to the shared store and
            # applied newer removals.
            self.lexical_upto = max(self.lexical_upto, marker[1])
            self.lexical_removals_upto = max(self.lexical_removals_upto, marker[2])
        rows = (
            SourcePassage.objects.filter(project_id=self.project_id, pk__gt=self.lexical_upto)
            .order_by("pk")
            .values_list("pk", "kind", "text")
        )
        complete = True
        if budget is not None:
            # One row past the budget says whether more are left.
            rows = rows[: budget + 1]
        # The marks move only once a batch is stored: when a write fails (Redis unreachable),
        # the next refresh starts again from the last stored row instead of skipping the batch.
        batch: list[tuple[str, str]] = []
        last = self.lexical_upto
        for count, (pk, kind, text) in enumerate(rows.iterator(chunk_size=_BATCH)):
            if budget is not None and count >= budget:
                complete = False
                break
            batch.append((passage_key_of(kind, pk), text))
            last = pk
            if len(batch) >= _BATCH:
                self.lexical.add_many(batch)
                self.lexical_upto, batch = last, []
        if batch:
            self.lexical.add_many(batch)
            self.lexical_upto = last
        # Removals are read after the rows: one committed before the rows were read is absent
        # from them, one committed since is applied here, so a passage read just before its
        # removal never stays in the (shared) store. Removing a missing key is a no-op.
        for pk, key in _removals_after(self.project_id, self.lexical_removals_upto):
            self.lexical.remove(key)
            self.lexical_removals_upto = pk
        self._set_shared_marker(epoch, self.lexical_upto, self.lexical_removals_upto)
        return complete

    # -- semantic ---------------------------------------------------------------------------

    def _semantic_open(self, state: _StateRow) -> tuple[SemanticStore, str, int, int]:
        """A new store on the state's segment (or on none): (store, segment, sentence mark,
        removal mark). Changes nothing in ``self``: the caller catches it up, then swaps."""
        namespace = f"project-{self.project_id}"
        base = None
        for _attempt in range(2):
            if not state.segment:
                break
            try:
                base = vector_store.open_segment(index_dir(self.project_id), state.segment)
            except (OSError, ValueError) as exc:
                logger.warning("semantic segment %s unreadable: %s", state.segment, exc)
            if base is not None:
                break
            # Replaced and deleted between reading the pointer and opening it: read it again.
            fresh = _state(self.project_id)
            if fresh.segment == state.segment:
                break
            state = fresh
        if state.segment and base is None:
            # Not on this host's volume: hold every sentence in this process instead.
            logger.warning(
                "semantic segment %s of project %s not found under %s; indexing in process",
                state.segment,
                self.project_id,
                index_dir(self.project_id),
            )
        store = SemanticStore(base=base, namespace=namespace)
        if base is not None:
            return store, state.segment, state.segment_upto, state.segment_removals_upto
        return store, state.segment, 0, _last_removal(self.project_id)

    def _semantic_catch_up(
        self, store: SemanticStore, upto: int, removals_upto: int
    ) -> tuple[int, int]:
        """Add the sentences above ``upto`` to ``store``'s delta and apply the removals above
        ``removals_upto``; returns the new marks."""
        sentences = (
            PassageSentence.objects.filter(passage__project_id=self.project_id, pk__gt=upto)
            .order_by("pk")
            .values_list("pk", "passage_id", "passage__kind", "number", "vector")
        )
        keys: list[str] = []
        vectors: list[np.ndarray] = []
        for pk, passage_id, kind, number, vector in sentences.iterator(chunk_size=_BATCH):
            keys.append(passage_key(passage_key_of(kind, passage_id), number))
            vectors.append(from_bytes(bytes(vector)))
            if len(keys) >= _BATCH:
                store.add(keys, np.stack(vectors))
                upto, keys, vectors = pk, [], []
                if store is self.semantic:
                    self.semantic_upto = upto  # stored: a failure later resumes from here
        if keys:
            store.add(keys, np.stack(vectors))
            upto = pk
        # After the rows, as for the lexical index (see there).
        for pk, key in _removals_after(self.project_id, removals_upto):
            store.remove_item(key)
            removals_upto = pk
        return upto, removals_upto

    # With Redis the lexical store is shared by every worker: a marker next to it records
    # which epoch it holds, up to which passage, and up to which removal.
    def _marker_key(self) -> str:
        return f"contentstudio:plagiarism:{self.lexical.namespace}:{self.lexical.fingerprint}:built"

    def _shared_marker(self) -> tuple[str, int, int] | None:
        if not settings.REDIS_URL:
            return None
        raw = _redis().get(self._marker_key())
        if not raw:
            return None
        parts = raw.decode().split("|")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None  # an older format: treated as not built
        return parts[0], int(parts[1]), int(parts[2])

    def _set_shared_marker(self, epoch: str, upto: int, removals: int) -> None:
        if not settings.REDIS_URL:
            return
        marker = self._shared_marker()
        if marker is None or marker[0] != epoch or (marker[1], marker[2]) < (upto, removals):
            _redis().set(
                self._marker_key(),
                f"{epoch}|{max(upto, marker[1] if marker and marker[0] == epoch else 0)}|"
                f"{max(removals, marker[2] if marker and marker[0] == epoch else 0)}",
            )


def semantic_delta_size(project_id: int) -> tuple[int, int]:
    """(sentences stored after the base segment, removals logged after it)."""
    state = _state(project_id)
    sentences = PassageSentence.objects.filter(
        passage__project_id=project_id, pk__gt=state.segment_upto
    ).count()
    removals = SourceRemoval.objects.filter(
        project_id=project_id, pk__gt=state.segment_removals_upto
    ).count()
    return sentences, removals


def import_compact_limit(project_id: int) -> int:
    """How large the delta may grow while an import is still being embedded: 20 times
    ``SEMANTIC_DELTA_MAX``, or the base segment's size if larger. Every process scans its delta
    exactly, so a large import is folded into segments (each with its IVF index) as it goes;
    growing the limit with the base keeps the rewriting O(n log n) over a whole import."""
    state = _state(project_id)
    base = 0
    if state.segment:
        try:
            segment = vector_store.open_segment(index_dir(project_id), state.segment)
        except (OSError, ValueError):
            segment = None
        base = segment.size if segment is not None else 0
    return max(20 * settings.SEMANTIC_DELTA_MAX, base)


def semantic_compact(*, project_id: int, force: bool = False) -> str | None:
    """Fold the semantic delta and tombstones into a new base segment, written beside the live
    one, then swap ``IndexState.segment``; returns the new segment's name, or None when there
    was nothing worth doing, passages are still waiting to be embedded, or another run holds the
    project's embedding lease.

    Without ``force`` it runs only when the delta reached ``settings.SEMANTIC_DELTA_MAX``
    sentences (or a tenth of that in removals), and while passages wait to be embedded only
    past :func:`import_compact_limit`. Runs under the embedding lease (renewed while it
    writes), so one project compacts once at a time and never while its chain embeds. The swap
    is a conditional UPDATE on the segment it replaced: a concurrent swap wins, this one's files
    are deleted. Side effects: files under ``index_dir(project_id)`` (old segments removed,
    bar the one just replaced: processes that have not refreshed yet may still open it);
    IndexState.segment*, version.
    """
    from review.services import embedding

    pending = SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True)
    sentences, removals = semantic_delta_size(project_id)
    if not force and pending.exists() and sentences < import_compact_limit(project_id):
        return None
    limit = settings.SEMANTIC_DELTA_MAX
    if not force and sentences < limit and removals < max(1, limit // 10):
        return None
    owner = f"compact-{uuid.uuid4().hex}"
    if not embedding.embed_lease_take(project_id=project_id, owner=owner):
        return None
    directory = index_dir(project_id)
    try:
        previous = _state(project_id).segment
        # Removals first, then the rows (see ProjectIndexes._lexical_catch_up): a passage
        # removed after this mark may still be in the segment, and is a tombstone there.
        removals_upto = _last_removal(project_id)
        upto = (
            PassageSentence.objects.filter(passage__project_id=project_id).aggregate(m=Max("pk"))[
                "m"
            ]
            or 0
        )
        rows = (
            PassageSentence.objects.filter(passage__project_id=project_id, pk__lte=upto)
            .order_by("passage_id", "number")
            .values_list("passage_id", "passage__kind", "number", "vector")
        )
        name = vector_store.new_segment_name(upto)

        def renew() -> None:
            embedding.embed_lease_renew(project_id=project_id, owner=owner)

        vector_store.write_segment(
            directory,
            name,
            (
                vector_store.SegmentRow(
                    pid, "a" if kind == SourceKind.ARCHIVE else "p", number, bytes(vector)
                )
                for pid, kind, number, vector in rows.iterator(chunk_size=_BATCH)
            ),
            meta={
                "project": project_id,
                "upto": upto,
                "removals_upto": removals_upto,
                "model": settings.EMBEDDING_MODEL_PATH or "all-MiniLM-L6-v2",
            },
            on_block=renew,
        )
        with transaction.atomic():
            swapped = IndexState.objects.filter(project_id=project_id, segment=previous).update(
                segment=name,
                segment_upto=upto,
                segment_removals_upto=removals_upto,
                version=F("version") + 1,
            )
        if swapped != 1:
            vector_store.remove_old_segments(directory, keep={previous})
            return None
        vector_store.remove_old_segments(directory, keep={name, previous})
        logger.info("project %s: semantic segment %s (%s sentences)", project_id, name, upto)
        return name
    finally:
        embedding.embed_lease_release(project_id=project_id, owner=owner)


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


_registry: dict[int, ProjectIndexes] = {}
_registry_lock = threading.Lock()


def indexes_for(project_id: int, *, lexical_budget: int | None = None) -> ProjectIndexes:
    """The project's indexes in this process, brought up to date (the lexical one by at most
    ``lexical_budget`` new passages: see :meth:`ProjectIndexes.refresh`)."""
    with _registry_lock:
        indexes = _registry.get(project_id)
        if indexes is None:
            namespace = f"project-{project_id}"
            indexes = ProjectIndexes(
                project_id=project_id,
                lexical=LexicalIndex(namespace, redis_url=settings.REDIS_URL or None),
                semantic=SemanticStore(namespace=namespace),
            )
            _registry[project_id] = indexes
    indexes.refresh(lexical_budget=lexical_budget)
    return indexes


def indexes_for_check(project_id: int, *, lexical: bool = True) -> tuple[ProjectIndexes, int]:
    """The indexes for a draft's check, and how many passages the lexical one still lacks.

    While passages wait to be embedded (an import is being indexed), the check hashes at most
    ``settings.LEXICAL_CHECK_BUDGET`` new passages itself, so it returns within seconds; the
    embedding chain catches up the rest (``catch_up``). A check that ran behind says so and
    is re-run when indexing finishes. With nothing waiting, the catch-up is complete.
    ``lexical=False`` (the semantic check): hash nothing while passages wait, the lexical
    check of the same run already took its share.
    """
    pending = SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True)
    budget = None
    if pending.exists():
        budget = settings.LEXICAL_CHECK_BUDGET if lexical else 0
    project_indexes = indexes_for(project_id, lexical_budget=budget)
    behind = (
        0
        if budget is None
        else SourcePassage.objects.filter(
            project_id=project_id, pk__gt=project_indexes.lexical_upto
        ).count()
    )
    return project_indexes, behind


def catch_up(project_id: int) -> None:
    """Bring this process's indexes of the project up to date in steps of
    ``LEXICAL_CHECK_BUDGET`` passages, letting checks in between (the embedding chain calls it
    after each batch, so an import's passages are hashed off the checks' path)."""
    budget = settings.LEXICAL_CHECK_BUDGET
    project_indexes = indexes_for(project_id, lexical_budget=budget)
    while not project_indexes.refresh(lexical_budget=budget):
        pass


def forget_all() -> None:
    """Drop every in-process index (tests; the next use rebuilds from the database)."""
    with _registry_lock:
        _registry.clear()
