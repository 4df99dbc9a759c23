"""Celery tasks of the review app (queue ``review``): thin wrappers around services."""

from __future__ import annotations

from celery import Task, shared_task
from celery.signals import worker_ready
from django.core.cache import cache

from review import services


@shared_task(acks_late=True, ignore_result=True, bind=True)
def draft_check(self: Task, draft_id: int, version: int) -> None:
    # The worker's name goes on the claim, so a stale claim says whose process died.
    worker = getattr(self.request, "hostname", None) or "worker"
    services.draft_checks_run(draft_id=draft_id, version=version, worker=worker)


@shared_task(ignore_result=True)
def checks_sweep() -> dict[str, int]:
    """Periodic (settings.CELERY_BEAT_SCHEDULE): start lost checks, resend dead ones."""
    return services.checks_sweep()


@shared_task(acks_late=True, ignore_result=True)
def archive_import(run_id: int) -> None:
    services.import_run_execute(run_id=run_id)


@shared_task(acks_late=True, ignore_result=True)
def passages_embed(project_id: int) -> None:
    # One short batch per task run; the next batch queues behind whatever arrived meanwhile
    # (the checks of new drafts), so a large archive never blocks the review queue. One chain
    # per project: a second one (a restart re-enqueued it) stops here instead of duplicating.
    key = f"embed-chain:{project_id}"
    if not cache.add(key, 1, timeout=600):
        return
    try:
        left = services.passages_embed(project_id=project_id)
    finally:
        cache.delete(key)
    if left > 0:
        passages_embed.delay(project_id)


@worker_ready.connect
def _resume_pending(**kwargs: object) -> None:
    # Messages do not outlive the in-memory broker (embedded studio) and may be lost with a
    # crashed worker: pick up what the database says is still to do. Every task claims its
    # row, so a message that does exist twice runs once.
    services.resume_pending()
