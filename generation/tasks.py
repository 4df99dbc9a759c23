"""Celery tasks of the generation app: thin wrappers that call services with ids."""

from __future__ import annotations

import socket

from celery import shared_task
from celery.signals import worker_ready

from generation import model_runtime, runner, services


def worker_name() -> str:
    from celery import current_task

    hostname = getattr(getattr(current_task, "request", None), "hostname", None)
    return hostname or f"worker@{socket.gethostname()}"


# The name is the task's original one: messages already queued and the routes still find it.
@shared_task(name="generation.tasks.job_run", acks_late=True, ignore_result=True)
def job_generate(job_id: int) -> None:
    """Generate a job's candidates. Idempotent: a redelivered job that already ran is skipped."""
    runner.job_claim_and_generate(job_id=job_id, worker_name=worker_name())


@shared_task(ignore_result=True)
def jobs_sweep() -> dict[str, int]:
    """Periodic (settings.CELERY_BEAT_SCHEDULE): fail dead jobs, resend lost messages."""
    return services.jobs_sweep()


@shared_task(acks_late=True, ignore_result=True)
def model_check(model_id: int, backend: str | None = None) -> None:
    """Load a model with its backend (or ``backend``) here, write a few tokens, record it."""
    model_runtime.model_check(model_id=model_id, backend=backend)


@shared_task(acks_late=True, ignore_result=True)
def model_convert_onnx(model_id: int) -> None:
    """Convert a model to ONNX in the worker (where it will run); the outcome is recorded as
    the ONNX backend's check."""
    from generation.backends.types import ModelLoadError

    try:
        model_runtime.model_convert_onnx(model_id=model_id)
    except ModelLoadError as exc:
        from django.utils import timezone

        model_runtime.record_backend_check(
            model_id=model_id,
            backend="onnx",
            ok=False,
            message=f"Conversion failed: {exc}",
            at=timezone.now().isoformat(),
        )
        return
    model_runtime.model_check(model_id=model_id, backend="onnx")


@worker_ready.connect
def _fail_orphaned_jobs(sender=None, **kwargs) -> None:
    # A worker that starts under the name of one that was running jobs replaces a dead
    # process: those jobs can never finish, so they are failed with the reason.
    hostname = getattr(sender, "hostname", None)
    if hostname:
        services.jobs_fail_orphaned(worker_name=hostname)
    # Queued jobs whose message was lost (the in-memory broker of an embedded studio that
    # restarted): enqueue them again; the claim makes a duplicate harmless.
    services.jobs_requeue(older_than=0)
