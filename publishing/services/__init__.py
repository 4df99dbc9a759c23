"""Writes of publishing, one module per thing written:

- :mod:`.publications`: publish (now or scheduled), correct, unpublish; each drives the draft's
  move through review's ``draft_transition`` and writes the version in the same transaction;
- :mod:`.versions`: how a version is written (provenance, the publication's move, its tags and
  deliveries), inside those transactions;
- :mod:`.destinations`: create, enable, disable, delete (admins; audited, secrets never logged);
- :mod:`.deliveries`: one delivery per destination per version, "retry now", and what each
  attempt's outcome does to the row (the flush in ``publishing.flush`` calls these).

Publications and deliveries change status only through ``publishing.lifecycles``. Callers may
import the functions from here.
"""

from __future__ import annotations

from publishing.services.deliveries import (
    EVENT_TYPES,
    deliveries_create,
    deliveries_record_delivered,
    delivery_record,
    delivery_retry_now,
    delivery_supersede,
    retry_delay,
)
from publishing.services.destinations import (
    destination_create,
    destination_delete,
    destination_set_enabled,
    new_signing_secret,
)
from publishing.services.publications import (
    CorrectionHeld,
    publication_catch_up_published,
    publication_catch_up_unpublished,
    publication_correct,
    publication_publish,
    publication_schedule,
    publication_schedule_cancel,
    publication_unpublish,
    publications_due,
)
from publishing.services.versions import MAX_SUMMARY, MAX_TAGS, clean_tags

__all__ = [
    "EVENT_TYPES",
    "MAX_SUMMARY",
    "MAX_TAGS",
    "CorrectionHeld",
    "clean_tags",
    "deliveries_create",
    "deliveries_record_delivered",
    "delivery_record",
    "delivery_retry_now",
    "delivery_supersede",
    "destination_create",
    "destination_delete",
    "destination_set_enabled",
    "new_signing_secret",
    "publication_catch_up_published",
    "publication_catch_up_unpublished",
    "publication_correct",
    "publication_publish",
    "publication_schedule",
    "publication_schedule_cancel",
    "publication_unpublish",
    "publications_due",
    "retry_delay",
]
