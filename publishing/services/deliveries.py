"""Writes of deliveries: one per destination per version, "retry now", and what an attempt's
outcome does to the row. Every status change goes through ``DELIVERY_LIFECYCLE`` (conditional
UPDATE + DeliveryEvent in one transaction); an outcome is recorded in a transaction of its own,
never a caller's, because the HTTP call before it ran outside any.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from contentstudio import realtime
from contentstudio.errors import InvalidTransition
from contentstudio.models import Role
from contentstudio.selectors import require_role
from publishing.lifecycles import DELIVERY_LIFECYCLE
from publishing.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
    Publication,
    PublicationEvent,
    PublicationVersion,
    RemoteObject,
    VersionKind,
)
from publishing.redaction import redact
from publishing.senders import Outcome

logger = logging.getLogger(__name__)

EVENT_TYPES = {
    VersionKind.PUBLISH: "publication.published",
    VersionKind.CORRECTION: "publication.corrected",
    VersionKind.KILL: "publication.unpublished",
}


def _announce(project_id: int, publication_id: int, delivery_id: int) -> None:
    realtime.publish_project_event(
        project_id, {"kind": "delivery", "id": delivery_id, "publication": publication_id}
    )


def deliveries_create(*, publication: Publication, version: PublicationVersion) -> list[Delivery]:
    """One delivery of ``version`` per destination of the project, each flushed after commit
    (the caller holds the transaction that wrote the version)."""
    from publishing import tasks

    created = []
    # Disabled destinations get their deliveries too: they wait, in order, until it is enabled.
    for destination in Destination.objects.filter(project_id=publication.project_id):
        # The destination's sequence orders its deliveries; the row lock (PostgreSQL) and the
        # conditional increment keep two publishers from taking the same number.
        Destination.objects.filter(pk=destination.pk).update(next_sequence=F("next_sequence") + 1)
        sequence = Destination.objects.values_list("next_sequence", flat=True).get(
            pk=destination.pk
        )
        created.append(
            Delivery.objects.create(
                destination=destination,
                publication=publication,
                version=version,
                sequence=sequence - 1,
                event_type=EVENT_TYPES[VersionKind(version.kind)],
                next_attempt_at=timezone.now(),
            )
        )
        tasks.destination_flush.delay_on_commit(destination.pk)
    return created


def delivery_retry_now(*, delivery: Delivery, user: AbstractBaseUser) -> Delivery:
    """Send a waiting or failed delivery now (editors and admins). The delivery's move and the
    publication's audit trail (which lists what people did to it) are written together."""
    from publishing import tasks

    require_role(user=user, project=delivery.publication.project, minimum=Role.EDITOR)
    publication = delivery.publication
    with transaction.atomic(durable=True):
        moved = DELIVERY_LIFECYCLE.move(
            delivery.pk,
            to=DeliveryStatus.PENDING,
            expected=[DeliveryStatus.PENDING, DeliveryStatus.FAILED],
            fields={"next_attempt_at": timezone.now()},
            event={"actor": user, "action": "retry"},
        )
        if moved is None:
            delivery.refresh_from_db()
            raise InvalidTransition(
                f"This delivery is {delivery.get_status_display().lower()}: nothing to retry."
            )
        # Deliveries go out in order: the ones before this one to the same destination are
        # tried now too (a retry of a later one alone would wait behind their backoff).
        Delivery.objects.filter(
            destination_id=delivery.destination_id,
            status=DeliveryStatus.PENDING,
            sequence__lt=delivery.sequence,
        ).update(next_attempt_at=timezone.now())
        PublicationEvent.objects.create(
            publication=publication,
            from_status=publication.status,
            to_status=publication.status,
            actor=user,
            action="retry",
            version=delivery.version.number,
            data={"destination": delivery.destination.name},
        )
        destination_id = delivery.destination_id
        transaction.on_commit(lambda: tasks.destination_flush.delay(destination_id))
        project_id, pub_id, status = publication.project_id, publication.pk, publication.status
        transaction.on_commit(
            lambda: realtime.publish_project_event(
                project_id,
                {"kind": "publication", "id": pub_id, "action": "retry", "status": status},
            )
        )
    delivery.refresh_from_db()
    return delivery


def retry_delay(attempts: int) -> int | None:
    """Seconds before the next try after ``attempts`` failed ones; None when they ran out."""
    delays = settings.PUBLISHING_RETRY_DELAYS
    return delays[attempts - 1] if attempts - 1 < len(delays) else None


def delivery_record(delivery: Delivery, outcome: Outcome, duration_ms: int) -> str:
    """Log one attempt and apply its outcome: delivered (with the remote id a CMS gave),
    failed (retries ran out, or refused for good), or still waiting for its next try (not a
    move: the attempt log says why). Returns the delivery's status now."""
    now = timezone.now()
    number = delivery.attempts + 1
    # Senders redact the destination's own credentials; this catches any credential-shaped
    # text whatever produced the error, before it is stored or logged.
    error = redact(outcome.error)[:1000]
    fields: dict[str, Any] = {
        "attempts": number,
        "last_attempt_at": now,
        "last_status_code": outcome.status_code,
        "last_error": error or outcome.extra.get("note", ""),
    }
    delay = None if outcome.ok or not outcome.retryable else retry_delay(number)
    if outcome.ok:
        to = DeliveryStatus.DELIVERED
        fields.update(delivered_at=now, next_attempt_at=None)
    elif delay is None:
        to = DeliveryStatus.FAILED
        fields["next_attempt_at"] = None
    else:
        to = DeliveryStatus.PENDING
        fields["next_attempt_at"] = now + timedelta(seconds=delay)
    with transaction.atomic(durable=True):
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            status_code=outcome.status_code,
            error=error,
            ok=outcome.ok,
            duration_ms=duration_ms,
        )
        # Only a delivery still pending is changed: if a person acted on it meanwhile (it can
        # only have been "retry now", which keeps it pending) our outcome still applies.
        if to == DeliveryStatus.PENDING:
            changed = Delivery.objects.filter(pk=delivery.pk, status=to).update(**fields) == 1
        else:
            changed = (
                DELIVERY_LIFECYCLE.move(
                    delivery.pk,
                    to=to,
                    expected=DeliveryStatus.PENDING,
                    fields=fields,
                    event={
                        "action": to,
                        "data": {"attempt": number, "status_code": outcome.status_code},
                    },
                )
                is not None
            )
        # The post exists at the site whatever became of the row: remember it, so a later
        # version updates it instead of creating another.
        if outcome.ok and outcome.remote_id:
            RemoteObject.objects.update_or_create(
                destination_id=delivery.destination_id,
                publication_id=delivery.publication_id,
                defaults={
                    "remote_id": outcome.remote_id,
                    "remote_updated_at": outcome.remote_updated_at,
                    "url": outcome.remote_url,
                },
            )
        status = (
            to if changed else Delivery.objects.values_list("status", flat=True).get(pk=delivery.pk)
        )
        project_id, pub_id, delivery_id = (
            delivery.publication.project_id,
            delivery.publication_id,
            delivery.pk,
        )
        transaction.on_commit(lambda: _announce(project_id, pub_id, delivery_id))
    if not outcome.ok:
        logger.info(
            "delivery %s to destination %s failed (attempt %s): %s",
            delivery.pk,
            delivery.destination_id,
            number,
            error[:200],
        )
    return status


def deliveries_record_delivered(items: list[tuple[Delivery, Outcome, int]]) -> None:
    """Record plain successes together (``(delivery, outcome, duration_ms)`` each): one insert
    of attempts, one move per (status code, attempt number) group, one event per row."""
    if not items:
        return
    now = timezone.now()
    with transaction.atomic(durable=True):
        DeliveryAttempt.objects.bulk_create(
            [
                DeliveryAttempt(
                    delivery=d,
                    number=d.attempts + 1,
                    status_code=o.status_code,
                    ok=True,
                    duration_ms=ms,
                )
                for d, o, ms in items
            ]
        )
        by_code: dict[tuple[int | None, int], list[int]] = {}
        for d, o, _ in items:
            by_code.setdefault((o.status_code, d.attempts + 1), []).append(d.pk)
        for (code, attempts), ids in by_code.items():
            DELIVERY_LIFECYCLE.move_many(
                ids,
                to=DeliveryStatus.DELIVERED,
                expected=DeliveryStatus.PENDING,
                fields={
                    "attempts": attempts,
                    "last_attempt_at": now,
                    "last_status_code": code,
                    "last_error": "",
                    "delivered_at": now,
                    "next_attempt_at": None,
                },
                event={"action": "delivered", "data": {"attempt": attempts, "status_code": code}},
            )
        announced = {(d.publication.project_id, d.publication_id, d.pk) for d, _, _ in items}
        transaction.on_commit(lambda: [_announce(*a) for a in sorted(announced)])


def delivery_supersede(delivery: Delivery) -> bool:
    """A newer version of the same publication reached the destination first: this one is not
    sent (it would put old text back). False when the delivery was no longer pending."""
    moved = DELIVERY_LIFECYCLE.move(
        delivery.pk,
        to=DeliveryStatus.SUPERSEDED,
        expected=DeliveryStatus.PENDING,
        fields={"last_error": "A newer version reached this destination first."},
        event={"action": "superseded"},
    )
    return moved is not None
