"""The plagiarism indexes of each project, kept in step with the database.

``SourcePassage`` rows (archive passages, published drafts) are the truth. Each process keeps,
per project, a lexical LSH index (in Redis when REDIS_URL is set, shared by every worker; in
the process otherwise) and a semantic vector index (always in the process, built from the stored
sentence vectors). ``IndexState`` says what they must contain: ``version`` moves with every
change (a process catches up by adding rows newer than what it has), ``epoch`` moves when
sources are removed (a process rebuilds).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np
import redis
from django.conf import settings
from django.db.models import F

from review.checks.plagiarism import LexicalIndex
from review.checks.semantic import VectorIndex, from_bytes, passage_key
from review.models import IndexState, PassageSentence, SourceKind, SourcePassage

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
    any SourcePassage or PassageSentence row. Why: the indexes catch up by id ("every row
    above the highest id I have"), so a row must never become visible below that mark. Ids
    are handed out at insert time, and two transactions could commit in the other order;
    holding the project's IndexState row lock from before the first insert until the commit
    makes the writers of one project take turns, so their ids grow in commit order. (SQLite
    serialises writers anyway; this matters on PostgreSQL.) It also lets a writer read what
    the previous one committed (the archive's duplicate check) before it writes.
    """
    IndexState.objects.get_or_create(project_id=project_id)
    list(IndexState.objects.select_for_update().filter(project_id=project_id).values_list("pk"))


def bump(project_id: int, *, removed: bool = False) -> None:
    """Record a change of the project's sources, inside the transaction that made it (taking
    the project's turn if :func:`lock` was not called first: see there)."""
    state, _ = IndexState.objects.get_or_create(project_id=project_id)
    updates = {"version": F("version") + 1}
    if removed:
        updates["epoch"] = F("epoch") + 1
    IndexState.objects.filter(pk=state.pk).update(**updates)


def _state(project_id: int) -> tuple[int, str]:
    """(version, epoch key). The epoch key carries the state row's token, so a shared Redis
    store built for another database (recreated, restored) never counts as built for this one."""
    row = (
        IndexState.objects.filter(project_id=project_id)
        .values_list("version", "epoch", "token")
        .first()
    )
    if row is None:
        return 0, "new-0"
    version, epoch, token = row
    return version, f"{token.hex}-{epoch}"


@dataclass
class ProjectIndexes:
    project_id: int
    lexical: LexicalIndex
    semantic: VectorIndex
    version: int = -1
    epoch: str = ""
    lexical_upto: int = 0  # highest SourcePassage id in the lexical index
    semantic_upto: int = 0  # highest PassageSentence id in the semantic index
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self) -> None:
        """Bring both indexes up to the database's state (one query when nothing changed)."""
        version, epoch = _state(self.project_id)
        with self.lock:
            if version == self.version and epoch == self.epoch:
                return
            if epoch != self.epoch:
                # Sources were removed: start both indexes again.
                self.semantic = VectorIndex(namespace=self.semantic.namespace)
                self.semantic_upto = 0
                self.lexical_upto = 0
                marker = self._shared_marker()
                if marker is None or marker[0] != epoch:
                    self.lexical.clear()
                    self._set_shared_marker(epoch, 0)
            self._catch_up(epoch)
            self.version, self.epoch = version, epoch

    def _catch_up(self, epoch: str) -> None:
        marker = self._shared_marker()
        if marker is not None and marker[0] == epoch:
            # Another worker may already have added newer passages to the shared store.
            self.lexical_upto = max(self.lexical_upto, marker[1])
        rows = (
            SourcePassage.objects.filter(project_id=self.project_id, pk__gt=self.lexical_upto)
            .order_by("pk")
            .values_list("pk", "kind", "text")
        )
        # The marks move only once a batch is stored: when a write fails (Redis unreachable),
        # the next refresh starts again from the last stored row instead of skipping the batch.
        batch: list[tuple[str, str]] = []
        last = self.lexical_upto
        for pk, kind, text in rows.iterator(chunk_size=_BATCH):
            batch.append((passage_key_of(kind, pk), text))
            last = pk
            if len(batch) >= _BATCH:
                self.lexical.add_many(batch)
                self.lexical_upto, batch = last, []
        if batch:
            self.lexical.add_many(batch)
            self.lexical_upto = last
        self._set_shared_marker(epoch, self.lexical_upto)

        sentences = (
            PassageSentence.objects.filter(
                passage__project_id=self.project_id, pk__gt=self.semantic_upto
            )
            .order_by("pk")
            .values_list("pk", "passage_id", "passage__kind", "number", "vector")
        )
        keys: list[str] = []
        vectors: list[np.ndarray] = []
        last = self.semantic_upto
        for pk, passage_id, kind, number, vector in sentences.iterator(chunk_size=_BATCH):
            keys.append(passage_key(passage_key_of(kind, passage_id), number))
            vectors.append(from_bytes(bytes(vector)))
            last = pk
            if len(keys) >= _BATCH:
                self.semantic.add(keys, np.stack(vectors))
                self.semantic_upto, keys, vectors = last, [], []
        if keys:
            self.semantic.add(keys, np.stack(vectors))
            self.semantic_upto = last

    # With Redis the lexical store is shared by every worker: a marker next to it records
    # which epoch it holds and up to which passage.
    def _marker_key(self) -> str:
        return f"contentstudio:plagiarism:{self.lexical.namespace}:{self.lexical.fingerprint}:built"

    def _shared_marker(self) -> tuple[str, int] | None:
        if not settings.REDIS_URL:
            return None
        raw = _redis().get(self._marker_key())
        if not raw:
            return None
        epoch, _, upto = raw.decode().rpartition("|")
        return (epoch, int(upto)) if upto.isdigit() else None

    def _set_shared_marker(self, epoch: str, upto: int) -> None:
        if not settings.REDIS_URL:
            return
        marker = self._shared_marker()
        if marker is None or marker[0] != epoch or marker[1] < upto:
            _redis().set(self._marker_key(), f"{epoch}|{upto}")


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


_registry: dict[int, ProjectIndexes] = {}
_registry_lock = threading.Lock()


def indexes_for(project_id: int) -> ProjectIndexes:
    """The project's indexes in this process, brought up to date."""
    with _registry_lock:
        indexes = _registry.get(project_id)
        if indexes is None:
            namespace = f"project-{project_id}"
            indexes = ProjectIndexes(
                project_id=project_id,
                lexical=LexicalIndex(namespace, redis_url=settings.REDIS_URL or None),
                semantic=VectorIndex(namespace=namespace),
            )
            _registry[project_id] = indexes
    indexes.refresh()
    return indexes


def forget_all() -> None:
    """Drop every in-process index (tests; the next use rebuilds from the database)."""
    with _registry_lock:
        _registry.clear()
