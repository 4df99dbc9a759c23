"""The embedded Celery workers: real workers in threads of the serving process, supervised.

With no REDIS_URL the broker is Celery's in-memory transport, which only reaches consumers in
the same process, so the studio runs its workers next to the web server: a request enqueues and
returns at once, the job runs asynchronously in a worker thread. One worker per queue, each with
the pool ``contentstudio.workers`` plans for it, as ``make worker`` runs one process per queue:
a long generation job or a hanging receiver never holds back a check or a delivery.

Two Worker objects cannot share one Celery app (each rewrites the app's queue selection), so
each queue's worker has an app of its own with the same configuration. Celery keeps some worker
state per process, though: ``setup_worker_optimizations`` points one process-wide registry
(``celery.app.trace._localized``: tasks, accepted content, hostname) at the app of the worker
being built, and makes that app the default. Every worker traced its tasks through whichever
registry was built last: a task received by the generate worker while the review worker was
being built found the review app's task with no tracer yet (``__trace__`` is set when a
worker's consumer starts), and the worker died with ``TypeError: 'NoneType' object is not
callable`` in ``fast_trace_task`` (about one start in three); once all were up, every task ran
under the last worker's name. Here each worker's pool traces with its own app's registry and
name, and the main app stays the default.

Each worker runs under a supervisor thread: a worker that stops on an error is built and
started again after 1 s, doubled while it keeps failing within a minute of its start (at most
60 s); ``status()`` says which are down, and why, for the banner every page shows
(``contentstudio.liveness``). ``restart_now()`` skips the wait.

On a real broker (tests and benchmarks on Redis) kombu drives one event loop per process, which
two worker threads would share and deadlock on; there a single worker consumes every queue.
Deployments on Redis run ``make worker`` processes instead (see the README).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery import Celery
from celery.app.trace import fast_trace_task
from celery.concurrency import get_implementation
from celery.signals import worker_ready
from django.utils import timezone
from kombu.serialization import prepare_accept_content

from contentstudio.workers import QUEUES, worker_pools

logger = logging.getLogger(__name__)

EMBEDDED_QUEUES = list(QUEUES)
RESET_AFTER = 60.0
MAX_DELAY = 60.0


def embedded_hostname(queue: str) -> str:
    # The same name across restarts lets a new process fail the jobs its predecessor died
    # with (see generation.tasks).
    return f"embedded-{queue}@{socket.gethostname()}"


@dataclass(frozen=True)
class WorkerState:
    """What the pages say about one embedded worker."""

    queue: str
    hostname: str
    # "starting", "running", "down" (stopped on an error; restarts at next_start_at), "stopped"
    state: str
    since: datetime
    restarts: int = 0
    error: str = ""
    next_start_at: datetime | None = None


def _own_registry_pool(base: type) -> type:
    """``base`` (a Celery pool class) tracing with its own worker's registry and name, not the
    process-wide one that the last worker built points at."""

    class OwnRegistryPool(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # The worker hands every pool its (app, hostname).
            app, hostname = self.options["initargs"]
            accept = prepare_accept_content(app.conf.accept_content)
            self._trace = partial(fast_trace_task, _loc=[app._tasks, accept, hostname])

        def apply_async(self, target: Any, args: Any = None, kwargs: Any = None, **options: Any):
            if target is fast_trace_task:
                target = self._trace
            return super().apply_async(target, args, kwargs, **options)

    OwnRegistryPool.__name__ = OwnRegistryPool.__qualname__ = f"OwnRegistry{base.__name__}"
    return OwnRegistryPool


class _Supervised:
    """One worker and the thread that runs it again when it stops on an error."""

    def __init__(self, *, app: Celery, queues: list[str], hostname: str, pool: str, count: int):
        self.app = app
        self.queues = queues
        self.hostname = hostname
        self.pool = pool
        self.concurrency = count
        self.worker: Any = None
        self.stopping = False
        self.wake = threading.Event()
        self.state = WorkerState(
            queue="-".join(queues), hostname=hostname, state="starting", since=timezone.now()
        )
        self.thread = threading.Thread(target=self._loop, name=f"celery-{hostname}", daemon=True)

    def _set(self, **changes: Any) -> None:
        with _lock:
            self.state = replace(self.state, since=timezone.now(), **changes)

    def _build(self) -> Any:
        from contentstudio.celery import app as main_app

        # One at a time: building a worker rewrites process-wide Celery state, which is put
        # back right after (the main app stays the one tasks are sent through).
        with _build_lock:
            worker = self.app.Worker(
                hostname=self.hostname,
                queues=self.queues,
                pool=_own_registry_pool(get_implementation(self.pool)),
                concurrency=self.concurrency,
                loglevel="WARNING",
                quiet=True,
                without_heartbeat=True,
                without_mingle=True,
                without_gossip=True,
                # The serving process owns signals and stdout.
                redirect_stdouts=False,
            )
            main_app.set_default()
            main_app.set_current()
        return worker

    def _run_once(self) -> str:
        """Build and run the worker until it stops; the error it stopped on ("" if none)."""
        try:
            worker = self.worker = self._build()
        except Exception as exc:
            logger.exception("embedded worker %s could not be built", self.hostname)
            return f"{type(exc).__name__}: {exc}"
        if self.stopping:
            return ""
        # Celery logs an unrecoverable error and returns rather than raising: keep the error
        # on its way out of the worker's blueprint.
        stopped_on: list[BaseException] = []
        start = worker.blueprint.start

        def start_and_keep_error(parent: Any) -> Any:
            try:
                return start(parent)
            except Exception as exc:
                stopped_on.append(exc)
                raise

        worker.blueprint.start = start_and_keep_error
        worker.start()
        if stopped_on:
            return f"{type(stopped_on[0]).__name__}: {stopped_on[0]}"
        return "" if worker.exitcode in (None, 0) else f"exit code {worker.exitcode}"

    def _loop(self) -> None:
        failures = 0
        while not self.stopping:
            started = time.monotonic()
            error = self._run_once()
            if self.stopping:
                break
            if time.monotonic() - started > RESET_AFTER:
                failures = 0
            delay = min(_first_delay() * 2**failures, max(MAX_DELAY, _first_delay()))
            failures += 1
            error = error or "stopped without an error"
            logger.error(
                "embedded worker %s stopped (%s); starting it again in %.0f s",
                self.hostname,
                error,
                delay,
            )
            self._set(
                state="down",
                error=error[:2000],
                next_start_at=timezone.now() + timedelta(seconds=delay),
            )
            self.wake.wait(delay)
            self.wake.clear()
            if self.stopping:
                break
            self._set(state="starting", restarts=self.state.restarts + 1, next_start_at=None)
        self._set(state="stopped", next_start_at=None)

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        if self.worker is not None:
            with contextlib.suppress(Exception):  # best effort at shutdown
                self.worker.stop(in_sighandler=False)


_supervised: list[_Supervised] = []
_lock = threading.Lock()
_build_lock = threading.Lock()


def _first_delay() -> float:
    from django.conf import settings

    return float(settings.EMBEDDED_WORKER_RESTART_DELAY)


@worker_ready.connect
def _mark_running(sender: Any = None, **kwargs: Any) -> None:
    hostname = getattr(sender, "hostname", None)
    for supervised in list(_supervised):
        if supervised.hostname == hostname and supervised.state.state != "running":
            supervised._set(state="running", error="", next_start_at=None)


def _plan(queues: list[str]) -> list[tuple[list[str], str, str, int]]:
    """(queues, hostname, pool, concurrency) for each worker to start."""
    from contentstudio.celery import app

    pools = worker_pools(queues)
    if app.conf.broker_url.startswith("memory"):
        return [([p.queue], embedded_hostname(p.queue), p.pool, p.concurrency) for p in pools]
    count = sum(pool.concurrency for pool in pools)
    return [(list(queues), embedded_hostname("-".join(queues)), "threads", count)]


def _app(index: int) -> Celery:
    from contentstudio.celery import app

    if index == 0:
        return app
    # Tasks are shared_task: every app knows them. set_as_current=False keeps the main app the
    # one that tasks publish through.
    own = Celery(app.main, set_as_current=False)
    own.config_from_object("django.conf:settings", namespace="CELERY")
    return own


def worker_count(queues: list[str] | None = None) -> int:
    return len(_plan(queues or EMBEDDED_QUEUES))


def start_embedded_worker(queues: list[str] | None = None) -> list[threading.Thread]:
    """Start the supervised worker threads, once per process."""
    # Celery warns when its worker runs as root; the embedded worker runs as whoever serves the
    # studio (a container's root, often), and the warning says nothing actionable there.
    warnings.filterwarnings("ignore", message="You're running the worker with superuser")
    with _lock:
        if _supervised:
            return [s.thread for s in _supervised]
        for index, (worker_queues, hostname, pool, concurrency) in enumerate(
            _plan(queues or EMBEDDED_QUEUES)
        ):
            _supervised.append(
                _Supervised(
                    app=_app(index),
                    queues=worker_queues,
                    hostname=hostname,
                    pool=pool,
                    count=concurrency,
                )
            )
        supervised = list(_supervised)
    for one in supervised:
        one.thread.start()
    return [s.thread for s in supervised]


def status() -> list[WorkerState]:
    """The state of each embedded worker of this process ([] where none was started)."""
    with _lock:
        return [s.state for s in _supervised]


def restart_now() -> int:
    """Start every worker that is down now instead of after its wait; returns how many."""
    woken = 0
    with _lock:
        for supervised in _supervised:
            if supervised.state.state == "down":
                supervised.wake.set()
                woken += 1
    return woken


def stop_embedded_worker() -> None:
    with _lock:
        supervised = list(_supervised)
    for one in supervised:
        one.stop()
    for one in supervised:
        one.thread.join(timeout=10)
    with _lock:
        _supervised.clear()
