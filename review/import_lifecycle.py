"""The allowed moves of an archive import; every status change goes through this.

``contentstudio.transitions.Lifecycle`` checks the table, moves the row with a conditional
UPDATE and writes an ImportEvent with from/to in the same transaction. One move stays in its
state on purpose: a worker taking over a run whose worker died (running -> running, conditional
on the heartbeat it saw; the run resumes after its last stored row).
"""

from __future__ import annotations

from contentstudio.transitions import Lifecycle
from review.models import ImportEvent, ImportRun, ImportStatus

S = ImportStatus
IMPORT_MOVES: dict[str, frozenset[str]] = {
    # Claimed by a worker (or run in-process); the source could not be read at all.
    S.QUEUED: frozenset({S.RUNNING, S.FAILED}),
    # Every row read; failed; taken over from a dead worker.
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.RUNNING}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
}

IMPORT_LIFECYCLE = Lifecycle(
    name="import",
    model=ImportRun,
    moves=IMPORT_MOVES,
    event_model=ImportEvent,
    event_fk="run",
)
