"""Embedding the archive's passages for the semantic check, in short batches."""

from __future__ import annotations

import logging

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from contentstudio import realtime
from review import indexes
from review.checks import semantic
from review.models import (
    PassageSentence,
    SourcePassage,
)

logger = logging.getLogger(__name__)


EMBED_BATCH = 128  # passages per embedding task run: short, so checks interleave with it


def get_embedder() -> semantic.Embedder:
    """The sentence embedder (the model itself is loaded once per process by ``semantic``)."""
    return semantic.Embedder(
        model_path=settings.EMBEDDING_MODEL_PATH or None, device=settings.CHECKS_DEVICE
    )


def embed_enqueue(*, project_id: int) -> None:
    from review import tasks

    if SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True).exists():
        tasks.passages_embed.delay(project_id)


def passages_embed(*, project_id: int, limit: int = EMBED_BATCH) -> int:
    """Embed the sentences of up to ``limit`` passages not yet embedded; returns how many are
    left. Short runs, so the checks of new drafts never wait long behind a large archive."""
    pending = list(
        SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True)
        .order_by("pk")
        .values_list("pk", "text")[:limit]
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
        indexes.lock(project_id)
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
        indexes.bump(project_id)
    left = SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True).count()
    realtime.publish_project_event(project_id, {"kind": "embedding", "left": left})
    return left
