"""What every audit table shares: who acted, and when.

Each app keeps an event table beside its stateful rows (drafts, jobs, runs, policies,
publications, destinations, deliveries), written in the transaction of the change. What they
record differs (a move's from/to, a policy's changed fields, an admin's act on a destination,
with lengths and choices of their own), so only the actor and the time live here; the rest stays
on each table as its migrations wrote it. The base adds no column and no option: a table that
takes it needs no migration.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


def actor_field(**options: Any) -> models.ForeignKey:
    """The person who acted: None for the system (a worker, the sweep, the flush, the checks),
    and once that person's account is deleted (the audit row stays). ``options`` go to the
    foreign key (``related_name="+"`` where the user needs no way back to the rows)."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, **options
    )


class AuditEvent(models.Model):
    """An audit row: who acted (``actor``) and when (``created_at``)."""

    actor = actor_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True

    @property
    def actor_username(self) -> str | None:
        """The actor's user name; None for the system or a deleted account."""
        return self.actor.get_username() if self.actor else None
