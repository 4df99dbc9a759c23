"""Embedding the archive's passages for the semantic check, in short batches."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from contentstudio import realtime
from contentstudio.errors import Conflict, InvalidTransition
from review import source_indexes
from review.checks import semantic
from review.models import (
    IndexState,
    PassageSentence,
    SourcePassage,
)
from review.services.embed_tuning import applied_encoder_config

logger = logging.getLogger(__name__)


def encoder_config() -> semantic.EncoderConfig:
    """How the sentence encoder runs, from settings (the checks read no environment), with this
    host's measured choice of graph, precision and spinning applied (``embed_tuning``)."""
    return applied_encoder_config(
        semantic.EncoderConfig(
            onnx=settings.EMBED_ONNX,
            threads=settings.EMBED_THREADS,
            spin=settings.EMBED_SPIN,
            precision=settings.EMBED_PRECISION,
            graph=settings.EMBED_GRAPH,
            cache_dir=Path(settings.EMBED_ONNX_CACHE),
        )
    )


def get_embedder() -> semantic.Embedder:
    """The sentence embedder (the model itself is loaded once per process by ``semantic``)."""
    return semantic.Embedder(
        model_path=settings.EMBEDDING_MODEL_PATH or None,
        device=settings.CHECKS_DEVICE,
        config=encoder_config(),
    )


def embed_enqueue(*, project_id: int) -> None:
    from review import tasks

    if SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True).exists():
        tasks.passages_embed.delay(project_id)


def passages_embed(*, project_id: int, limit: int | None = None) -> int:
    """Embed the sentences of up to ``limit`` passages not yet embedded; returns how many are
    left. Short runs, so the checks of new drafts never wait long behind a large archive."""
    pending = list(
        SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True)
        .order_by("pk")
        .values_list("pk", "text")[: limit or settings.EMBED_BATCH]
    )
    if not pending:
        return 0
    embedder = get_embedder()
    pieces = [(pk, p) for pk, text in pending for p in semantic.index_passages(text)]
    # The model runs outside the transaction (slow work never holds locks).
    vectors = embedder.encode([p.text for _, p in pieces]) if pieces else np.zeros((0, 384))
    with transaction.atomic():
        # Writers of one project take turns (ids then grow in commit order, which the indexes
        # rely on); a concurrent run may have embedded some of these meanwhile: skip those.
        source_indexes.lock(project_id)
        still_pending = set(
            SourcePassage.objects.filter(
                pk__in=[pk for pk, _ in pending], embedded_at__isnull=True
            ).values_list("pk", flat=True)
        )
        PassageSentence.objects.bulk_create(
            [
                PassageSentence(
                    passage_id=pk,
                    number=p.number,
                    start=p.start,
                    end=p.end,
                    vector=semantic.to_bytes(vector, dtype="float16"),
                )
                for (pk, p), vector in zip(pieces, vectors, strict=True)
                if pk in still_pending
            ]
        )
        SourcePassage.objects.filter(pk__in=still_pending).update(embedded_at=timezone.now())
        source_indexes.bump(project_id)
    left = SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True).count()
    realtime.publish_project_event(project_id, {"kind": "embedding", "left": left})
    return left


# --- The chain: one run per project at a time, state in the database --------------------------


@dataclass(frozen=True, slots=True)
class ChainStep:
    """What the task does next: enqueue the next batch now, come back later, or stop."""

    again: bool = False
    retry_in_s: float | None = None
    left: int = 0


def embed_lease_take(*, project_id: int, owner: str, lease_s: float | None = None) -> bool:
    """Claim the project's embedding chain for ``lease_s`` seconds with a conditional UPDATE;
    False when another live run holds it. An expired lease (its holder was killed) is free."""
    IndexState.objects.get_or_create(project_id=project_id)
    now = timezone.now()
    until = now + timedelta(seconds=lease_s or settings.EMBED_LEASE_S)
    taken = (
        IndexState.objects.filter(project_id=project_id)
        .filter(Q(embed_lease_until__isnull=True) | Q(embed_lease_until__lt=now))
        .update(embed_owner=owner, embed_lease_until=until)
    )
    return taken == 1


def embed_lease_renew(*, project_id: int, owner: str, lease_s: float | None = None) -> bool:
    """Extend the lease while still ours (a long compaction renews it as it writes)."""
    until = timezone.now() + timedelta(seconds=lease_s or settings.EMBED_LEASE_S)
    return (
        IndexState.objects.filter(project_id=project_id, embed_owner=owner).update(
            embed_lease_until=until
        )
        == 1
    )


def embed_lease_release(*, project_id: int, owner: str) -> None:
    """Give the lease back (only if still ours: an expired one may have been taken over)."""
    IndexState.objects.filter(project_id=project_id, embed_owner=owner).update(
        embed_owner="", embed_lease_until=None
    )


def _wait_for_lease(project_id: int) -> float | None:
    """The lease is held: let at most one message wait for it to end (None: one already
    waits, drop this message). Why wait at all: if the holder was killed, nobody else would
    continue the chain, and the message that noticed is the only one left."""
    now = timezone.now()
    row = (
        IndexState.objects.filter(project_id=project_id)
        .values_list("embed_lease_until", "embed_retry_at")
        .first()
    )
    if row is None or row[0] is None:
        return 0.0
    until = row[0]
    claimed = (
        IndexState.objects.filter(project_id=project_id)
        .filter(Q(embed_retry_at__isnull=True) | Q(embed_retry_at__lt=now))
        .update(embed_retry_at=until)
    )
    if claimed != 1:
        return None
    return max((until - now).total_seconds(), 0.0) + 0.5


def embed_chain_step(*, project_id: int) -> ChainStep:
    """One step of the project's embedding chain (the task's body).

    Takes the lease, embeds one batch (committed with its ``embedded_at`` marks, so a crash
    loses at most the batch in flight), gives the lease back and says whether to go on. When
    another run holds the lease, this message either waits for it to expire (the first one to
    find it held) or is dropped (a duplicate). Side effects: writes sentence vectors; publishes
    the progress; updates the lease columns of the project's IndexState.
    """
    if not SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True).exists():
        return ChainStep()
    owner = uuid.uuid4().hex
    if not embed_lease_take(project_id=project_id, owner=owner):
        wait = _wait_for_lease(project_id)
        return ChainStep(retry_in_s=wait) if wait is not None else ChainStep()
    try:
        left = passages_embed(project_id=project_id)
    finally:
        embed_lease_release(project_id=project_id, owner=owner)
    # Hash the import's new passages into the lexical index here, off the checks' path (with
    # Redis the store is shared, so every worker's checks find them there).
    source_indexes.catch_up(project_id)
    if left == 0:
        checks_rerun_after_indexing(project_id=project_id)
        compact_enqueue(project_id=project_id)
    else:
        # A large import is folded into segments as it goes (every check scans the delta).
        compact_enqueue(project_id=project_id, during_import=True)
    return ChainStep(again=left > 0, left=left)


def compact_enqueue(*, project_id: int, during_import: bool = False) -> bool:
    """Queue a compaction of the semantic index when its delta has grown past the limit
    (``during_import``: past :func:`source_indexes.import_compact_limit`)."""
    from review import tasks

    sentences, removals = source_indexes.semantic_delta_size(project_id)
    limit = settings.SEMANTIC_DELTA_MAX
    if during_import:
        limit = source_indexes.import_compact_limit(project_id)
    if sentences < limit and removals < max(1, limit // 10):
        return False
    transaction.on_commit(lambda: tasks.semantic_compact.delay(project_id))
    return True


def compact_sweep() -> int:
    """Periodic: queue compactions of every project whose delta is over the limit (a chain that
    ended in a dead worker never queued its own); returns how many were queued."""
    project_ids = set(IndexState.objects.values_list("project_id", flat=True))
    return sum(compact_enqueue(project_id=pid) for pid in sorted(project_ids))


def checks_rerun_after_indexing(*, project_id: int) -> int:
    """Check again every draft whose current checks ran against a partly indexed archive
    (routed on what was indexed then, and saying so); returns how many.

    Only drafts still undecided (held or awaiting review) at the checked version: one edited
    or decided meanwhile has moved on. Side effects: moves each to ``checking`` and enqueues
    its checks on commit.
    """
    from generation.models import Draft
    from review.lifecycle import DraftStatus
    from review.models import CheckResult
    from review.services.pipeline import draft_checks_start

    candidates = Draft.objects.filter(
        project_id=project_id,
        status__in=[DraftStatus.HELD, DraftStatus.AWAITING_REVIEW],
        checks__kind__in=["semantic", "lexical"],
        checks__details__partial=True,
    ).distinct()
    count = 0
    for draft in candidates:
        newest = [
            CheckResult.objects.filter(draft=draft, kind=kind)
            .order_by("-draft_version")
            .values_list("details__partial", flat=True)
            .first()
            for kind in ("semantic", "lexical")
        ]
        if not any(newest):
            continue  # checked again since, against the whole archive
        try:
            draft_checks_start(draft=draft)
        except (InvalidTransition, Conflict):
            continue  # moved on meanwhile (released, rejected, edited)
        count += 1
    if count:
        logger.info("indexing of project %s finished: %s drafts checked again", project_id, count)
    return count


def embed_resume_all() -> int:
    """One chain message per project that still has passages to embed (a worker start or the
    periodic sweep); returns how many were sent. O(projects), never O(passages)."""
    from review import tasks

    project_ids = list(
        SourcePassage.objects.filter(embedded_at__isnull=True)
        # order_by(): without it the model's default ordering (pk) joins the DISTINCT and
        # every passage becomes its own row, hence its own message.
        .order_by()
        .values_list("project_id", flat=True)
        .distinct()
    )
    for project_id in project_ids:
        tasks.passages_embed.delay(project_id)
    return len(project_ids)
