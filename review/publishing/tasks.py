"""Publishing tasks: thin, idempotent, they call the services. Queue ``publish``."""

from __future__ import annotations

from celery import shared_task

from review.publishing import delivery, services


@shared_task(acks_late=True, ignore_result=True)
def destination_flush(destination_id: int) -> int:
    """Send a destination's due deliveries, in order (a no-op when another flush holds it)."""
    return delivery.destination_flush(destination_id)


@shared_task(acks_late=True, ignore_result=True)
def deliveries_due() -> int:
    """Periodic: start a flush for every destination with a delivery whose time has come."""
    due = delivery.due_destinations()
    for destination_id in due:
        destination_flush.delay(destination_id)
    return len(due)


@shared_task(acks_late=True, ignore_result=True)
def publications_due() -> int:
    """Periodic: publish the scheduled publications whose time has come."""
    return len(services.publications_due())
