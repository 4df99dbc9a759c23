"""Celery tasks of the review app (queue ``review``): thin wrappers around services."""

from __future__ import annotations

from celery import Task, shared_task
from celery.signals import worker_ready

from review import services
from review.services import embedding


@shared_task(acks_late=True, ignore_result=True, bind=True)
def draft_check(self: Task, draft_id: int, version: int) -> None:
    # The worker's name goes on the claim, so a stale claim says whose process died.
    worker = getattr(self.request, "hostname", None) or "worker"
    services.draft_checks_run(draft_id=draft_id, version=version, worker=worker)


@shared_task(ignore_result=True)
def checks_sweep() -> dict[str, int]:
    """Periodic (settings.CELERY_BEAT_SCHEDULE): start lost checks, resend dead ones."""
    return services.checks_sweep()


@shared_task(acks_late=True, ignore_result=True, bind=True)
def archive_import(self: Task, run_id: int) -> None:
    # The worker's name goes on the claim: its heartbeat and every stored batch are its own.
    worker = getattr(self.request, "hostname", None) or "worker"
    services.import_run_execute(run_id=run_id, worker=worker)


@shared_task(ignore_result=True)
def imports_sweep() -> dict[str, int]:
    """Periodic (settings.CELERY_BEAT_SCHEDULE): resend imports whose worker died."""
    return services.imports_sweep()


@shared_task(acks_late=True, ignore_result=True)
def passages_embed(project_id: int) -> None:
    # One short batch per task run; the next batch queues behind whatever arrived meanwhile
    # (the checks of new drafts), so a large archive never blocks the review queue. One chain
    # per project, by a lease in the database (see embed_chain_step).
    step = embedding.embed_chain_step(project_id=project_id)
    if step.again:
        passages_embed.delay(project_id)
    elif step.retry_in_s is not None:
        passages_embed.apply_async((project_id,), countdown=step.retry_in_s)


@shared_task(acks_late=True, ignore_result=True)
def passages_embed_sweep() -> None:
    # Periodic (CELERY_BEAT_SCHEDULE): a chain whose worker died with no message left behind
    # is picked up again within one period, whatever the workers are called.
    embedding.embed_resume_all()


@shared_task(acks_late=True, ignore_result=True)
def semantic_compact(project_id: int) -> None:
    # Builds the new segment beside the live one and swaps; a duplicate message finds the lease
    # taken or the delta already folded, and does nothing.
    from review import source_indexes

    if source_indexes.semantic_compact(project_id=project_id):
        # The new segment serves at once by the exact scan; its IVF index follows.
        semantic_ann_build.delay(project_id)


@shared_task(acks_late=True, ignore_result=True)
def semantic_ann_build(project_id: int) -> None:
    # Builds the live segment's IVF index beside its vectors; a duplicate finds it built or
    # being built (a file lock), and does nothing.
    from review.services import semantic_ann

    semantic_ann.semantic_ann_build(project_id=project_id)


@shared_task(ignore_result=True)
def semantic_compact_sweep() -> None:
    # Periodic (CELERY_BEAT_SCHEDULE): a delta grown by publications (no embedding chain end
    # to notice it) or left by a dead worker is folded within one period.
    embedding.compact_sweep()
    # A segment whose IVF index was never built, was killed half-way or is stale.
    from review.services import semantic_ann

    semantic_ann.ann_sweep()


@worker_ready.connect
def _resume_pending(**kwargs: object) -> None:
    # Messages do not outlive the in-memory broker (embedded studio) and may be lost with a
    # crashed worker: pick up what the database says is still to do. Every task claims its
    # row, so a message that does exist twice runs once.
    services.resume_pending()


@worker_ready.connect
def _tune_host(**kwargs: object) -> None:
    # A quick measurement of this host's settings when none is recorded (generation.tuning).
    from review.management.commands.studio_tune import tune_at_start

    tune_at_start()
