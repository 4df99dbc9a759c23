"""A heartbeat: a timer thread that proves a piece of work is alive while it waits or runs.

Work that can take minutes (a job waiting behind the engine lock, a model loading, a long check)
writes its heartbeat from this thread, not from its own progress, so "no heartbeat for a while"
means the process died, never that it was busy. The periodic sweeps (generation.tasks,
review.tasks) fail or requeue work whose heartbeat stopped, whatever the worker's name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)


class Heartbeat:
    """``with Heartbeat(beat, interval=10): ...`` calls ``beat()`` now and every ``interval``
    seconds until the block ends. ``beat`` returns False when the work was taken away (failed by
    a sweep, cancelled): ``lost`` then tells the worker to stop writing."""

    def __init__(
        self,
        beat: Callable[[], bool | None],
        *,
        interval: float,
        name: str,
        beat_now: bool = True,
    ) -> None:
        self._beat = beat
        # False where the caller has just written the beat itself (a claim that sets the
        # heartbeat): the first beat is then one interval away, not a second write (and a new
        # database connection) while the work starts.
        self.beat_now = beat_now
        self.interval = interval
        self.name = name
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if connection.in_atomic_block:
            # The caller holds a transaction (a test, a management command): the rows it
            # claimed are invisible to another connection, and on SQLite that connection's
            # write would wait for this very transaction. Nothing can be proven from outside.
            return self
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            if not self.beat_now and self._stop.wait(self.interval):
                return
            while True:
                try:
                    if self._beat() is False:
                        self.lost = True
                        return
                except Exception:
                    # A missed beat is not fatal (the database may be briefly busy); several in
                    # a row make the work look stale, which is then the truth.
                    logger.warning("heartbeat %s failed", self.name, exc_info=True)
                if self._stop.wait(self.interval):
                    return
        finally:
            # This thread's own database connection must not outlive it.
            close_old_connections()
            connection.close()
