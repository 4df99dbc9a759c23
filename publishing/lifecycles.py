"""The allowed moves of publications and deliveries; every status change goes through these.

``contentstudio.transitions.Lifecycle`` checks the table, moves the row with a conditional
UPDATE and writes the audit row (PublicationEvent / DeliveryEvent) with from/to in the same
transaction. A row is created in its first state with an audit row from "" (publications) or
none (a delivery: its publication's event says why it exists, and there is one per destination
per version). Two moves stay in their state on purpose: a correction (published -> published,
a new version) and "retry now" on a waiting delivery (pending -> pending, due at once).
"""

from __future__ import annotations

from contentstudio.transitions import Lifecycle
from publishing.models import (
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Publication,
    PublicationEvent,
    PublicationStatus,
)

P = PublicationStatus
PUBLICATION_MOVES: dict[str, frozenset[str]] = {
    # Its time came (or "publish now"), or the schedule was cancelled or refused.
    P.SCHEDULED: frozenset({P.PUBLISHED, P.CANCELLED}),
    # A correction (a new version), or killed.
    P.PUBLISHED: frozenset({P.PUBLISHED, P.UNPUBLISHED}),
    P.UNPUBLISHED: frozenset(),
    # Scheduled again, or published now.
    P.CANCELLED: frozenset({P.SCHEDULED, P.PUBLISHED}),
}

D = DeliveryStatus
DELIVERY_MOVES: dict[str, frozenset[str]] = {
    # Accepted; out of retries or refused for good; overtaken by a newer version; sent now.
    D.PENDING: frozenset({D.DELIVERED, D.FAILED, D.SUPERSEDED, D.PENDING}),
    D.DELIVERED: frozenset(),
    # "Retry now".
    D.FAILED: frozenset({D.PENDING}),
    D.SUPERSEDED: frozenset(),
}

PUBLICATION_LIFECYCLE = Lifecycle(
    name="publication",
    model=Publication,
    moves=PUBLICATION_MOVES,
    event_model=PublicationEvent,
    event_fk="publication",
)

DELIVERY_LIFECYCLE = Lifecycle(
    name="delivery",
    model=Delivery,
    moves=DELIVERY_MOVES,
    event_model=DeliveryEvent,
    event_fk="delivery",
)
