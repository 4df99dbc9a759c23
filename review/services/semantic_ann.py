"""Building the IVF index of a project's live semantic segment, in the background.

A compaction swaps in a new segment at once, searched by the exact scan; this task then builds
the segment's IVF index (:mod:`review.checks.semantic.ann`) into the segment's own folder, and
every process's next search uses it (the segment looks for the file). Nothing waits for it, no
database row changes: the file is the state, so it survives worker restarts, and a segment
without a current one (never built, a build killed half-way, an older format) is found by the
periodic sweep and built again. One build per segment at a time, by an exclusive ``flock`` on a
file in the folder: the kernel releases it when the holder dies, so a killed build never blocks
the next one, whose first act is to delete the dead one's temporary file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings

from review import source_indexes
from review.checks.semantic import ann
from review.checks.semantic import store as vector_store
from review.models import IndexState

logger = logging.getLogger(__name__)


def _live_segment(project_id: int) -> vector_store.Segment | None:
    name = (
        IndexState.objects.filter(project_id=project_id).values_list("segment", flat=True).first()
    )
    if not name:
        return None
    try:
        return vector_store.open_segment(source_indexes.index_dir(project_id), name)
    except (OSError, ValueError):
        return None


def ann_needed(project_id: int) -> bool:
    """Whether the live segment is big enough for an IVF index and lacks a current one."""
    segment = _live_segment(project_id)
    return (
        segment is not None
        and segment.size >= max(1, settings.SEMANTIC_ANN_MIN_ROWS)
        and segment.ann is None
    )


def semantic_ann_build(
    *, project_id: int, on_block: Callable[[], None] | None = None
) -> str | None:
    """Build the IVF index of the project's live segment; returns the segment's name, or None
    when none was needed (small, already built) or another process is building it.

    Side effects: files in the segment's folder (the index, its lock file); the threads of the
    build (``settings.SEMANTIC_ANN_THREADS``).
    """
    segment = _live_segment(project_id)
    if segment is None or segment.size < max(1, settings.SEMANTIC_ANN_MIN_ROWS):
        return None
    if segment.ann is not None:
        return None
    try:
        built = ann.build_once(
            segment.path, segment.bits, threads=settings.SEMANTIC_ANN_THREADS, on_block=on_block
        )
    except OSError as exc:
        # The folder went away (a newer compaction replaced this segment): nothing to do.
        logger.warning("ANN build of %s stopped: %s", segment.path, exc)
        return None
    if not built:
        return None  # another process built it, or is building it
    logger.info(
        "project %s: ANN index of %s (%s sentences)", project_id, segment.name, segment.size
    )
    return segment.name


def ann_sweep() -> int:
    """Periodic: queue a build for every project whose live segment needs one; returns how
    many were queued."""
    from review import tasks

    queued = 0
    for project_id in IndexState.objects.exclude(segment="").values_list("project_id", flat=True):
        if ann_needed(project_id):
            tasks.semantic_ann_build.delay(project_id)
            queued += 1
    return queued
