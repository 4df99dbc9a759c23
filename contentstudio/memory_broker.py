"""Kombu's in-memory transport, woken by a new message instead of polling for one.

The embedded studio's broker (no REDIS_URL). Kombu's virtual transports sleep
``polling_interval`` whenever the queues are empty, so a job waited up to that long (10 ms here,
5 ms on average) before a worker took it: a fifth of the time to a first token when the engine
prefills a prompt in 30 ms. Here every put bumps a counter under a condition, and an idle worker
waits on that condition, so it takes a message as soon as it is put. ``polling_interval`` stays
as the longest wait (the worker's own timeouts), not the usual delay, and idle workers no longer
wake up a hundred times a second.
"""

from __future__ import annotations

import threading
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import memory

_arrived = threading.Condition()
_puts = 0


def _notify() -> None:
    global _puts
    with _arrived:
        _puts += 1
        _arrived.notify_all()


class Channel(memory.Channel):
    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        super()._put(queue, message, **kwargs)
        _notify()

    def _put_fanout(self, *args: Any, **kwargs: Any) -> None:
        super()._put_fanout(*args, **kwargs)
        _notify()

    # A worker whose prefetch slots are all taken cannot consume: an ack, a reject or a new
    # prefetch count frees one, and a message already waiting must then be taken at once.
    def basic_ack(self, *args: Any, **kwargs: Any) -> None:
        super().basic_ack(*args, **kwargs)
        _notify()

    def basic_reject(self, *args: Any, **kwargs: Any) -> None:
        super().basic_reject(*args, **kwargs)
        _notify()

    def basic_qos(self, *args: Any, **kwargs: Any) -> None:
        super().basic_qos(*args, **kwargs)
        _notify()


class Transport(memory.Transport):
    Channel = Channel

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """Kombu's loop (``virtual.Transport.drain_events``), waiting for a put, not sleeping."""
        started = monotonic()
        get = self.cycle.get
        longest = self.polling_interval or 1.0
        while True:
            # Read the counter before looking: a put after the look changes it, so it is never
            # slept through.
            with _arrived:
                seen = _puts
            try:
                get(self._deliver, timeout=timeout)
                return
            except Empty:
                pass
            wait = longest
            if timeout is not None:
                left = timeout - (monotonic() - started)
                if left <= 0:
                    raise TimeoutError()  # socket.timeout, as kombu raises
                wait = min(wait, left)
            with _arrived:
                if _puts == seen:
                    _arrived.wait(wait)
