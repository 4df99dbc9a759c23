"""Real-time publishing for every app: channel group names and the one publisher.

Any app announces changes through ``publish`` / ``publish_project_event``; websocket consumers
join the groups named here. The stream is best-effort (the in-memory layer drops messages past
its capacity): the database stays the source of truth, and clients resync from it.

Publishing never pays a new event loop per call: ``Publisher`` hands each group_send to one
long-lived loop (its own thread for Redis; the consumers' loop for the in-memory layer, whose
asyncio queues are not thread-safe) and does not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

# The event type of project-wide changes; a consumer handles it in ``project_event``.
PROJECT_EVENT = "project.event"


def job_group(job_id: int) -> str:
    """Watchers of one generation job's stream."""
    return f"job.{job_id}"


def project_group(project_id: int) -> str:
    """Watchers of a project: its queue, its pages (jobs, drafts, checks, imports, indexing)."""
    return f"project.{project_id}"


# --- Publisher --------------------------------------------------------------------------------


class Publisher:
    """Fire-and-forget group sends from worker threads, on one long-lived event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._consumer_loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[Future[Any]] = set()
        self.sent = 0

    def bind_consumer_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the loop the websocket consumers run in (needed for the in-memory layer)."""
        self._consumer_loop = loop

    def _loop_for(self, layer: Any) -> asyncio.AbstractEventLoop | None:
        if isinstance(layer, InMemoryChannelLayer):
            loop = self._consumer_loop
            # No consumer has connected in this process: nobody can be listening.
            return loop if loop is not None and not loop.is_closed() else None
        with self._lock:
            if self._own_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="stream-publisher", daemon=True
                )
                thread.start()
                self._own_loop = loop
            return self._own_loop

    def publish(self, group: str, message: dict[str, Any]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        loop = self._loop_for(layer)
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # called from the loop itself (an async consumer): just schedule
            task = loop.create_task(layer.group_send(group, message))
            task.add_done_callback(self._log_failure)
            self.sent += 1
            return
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        self.sent += 1

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
        self._log_failure(future)

    @staticmethod
    def _log_failure(future: Any) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            # Best-effort: a lost frame is recovered by the client's resync from the snapshot.
            logger.warning("stream publish failed: %s", exc)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every send handed over so far has completed (end of a job, tests)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending or time.monotonic() > deadline:
                return
            for future in pending:
                with contextlib.suppress(Exception):  # logged by _done
                    future.result(timeout=max(0.0, deadline - time.monotonic()))


publisher = Publisher()


def publish_project_event(project_id: int, payload: dict[str, Any]) -> None:
    """Tell every page watching a project (queue, project page) that something changed."""
    publisher.publish(project_group(project_id), {"type": PROJECT_EVENT, "payload": payload})
