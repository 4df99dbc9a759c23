"""Periodic work (``settings.CELERY_BEAT_SCHEDULE``) in both set-ups, with Celery's own beat.

- Separate workers (``make worker``): the worker runs beat with ``--beat``.
- The embedded studio: beat runs in a thread of the serving process, next to the embedded
  workers, with the in-memory scheduler (nothing to persist: every entry is a sweep that finds
  its work in the database).

Entries are idempotent sweeps, so a second beat (two worker hosts each with ``--beat``) costs a
duplicate run, never a duplicate effect.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_service: object | None = None


def start_embedded_beat() -> object:
    """Start beat in a thread of this process (once); returns the running service."""
    global _service
    from celery.beat import EmbeddedService, Scheduler

    from contentstudio.celery import app

    with _lock:
        if _service is None:
            service = EmbeddedService(app, thread=True, scheduler_cls=Scheduler)
            service.start()
            _service = service
            logger.info("beat: %s", ", ".join(sorted(app.conf.beat_schedule)))
        return _service


def stop_embedded_beat() -> None:
    global _service
    with _lock:
        if _service is not None:
            _service.stop()  # type: ignore[attr-defined]
            _service = None
