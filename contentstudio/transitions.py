"""One helper moves every lifecycle: jobs, drafts, fine-tune runs, publications, deliveries.

A lifecycle is a table of allowed moves. ``Lifecycle.move`` checks the table, changes the row
with a conditional UPDATE (so exactly one of several racing writers wins, even on SQLite where
``select_for_update`` is a no-op), writes an audit row with from/to in the same transaction,
and schedules the caller's events for after the commit. ``move_many`` does the same for a batch
in one UPDATE and one insert of audit rows, where per-row bookkeeping would cost more than the
work itself (a flush recording deliveries by the hundred).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction

from contentstudio.errors import InvalidTransition


class WorkStatus(models.TextChoices):
    """Work that a worker claims and runs: generation jobs, fine-tune runs."""

    # Created and enqueued on commit; no worker has claimed it yet.
    QUEUED = "queued", "Queued"
    # Claimed by a worker (its heartbeat proves it alive).
    RUNNING = "running", "Running"
    # Finished.
    SUCCEEDED = "succeeded", "Succeeded"
    # Stopped by an error, a crash or the sweep; the row's ``error`` says why.
    FAILED = "failed", "Failed"
    # Stopped on request.
    CANCELLED = "cancelled", "Cancelled"


# Queued work is claimed, cancelled before it starts, or failed (lost for good); running work
# finishes, fails (an error, a crash, the sweep) or stops on request.
WORK_TRANSITIONS: dict[str, frozenset[str]] = {
    WorkStatus.QUEUED: frozenset({WorkStatus.RUNNING, WorkStatus.CANCELLED, WorkStatus.FAILED}),
    WorkStatus.RUNNING: frozenset({WorkStatus.SUCCEEDED, WorkStatus.FAILED, WorkStatus.CANCELLED}),
    WorkStatus.SUCCEEDED: frozenset(),
    WorkStatus.FAILED: frozenset(),
    WorkStatus.CANCELLED: frozenset(),
}


def final_states(moves: Mapping[str, Iterable[str]]) -> frozenset[str]:
    """The states with no way out."""
    return frozenset(state for state, nexts in moves.items() if not nexts)


@dataclass(frozen=True)
class Lifecycle:
    """The allowed moves of one stateful model and where its audit rows go."""

    name: str  # in error messages: "job", "run", "delivery"...
    model: type[models.Model]
    moves: Mapping[str, frozenset[str]]
    event_model: type[models.Model]
    # The event model's foreign key to ``model`` ("job" for JobEvent.job).
    event_fk: str
    status_field: str = "status"

    @property
    def final(self) -> frozenset[str]:
        return final_states(self.moves)

    def allows(self, current: str, to: str) -> bool:
        return to in self.moves.get(current, frozenset())

    def sources(self, to: str) -> list[str]:
        """Every state from which ``to`` may be reached."""
        return [state for state, nexts in self.moves.items() if to in nexts]

    def move(
        self,
        pk: Any,
        *,
        to: str,
        expected: str | Iterable[str] | None = None,
        where: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        event: Mapping[str, Any] | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> str | None:
        """Move row ``pk`` to ``to`` if it is still where the caller believes it is.

        ``expected``: the status (or statuses) the caller saw; every one of them must allow the
        move, or InvalidTransition is raised (a programming error, not a race). None means any
        status the table allows the move from. ``where`` narrows the row further (the worker
        that holds a claim, the version a person saw). ``fields`` are written with the status;
        ``event`` are the audit row's other fields. Returns the status moved from, or None
        when another writer got there first (nothing is changed then).
        """
        if expected is None:
            froms = self.sources(to)
        else:
            froms = [expected] if isinstance(expected, str) else list(expected)
            for current in froms:
                if not self.allows(current, to):
                    raise InvalidTransition(f"A {self.name} cannot move from {current} to {to}.")
        if not froms:
            raise InvalidTransition(f"No {self.name} can move to {to}.")
        status = self.status_field
        narrow = dict(where or {})
        with transaction.atomic():
            if len(froms) == 1:
                # The caller knows the status: the conditional UPDATE alone decides.
                before: str | None = froms[0]
            else:
                before = (
                    self.model.objects.select_for_update()
                    .filter(pk=pk, **{f"{status}__in": froms}, **narrow)
                    .values_list(status, flat=True)
                    .first()
                )
                if before is None:
                    return None
            changed = self.model.objects.filter(pk=pk, **{status: before}, **narrow).update(
                **{status: to}, **(fields or {})
            )
            if changed != 1:
                return None
            self.event_model.objects.create(
                **{f"{self.event_fk}_id": pk, "from_status": before, "to_status": to},
                **(event or {}),
            )
            if on_commit is not None:
                transaction.on_commit(on_commit)
        return before

    def move_many(
        self,
        pks: Iterable[Any],
        *,
        to: str,
        expected: str,
        fields: Mapping[str, Any] | None = None,
        event: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """Move every row of ``pks`` still in ``expected`` to ``to``: one conditional UPDATE and
        one audit row each (inserted together), in one transaction. Returns the pks moved; the
        rows no longer in ``expected`` are left as they are, as ``move`` leaves a lost race.
        """
        if not self.allows(expected, to):
            raise InvalidTransition(f"A {self.name} cannot move from {expected} to {to}.")
        status = self.status_field
        wanted = list(pks)
        try:
            with transaction.atomic():
                ids = list(
                    self.model.objects.select_for_update()
                    .filter(pk__in=wanted, **{status: expected})
                    .values_list("pk", flat=True)
                )
                if not ids:
                    return []
                changed = self.model.objects.filter(pk__in=ids, **{status: expected}).update(
                    **{status: to}, **(fields or {})
                )
                if changed != len(ids):
                    raise _Raced
                self.event_model.objects.bulk_create(
                    [
                        self.event_model(
                            **{f"{self.event_fk}_id": pk, "from_status": expected, "to_status": to},
                            **(event or {}),
                        )
                        for pk in ids
                    ]
                )
        except _Raced:
            # A row left ``expected`` between the read and the write (a database that does not
            # lock rows): the batch was rolled back; each row is moved on its own instead.
            return [
                pk
                for pk in ids
                if self.move(pk, to=to, expected=expected, fields=fields, event=event) is not None
            ]
        return ids


class _Raced(Exception):
    pass
