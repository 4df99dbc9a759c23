"""The flush: one destination's due deliveries, sent in order, one at a time, with backoff.

No HTTP call runs inside a transaction. A destination's deliveries go out strictly in sequence:
while the oldest waits for its retry, the newer ones wait behind it (a correction never reaches
a site before the story it corrects), and when the receiver is back they all go, in order. One
flush per destination at a time, claimed by a lease (conditional UPDATE). The senders
(``publishing.senders``) make the calls; ``publishing.services.deliveries`` records outcomes.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import requests
from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from publishing import secrets as secret_box
from publishing.addresses import GuardedSession
from publishing.models import Delivery, DeliveryStatus, Destination
from publishing.senders import Outcome, attempt
from publishing.services.deliveries import (
    deliveries_record_delivered,
    delivery_record,
    delivery_supersede,
)


def lease() -> timedelta:
    return timedelta(seconds=settings.PUBLISHING_DESTINATION_LEASE_S)


def _claim(destination_id: int) -> bool:
    now = timezone.now()
    return (
        Destination.objects.filter(pk=destination_id, enabled=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + lease())
        == 1
    )


def _release(destination_id: int) -> None:
    Destination.objects.filter(pk=destination_id).update(lease_until=None)


def _pending(destination_id: int) -> Any:
    return (
        Delivery.objects.filter(destination_id=destination_id, status=DeliveryStatus.PENDING)
        .select_related("version__publication__project")
        .order_by("sequence")
    )


def _next_batch(destination: Destination, size: int = 50) -> list[Delivery]:
    """The next deliveries in order, sharing one destination and one publication object each
    (building a model object per row per join was the flush's biggest cost)."""
    rows = list(_pending(destination.pk)[:size])
    for row in rows:
        row.destination = destination
        row.publication = row.version.publication
    return rows


def head(destination_id: int) -> Delivery | None:
    """The oldest delivery still to send to the destination."""
    row = _pending(destination_id).select_related("destination").first()
    if row is not None:
        row.publication = row.version.publication
    return row


def _superseded(delivery: Delivery) -> bool:
    if delivery.version.number >= delivery.publication.current_version:
        return False  # nothing newer exists
    return Delivery.objects.filter(
        destination_id=delivery.destination_id,
        publication_id=delivery.publication_id,
        version__number__gt=delivery.version.number,
        status=DeliveryStatus.DELIVERED,
    ).exists()


# Successful plain deliveries are recorded in groups of this many (or after this long): at
# hundreds of deliveries a second the bookkeeping would otherwise cost more than the HTTP calls.
# A crash between sending and recording resends those few with the same webhook-id, which
# receivers dedupe (the Standard Webhooks contract), so nothing is lost or doubled.
BATCH_SIZE = 25
BATCH_SECONDS = 0.5


class _Successes:
    def __init__(self) -> None:
        self.items: list[tuple[Delivery, Outcome, int]] = []
        self.since = time.monotonic()

    def add(self, delivery: Delivery, outcome: Outcome, duration_ms: int) -> None:
        if not self.items:
            self.since = time.monotonic()
        self.items.append((delivery, outcome, duration_ms))
        if len(self.items) >= BATCH_SIZE or time.monotonic() - self.since > BATCH_SECONDS:
            self.record()

    def record(self) -> None:
        items, self.items = self.items, []
        deliveries_record_delivered(items)


def _drain(destination_id: int, session: requests.Session) -> int:
    """Send due deliveries in sequence until one has to wait (or none is left). Reads them in
    batches (one query per 50), decrypts the secret once, records plain successes in groups."""
    successes = _Successes()
    try:
        return _drain_into(destination_id, session, successes)
    finally:
        successes.record()


def _drain_into(destination_id: int, session: requests.Session, successes: _Successes) -> int:
    sent = 0
    secret: str | None = None
    renewed = time.monotonic()
    destination = Destination.objects.get(pk=destination_id)
    # Once one delivery got through, the receiver is up: what waited behind its backoff goes
    # now, in order, instead of at each row's own retry time.
    reached = False
    while True:
        successes.record()  # the next read must see what was sent
        batch = _next_batch(destination)
        if not batch:
            return sent
        for delivery in batch:
            due = delivery.next_attempt_at
            if due and due > timezone.now() and not reached:
                return sent
            if _superseded(delivery):
                delivery_supersede(delivery)
                continue
            if secret is None:
                try:
                    secret = secret_box.decrypt(delivery.destination.secret_encrypted)
                except ValueError as exc:
                    delivery_record(delivery, Outcome(ok=False, error=str(exc)), 0)
                    return sent
            started = time.perf_counter()
            outcome = attempt(delivery, session=session, secret=secret)
            duration = int((time.perf_counter() - started) * 1000)
            reached = reached or outcome.ok
            if outcome.ok and not outcome.remote_id and not outcome.extra:
                successes.add(delivery, outcome, duration)
                sent += 1
            else:
                successes.record()  # keep the log in order
                status = delivery_record(delivery, outcome, duration)
                if status == DeliveryStatus.PENDING:
                    return sent  # it waits for its retry, and everything behind it waits too
                sent += status == DeliveryStatus.DELIVERED
            if time.monotonic() - renewed > lease().total_seconds() / 4:
                Destination.objects.filter(pk=destination_id).update(
                    lease_until=timezone.now() + lease()
                )
                renewed = time.monotonic()


def destination_flush(destination_id: int, *, session: requests.Session | None = None) -> int:
    """Send what is due to one destination, in order. Returns how many were delivered.

    Claimed by a lease (conditional UPDATE), so only one flush per destination runs at a time;
    a flush that finds the lease taken leaves the work to the holder, which looks again after
    releasing it. Side effects: attempts, delivery rows, remote ids; a retry task is scheduled
    for the head's next try.
    """
    from publishing import tasks

    session = session or GuardedSession()
    sent = 0
    while _claim(destination_id):
        try:
            sent += _drain(destination_id, session)
        finally:
            _release(destination_id)
        waiting = head(destination_id)
        if waiting is None:
            break
        if waiting.next_attempt_at and waiting.next_attempt_at > timezone.now():
            countdown = (waiting.next_attempt_at - timezone.now()).total_seconds()
            tasks.destination_flush.apply_async(args=[destination_id], countdown=countdown + 0.05)
            break
        # Something became due while the lease was held: go round again.
    return sent


def due_destinations() -> list[int]:
    """Destinations with a delivery due now and no flush at work (for the periodic task)."""
    now = timezone.now()
    # Only a destination's head counts: deliveries behind a head that waits are not due.
    earlier = Delivery.objects.filter(
        destination_id=OuterRef("destination_id"),
        status=DeliveryStatus.PENDING,
        sequence__lt=OuterRef("sequence"),
    )
    return list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(~Exists(earlier))
        .filter(destination__enabled=True)
        .filter(Q(destination__lease_until__isnull=True) | Q(destination__lease_until__lt=now))
        .order_by()
        .values_list("destination_id", flat=True)
        .distinct()
    )
