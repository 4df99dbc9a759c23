"""The lifecycles of publications and deliveries: the tables, the audit rows every move writes
(from/to), impossible moves refused with InvalidTransition (HTTP 409) writing nothing, and the
scheduled summary kept on the publication rather than read back out of the audit log.

The expected tables are written out here from the states' meanings, not read back from
publishing/lifecycles.py."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from contentstudio.errors import InvalidTransition
from publishing import flush, services
from publishing.lifecycles import (
    DELIVERY_LIFECYCLE,
    DELIVERY_MOVES,
    PUBLICATION_LIFECYCLE,
    PUBLICATION_MOVES,
)
from publishing.models import (
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Publication,
    PublicationEvent,
    PublicationStatus,
    PublicationVersion,
)
from tests.publishing_helpers import Receiver, approved_draft

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_receivers_allowed")]

P, D = PublicationStatus, DeliveryStatus
EXPECTED_PUBLICATION_MOVES = {
    "scheduled": {"published", "cancelled"},
    "published": {"published", "unpublished"},  # a correction stays published
    "unpublished": set(),
    "cancelled": {"scheduled", "published"},
}
EXPECTED_DELIVERY_MOVES = {
    "pending": {"delivered", "failed", "superseded", "pending"},  # "retry now" stays pending
    "delivered": set(),
    "failed": {"pending"},
    "superseded": set(),
}


def api_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def moves(publication: Publication) -> list[tuple[str, str, str]]:
    return [
        (e.action, e.from_status, e.to_status)
        for e in PublicationEvent.objects.filter(publication=publication).order_by("pk")
    ]


def test_the_tables_have_exactly_the_moves_each_lifecycle_needs() -> None:
    assert {s: set(t) for s, t in PUBLICATION_MOVES.items()} == EXPECTED_PUBLICATION_MOVES
    assert {s: set(t) for s, t in DELIVERY_MOVES.items()} == EXPECTED_DELIVERY_MOVES
    assert set(PUBLICATION_MOVES) == set(PublicationStatus.values)
    assert set(DELIVERY_MOVES) == set(DeliveryStatus.values)
    assert PUBLICATION_LIFECYCLE.final == {"unpublished"}
    assert DELIVERY_LIFECYCLE.final == {"delivered", "superseded"}


def test_publish_correct_and_unpublish_each_write_one_audit_row_with_from_and_to(
    cast: dict,
) -> None:
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    services.publication_correct(
        publication=publication,
        user=cast["bob"],
        body="<p>The tournament had forty players, not thirty.</p>",
        note="Typo",
    )
    services.publication_unpublish(publication=publication, user=cast["bob"], reason="Legal")
    assert moves(publication) == [
        ("publish", "", "published"),
        ("correct", "published", "published"),
        ("unpublish", "published", "unpublished"),
    ]
    events = PublicationEvent.objects.filter(publication=publication).order_by("pk")
    assert [e.version for e in events] == [1, 2, 3]
    assert [e.actor for e in events] == [cast["bob"]] * 3
    assert events[2].reason == "Legal"


def test_an_impossible_publication_move_raises_and_writes_nothing(cast: dict) -> None:
    # given an unpublished publication (no way out)
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    services.publication_unpublish(publication=publication, user=cast["bob"], reason="Legal")
    before = (PublicationEvent.objects.count(), PublicationVersion.objects.count())
    # when anything tries to move it, through the helper or a service
    for to in PublicationStatus.values:
        with pytest.raises(InvalidTransition, match="cannot move from unpublished"):
            PUBLICATION_LIFECYCLE.move(
                publication.pk, to=to, expected="unpublished", fields={"error": "x"}
            )
    with pytest.raises(InvalidTransition):
        services.publication_schedule_cancel(publication=publication, user=cast["bob"])
    with pytest.raises(InvalidTransition):
        services.publication_correct(
            publication=publication,
            user=cast["bob"],
            body="<p>The club thanks the town for the use of its hall.</p>",
            note="x",
        )
    # then nothing changed and no audit row was written
    publication.refresh_from_db()
    assert (publication.status, publication.current_version, publication.error) == (
        "unpublished",
        2,
        "",
    )
    assert (PublicationEvent.objects.count(), PublicationVersion.objects.count()) == before


def test_the_api_answers_409_to_an_impossible_move_and_writes_nothing(cast: dict) -> None:
    destination, _ = services.destination_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="Site",
        kind="generic",
        url="http://127.0.0.1:9/hooks",
    )
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    # a delivery already delivered cannot be retried
    done = Delivery.objects.get(destination=destination)
    DELIVERY_LIFECYCLE.move(done.pk, to=D.DELIVERED, expected=D.PENDING)
    events = (PublicationEvent.objects.count(), DeliveryEvent.objects.count())
    bob = api_for(cast["bob"])
    cancel = bob.post(f"/api/v1/publications/{publication.pk}/cancel-schedule/")
    assert cancel.status_code == 409
    assert cancel.json()["code"] == "invalid_transition"
    retry = bob.post(f"/api/v1/deliveries/{done.pk}/retry/")
    assert retry.status_code == 409 and "delivered" in retry.json()["message"]
    assert (PublicationEvent.objects.count(), DeliveryEvent.objects.count()) == events
    publication.refresh_from_db()
    assert publication.status == "published"
    done.refresh_from_db()
    assert done.status == "delivered"
    # and the helper refuses a move the table does not have before touching the row
    with pytest.raises(InvalidTransition, match="cannot move from delivered to pending"):
        DELIVERY_LIFECYCLE.move(done.pk, to=D.PENDING, expected=D.DELIVERED)
    with pytest.raises(InvalidTransition, match="cannot move from superseded to delivered"):
        DELIVERY_LIFECYCLE.move_many([done.pk], to=D.DELIVERED, expected=D.SUPERSEDED)
    assert DeliveryEvent.objects.count() == events[1]


def test_a_schedule_cancelled_then_made_again_publishes_with_its_stored_summary(
    cast: dict,
) -> None:
    draft = approved_draft(cast)
    soon = timezone.now() + timedelta(minutes=5)
    publication = services.publication_schedule(
        draft=draft, user=cast["bob"], when=soon, summary="The first summary."
    )
    services.publication_schedule_cancel(publication=publication, user=cast["bob"])
    services.publication_schedule(
        draft=draft, user=cast["bob"], when=soon, summary="The summary to publish.", tags="a, b"
    )
    publication.refresh_from_db()
    assert publication.summary == "The summary to publish."
    # The audit log is a record, not a store: what it holds is not what gets published.
    PublicationEvent.objects.filter(publication=publication).update(data={})
    assert services.publications_due(now=soon + timedelta(seconds=1)) == [publication.pk]
    version = PublicationVersion.objects.get(publication=publication)
    assert (version.summary, version.tags) == ("The summary to publish.", ["a", "b"])
    assert moves(publication) == [
        ("schedule", "", "scheduled"),
        ("schedule_cancel", "scheduled", "cancelled"),
        ("schedule", "cancelled", "scheduled"),
        ("publish", "scheduled", "published"),
    ]
    publication.refresh_from_db()
    assert publication.summary == "The summary to publish."


def test_deliveries_move_with_an_audit_row_each_whether_sent_alone_or_in_a_batch(
    cast: dict, settings: Any
) -> None:
    settings.PUBLISHING_RETRY_DELAYS = []  # the first failure is final
    answers = [503]
    got: list[str] = []

    def respond(handler: Any, body: bytes) -> tuple[int, Any]:
        got.append(json.loads(body)["type"])
        return (answers.pop(0) if answers else 200), {}

    receiver = Receiver(respond).start()
    try:
        _flush_twice_around_a_retry(cast, receiver, got)
    finally:
        receiver.stop()


def _flush_twice_around_a_retry(cast: dict, receiver: Receiver, got: list[str]) -> None:
    destination, _ = services.destination_create(
        project=cast["newsroom"], user=cast["alice"], name="Site", kind="generic", url=receiver.url
    )
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    # a refusal with no retries left: pending -> failed, by the flush (no actor)
    assert flush.destination_flush(destination.pk) == 0
    first = Delivery.objects.get()
    assert [(e.action, e.from_status, e.to_status, e.actor) for e in first.events.all()] == [
        ("failed", "pending", "failed", None)
    ]
    assert first.events.get().data == {"attempt": 1, "status_code": 503}
    # "retry now" by bob: failed -> pending, with him as the actor
    services.delivery_retry_now(delivery=first, user=cast["bob"])
    # a correction and a kill wait behind it; all three go in one batch of plain successes
    services.publication_correct(
        publication=publication,
        user=cast["bob"],
        body="<p>The second round was played on Sunday afternoon.</p>",
        note="Update",
    )
    services.publication_unpublish(publication=publication, user=cast["bob"], reason="Pulled")
    assert flush.destination_flush(destination.pk) == 3
    assert got == [
        "publication.published",
        "publication.published",
        "publication.corrected",
        "publication.unpublished",
    ]
    trail = [
        (e.delivery.version.number, e.action, e.from_status, e.to_status, e.actor)
        for e in DeliveryEvent.objects.select_related("delivery__version").order_by("pk")
    ]
    assert trail == [
        (1, "failed", "pending", "failed", None),
        (1, "retry", "failed", "pending", cast["bob"]),
        (1, "delivered", "pending", "delivered", None),
        (2, "delivered", "pending", "delivered", None),
        (3, "delivered", "pending", "delivered", None),
    ]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_a_delivery_overtaken_by_a_newer_version_is_superseded_with_its_audit_row(
    cast: dict,
) -> None:
    destination, _ = services.destination_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="Site",
        kind="generic",
        url="http://x.example",
    )
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    services.publication_correct(
        publication=publication,
        user=cast["bob"],
        body="<p>The second round was played on Sunday afternoon.</p>",
        note="Update",
    )
    old, new = Delivery.objects.filter(destination=destination).order_by("sequence")
    DELIVERY_LIFECYCLE.move(new.pk, to=D.DELIVERED, expected=D.PENDING)
    assert services.delivery_supersede(old) is True
    assert services.delivery_supersede(old) is False  # no longer pending: nothing happens
    old.refresh_from_db()
    assert old.status == "superseded"
    assert [(e.from_status, e.to_status) for e in old.events.all()] == [("pending", "superseded")]
