"""Celery tasks of the fine-tuning app: thin wrappers that call services with ids."""

from __future__ import annotations

from celery import shared_task

from generation.finetune import services


@shared_task(acks_late=True, ignore_result=True, queue="generate")
def finetune_run(run_id: int) -> None:
    """Train a queued run on the generate queue (where the models live). Idempotent: a
    redelivered run that is not queued any more is skipped by the claim."""
    from generation.tasks import worker_name

    services.run_execute(run_id=run_id, worker_name=worker_name())


@shared_task(ignore_result=True)
def runs_sweep() -> dict[str, int]:
    """Periodic (settings.CELERY_BEAT_SCHEDULE): fail dead runs, resend lost messages."""
    return services.runs_sweep()
