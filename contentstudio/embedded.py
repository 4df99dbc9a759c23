"""The embedded Celery workers: real workers in threads of the serving process.

With no REDIS_URL the broker is Celery's in-memory transport, which only reaches consumers in
the same process, so the studio runs its workers next to the web server: a request enqueues and
returns at once, the job runs asynchronously in a worker thread. One worker per queue, each
running one task at a time, as separate processes would: a long generation job never holds back
the checks of the drafts before it, and checks never compete with each other for the cores.
(Two Worker objects cannot share one Celery app, each rewrites the app's queue selection, so
the review worker gets an app of its own with the same configuration.)

On a real broker (tests and benchmarks on Redis) kombu drives one event loop per process, which
two worker threads would share and deadlock on; there a single worker consumes both queues with
two threads. Deployments on Redis run `celery worker` processes instead (see the README).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import warnings

from celery import Celery

logger = logging.getLogger(__name__)

_started: list[threading.Thread] = []
_workers: list[object] = []
_lock = threading.Lock()

EMBEDDED_QUEUES = ["generate", "review", "publish"]


def embedded_hostname(queue: str) -> str:
    # The same name across restarts lets a new process fail the jobs its predecessor died
    # with (see generation.tasks).
    return f"embedded-{queue}@{socket.gethostname()}"


def _app_for(queue: str, index: int) -> Celery:
    from contentstudio.celery import app

    if index == 0:
        return app
    # Tasks are shared_task: every app knows them. set_as_current=False keeps the main app
    # the one that tasks publish through.
    other = Celery(app.main, set_as_current=False)
    other.config_from_object("django.conf:settings", namespace="CELERY")
    return other


def _plan(queues: list[str]) -> list[tuple[Celery, list[str], str, str, int]]:
    """(app, queues, hostname, pool, concurrency) for each worker to start."""
    from contentstudio.celery import app

    if app.conf.broker_url.startswith("memory"):
        return [
            (_app_for(queue, index), [queue], embedded_hostname(queue), "solo", 1)
            for index, queue in enumerate(queues)
        ]
    return [(app, queues, embedded_hostname("-".join(queues)), "threads", len(queues))]


def worker_count(queues: list[str] | None = None) -> int:
    return len(_plan(queues or EMBEDDED_QUEUES))


def start_embedded_worker(queues: list[str] | None = None) -> list[threading.Thread]:
    """Start the worker threads, once per process."""
    # Celery warns when its worker runs as root; the embedded worker runs as whoever serves the
    # studio (a container's root, often), and the warning says nothing actionable there.
    warnings.filterwarnings("ignore", message="You're running the worker with superuser")
    with _lock:
        if _started:
            return list(_started)
        for app, worker_queues, hostname, pool, concurrency in _plan(queues or EMBEDDED_QUEUES):
            worker = app.Worker(
                hostname=hostname,
                queues=worker_queues,
                pool=pool,
                concurrency=concurrency,
                loglevel="WARNING",
                quiet=True,
                without_heartbeat=True,
                without_mingle=True,
                without_gossip=True,
                # The serving process owns signals and stdout.
                redirect_stdouts=False,
            )
            thread = threading.Thread(
                target=_run, args=(worker,), name=f"celery-{hostname}", daemon=True
            )
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
