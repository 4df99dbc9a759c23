"""Is every queue served? What the banner on every page and the workers page say.

A worker that died used to leave drafts *Checking* with nothing on any page. Now:

- Embedded studio: the supervisor in this process knows which worker is down, why, and when it
  starts again (``contentstudio.embedded``); staff can start it at once.
- Worker processes (Redis): each writes a heartbeat row (``WorkerBeat``) every
  ``WORKER_HEARTBEAT_INTERVAL`` from a timer thread, from its start to its shutdown. A queue none
  of whose workers has beaten within ``WORKER_STALE_AFTER`` is down, whatever killed it.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections
from django.http import HttpRequest
from django.utils import timezone

from contentstudio.heartbeat import Heartbeat
from contentstudio.workers import QUEUES

logger = logging.getLogger(__name__)

# What stops while a queue has no worker, in the words of the people waiting for it.
STOPPED = {
    "generate": "new drafts are not written",
    "review": "drafts are not checked (they stay Checking)",
    "publish": "nothing is delivered to publishing systems",
}


@dataclass(frozen=True)
class WorkerRow:
    """One worker on the workers page."""

    name: str
    queues: list[str]
    # "running", "starting", "down" (embedded: waiting to start again), "stopped", "silent"
    state: str
    since: datetime | None
    error: str = ""
    restarts: int = 0
    next_start_at: datetime | None = None
    pid: int = 0


@dataclass(frozen=True)
class Alert:
    queue: str
    # For everyone: what is down and what that stops.
    message: str
    # For staff only: the error, where to look, what to run.
    detail: str
    # Embedded: staff may start the worker now.
    restartable: bool = False


def embedded() -> bool:
    return bool(settings.CELERY_EMBEDDED)


def workers() -> list[WorkerRow]:
    if embedded():
        from contentstudio import embedded as embedded_workers

        return [
            WorkerRow(
                name=s.hostname,
                queues=s.queue.split("-"),
                state=s.state,
                since=s.since,
                error=s.error,
                restarts=s.restarts,
                next_start_at=s.next_start_at,
                pid=os.getpid(),
            )
            for s in embedded_workers.status()
        ]
    from contentstudio.models import WorkerBeat

    stale = timezone.now() - timezone.timedelta(seconds=settings.WORKER_STALE_AFTER)
    rows = []
    for beat in WorkerBeat.objects.all():
        if beat.stopped_at is not None:
            state, since = "stopped", beat.stopped_at
        elif beat.beat_at < stale:
            state, since = "silent", beat.beat_at
        else:
            state, since = "running", beat.started_at
        rows.append(
            WorkerRow(name=beat.name, queues=beat.queues, state=state, since=since, pid=beat.pid)
        )
    return rows


def alerts() -> list[Alert]:
    """One alert per queue that no worker serves now ([] when all are served)."""
    if embedded():
        found = []
        for row in workers():
            if row.state != "down":
                continue
            when = ""
            if row.next_start_at is not None:
                left = max(0, round((row.next_start_at - timezone.now()).total_seconds()))
                when = f" It starts again by itself in {left} s."
            for queue in row.queues:
                found.append(
                    Alert(
                        queue=queue,
                        message=(
                            f"The {queue} worker stopped: {STOPPED.get(queue, 'its tasks wait')}."
                            f"{when}"
                        ),
                        detail=(
                            f"{row.name} stopped at {timezone.localtime(row.since):%H:%M:%S} "
                            f"on {row.error} (restarted {row.restarts} times; the server log "
                            "has the traceback)."
                        ),
                        restartable=True,
                    )
                )
        return found
    # Worker processes: every page asks, so the answer is kept a few seconds.
    cached = cache.get("contentstudio:worker-alerts")
    if cached is None:
        cached = _process_alerts()
        cache.set("contentstudio:worker-alerts", cached, timeout=5)
    return cached


def _process_alerts() -> list[Alert]:
    rows = workers()
    found = []
    for queue in QUEUES:
        serving = [row for row in rows if queue in row.queues]
        if any(row.state == "running" for row in serving):
            continue
        last = max(serving, key=lambda row: row.since or timezone.now(), default=None)
        seen = (
            f"{last.name} was last heard from at {timezone.localtime(last.since):%Y-%m-%d %H:%M:%S}"
            f" ({last.state})."
            if last is not None and last.since is not None
            else "No worker has reported for it yet."
        )
        found.append(
            Alert(
                queue=queue,
                message=f"No worker serves the {queue} queue: {STOPPED[queue]}.",
                detail=f"{seen} Start the workers with `make worker` (one process per queue).",
            )
        )
    return found


def context(request: HttpRequest) -> dict[str, Any]:
    """Template context processor: ``worker_alerts`` for signed-in people."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    try:
        return {"worker_alerts": alerts()}
    except Exception:  # the banner must never be what breaks a page
        logger.exception("worker alerts could not be read")
        return {}


# --- The heartbeat of a worker process ---------------------------------------------------------

_beats: dict[str, Heartbeat] = {}
_beats_lock = threading.Lock()


def worker_started(*, name: str, queues: list[str]) -> None:
    """At a worker's start (``worker_ready``): write its row now and from a timer thread every
    ``WORKER_HEARTBEAT_INTERVAL``. Not for the embedded studio (the supervisor knows)."""
    from contentstudio.models import WorkerBeat

    if embedded() or not name:
        return
    pid = os.getpid()
    now = timezone.now()
    fields = {"queues": sorted(queues), "pid": pid, "started_at": now, "beat_at": now}
    WorkerBeat.objects.update_or_create(name=name, defaults={**fields, "stopped_at": None})

    def beat() -> bool:
        # This thread lives as long as the worker: drop a connection the database closed
        # (a restart) rather than fail every beat after it.
        close_old_connections()
        at = timezone.now()
        if not WorkerBeat.objects.filter(name=name, pid=pid).update(beat_at=at, stopped_at=None):
            WorkerBeat.objects.update_or_create(name=name, defaults={**fields, "beat_at": at})
        return True

    heartbeat = Heartbeat(
        beat, interval=settings.WORKER_HEARTBEAT_INTERVAL, name=f"worker-{name}", beat_now=False
    )
    with _beats_lock:
        previous = _beats.pop(name, None)
        _beats[name] = heartbeat.__enter__()
    if previous is not None:
        previous.__exit__(None, None, None)


def worker_stopped(*, name: str) -> None:
    """At a clean shutdown: stop beating and say so (a killed worker just goes silent)."""
    from contentstudio.models import WorkerBeat

    with _beats_lock:
        heartbeat = _beats.pop(name, None)
    if heartbeat is None:
        return
    heartbeat.__exit__(None, None, None)
    WorkerBeat.objects.filter(name=name, pid=os.getpid()).update(stopped_at=timezone.now())
