"""The periodic sweep of generation jobs, and what a worker does for its jobs when it starts.

A dead worker's job is found by its silent heartbeat, never by a page view; a queued job whose
message was lost is sent again (the claim makes a duplicate harmless).
"""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db.models import Q
from django.utils import timezone

from generation.models import GenerationJob, JobStatus
from generation.services.jobs import job_fail


def jobs_sweep() -> dict[str, int]:
    """The periodic sweep (every ``SWEEP_INTERVAL`` s, whatever worker runs it).

    - A running job whose heartbeat stopped ``GENERATION_STALE_AFTER`` ago died with its worker
      (the heartbeat comes from a timer thread, so waiting or loading never looks stale): fail
      it with the reason, keeping the text saved so far.
    - A queued job whose message was sent ``GENERATION_REQUEUE_AFTER`` ago and never claimed
      lost its message (a broker or embedded studio restart): send it again. The claim makes a
      duplicate harmless.
    """

    now = timezone.now()
    stale_before = now - timezone.timedelta(seconds=django_settings.GENERATION_STALE_AFTER)
    failed = 0
    for job_id, worker, heartbeat in GenerationJob.objects.filter(
        status=JobStatus.RUNNING, heartbeat_at__lt=stale_before
    ).values_list("pk", "worker", "heartbeat_at"):
        age = int((now - heartbeat).total_seconds())
        failed += job_fail(
            job_id=job_id,
            worker=worker,
            error=(
                f"The worker running this job ({worker or 'unknown'}) stopped responding {age} s "
                "ago (it crashed or was killed). The text written until its last save is kept "
                "below; start a new job to try again."
            ),
        )
    requeued = jobs_requeue(older_than=django_settings.GENERATION_REQUEUE_AFTER)
    return {"failed": failed, "requeued": requeued}


def jobs_fail_orphaned(*, worker_name: str) -> int:
    """At worker start: jobs this same worker was running died with its previous process
    (the sweep would find them a minute later; this is at once)."""
    failed = 0
    for job_id in GenerationJob.objects.filter(
        status=JobStatus.RUNNING, worker=worker_name
    ).values_list("pk", flat=True):
        failed += job_fail(
            job_id=job_id,
            worker=worker_name,
            error=(
                f"The worker {worker_name} restarted while running this job (it crashed or was "
                "killed). The text written until its last save is kept below."
            ),
        )
    return failed


def jobs_requeue(*, older_than: float) -> int:
    """Send again the message of every queued job sent more than ``older_than`` seconds ago
    (0 at a worker start: the in-memory broker lost its messages with the process). Each job's
    ``enqueued_at`` moves with it, so the sweep does not send it again at once; the claim makes
    a duplicate harmless. Returns how many were sent."""
    from generation import tasks  # tasks import services

    now = timezone.now()
    before = now - timezone.timedelta(seconds=older_than)
    sent = 0
    # Jobs created before enqueued_at existed have none: they are as good as lost.
    due = Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=before)
    for job_id in (
        GenerationJob.objects.filter(due, status=JobStatus.QUEUED)
        .order_by("pk")
        .values_list("pk", flat=True)
    ):
        if GenerationJob.objects.filter(due, pk=job_id, status=JobStatus.QUEUED).update(
            enqueued_at=now
        ):
            tasks.job_generate.delay(job_id)
            sent += 1
    return sent
