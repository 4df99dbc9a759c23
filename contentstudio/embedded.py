"""The embedded Celery worker: a real worker in a thread of the serving process.

With no REDIS_URL the broker is Celery's in-memory transport, which only reaches consumers in
the same process, so the studio runs its worker next to the web server: a request enqueues and
returns at once, the job runs asynchronously in the worker thread. One worker consumes both
queues with two threads, so a long generation job does not hold back the checks of the drafts
before it. (Two Worker objects cannot share one app: each would rewrite the app's queue
selection.)
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

logger = logging.getLogger(__name__)

_started: list[threading.Thread] = []
_workers: list[object] = []
_lock = threading.Lock()

EMBEDDED_QUEUES = ["generate", "review"]


def embedded_hostname() -> str:
    # The same name across restarts lets a new process fail the jobs its predecessor died
    # with (see generation.tasks).
    return f"embedded@{socket.gethostname()}"


def start_embedded_worker(
    queues: list[str] | None = None, *, concurrency: int = 2
) -> list[threading.Thread]:
    """Start the worker thread, once per process."""
    from contentstudio.celery import app

    with _lock:
        if _started:
            return list(_started)
        worker = app.Worker(
            hostname=embedded_hostname(),
            queues=queues or EMBEDDED_QUEUES,
            pool="threads",
            concurrency=concurrency,
            loglevel="WARNING",
            quiet=True,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            # The serving process owns signals and stdout.
            redirect_stdouts=False,
        )
        thread = threading.Thread(target=_run, args=(worker,), name="celery-embedded", daemon=True)
        thread.start()
        _started.append(thread)
        _workers.append(worker)
        return list(_started)


def _run(worker: object) -> None:
    try:
        worker.start()  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - shown in the server log
        logger.exception("embedded worker stopped")


def stop_embedded_worker() -> None:
    with _lock:
        for worker in _workers:
            with contextlib.suppress(Exception):  # best effort at shutdown
                worker.stop(in_sighandler=False)  # type: ignore[attr-defined]
        for thread in _started:
            thread.join(timeout=10)
        _started.clear()
        _workers.clear()
