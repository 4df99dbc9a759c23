"""Publishing tasks: thin, idempotent, they call the services. Queue ``publish``.

Each keeps the name it had as ``review.publishing.tasks.*`` before the app moved, so messages
already queued and the beat schedule still resolve (and the routes in settings still match).
"""

from __future__ import annotations

from celery import shared_task

from publishing import flush, services


@shared_task(name="review.publishing.tasks.destination_flush", acks_late=True, ignore_result=True)
def destination_flush(destination_id: int) -> int:
    """Send a destination's due deliveries, in order (a no-op when another flush holds it)."""
    return flush.destination_flush(destination_id)


@shared_task(name="review.publishing.tasks.deliveries_due", acks_late=True, ignore_result=True)
def deliveries_due() -> int:
    """Periodic: start a flush for every destination with a delivery whose time has come."""
    due = flush.due_destinations()
    for destination_id in due:
        destination_flush.delay(destination_id)
    return len(due)


@shared_task(name="review.publishing.tasks.publications_due", acks_late=True, ignore_result=True)
def publications_due() -> int:
    """Periodic: publish the scheduled publications whose time has come."""
    return len(services.publications_due())
