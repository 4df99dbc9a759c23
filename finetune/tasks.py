"""Celery tasks of the fine-tuning app: thin wrappers that call services with ids.

Each task keeps the name it had when the app lived in generation/finetune/, so messages already
in a queue and the beat schedule still resolve after the move.
"""

from __future__ import annotations

from celery import shared_task

from finetune import runner


@shared_task(
    name="generation.finetune.tasks.finetune_run",
    acks_late=True,
    ignore_result=True,
    queue="generate",
)
def finetune_run(run_id: int) -> None:
    """Train a queued run on the generate queue (where the models live). Idempotent: a
    redelivered run that is not queued any more is skipped by the claim."""
    from generation.tasks import worker_name

    runner.run_execute(run_id=run_id, worker_name=worker_name())


@shared_task(name="generation.finetune.tasks.runs_sweep", ignore_result=True)
def runs_sweep() -> dict[str, int]:
    """Periodic (settings.CELERY_BEAT_SCHEDULE): fail dead runs and evaluations, resend lost
    messages."""
    from finetune import evaluation

    return {**runner.runs_sweep(), "evaluations_failed": evaluation.evaluations_sweep()}


@shared_task(
    name="finetune.tasks.evaluation_run", acks_late=True, ignore_result=True, queue="generate"
)
def evaluation_run(run_id: int) -> None:
    """Run a queued evaluation on the generate queue (where the models live). A redelivered
    run that is not queued any more is skipped."""
    from finetune import evaluation

    evaluation.evaluation_execute(run_id=run_id)
