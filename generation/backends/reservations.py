"""Reservations of this process's cores for ``generate`` calls that are about to start.

A caller reserves the cores when it commits to a call (the runner: when it claims a job), not
when the call starts, so that a backend choosing its threads per call (the ONNX backend's wide
session for a call that runs alone) also sees a call that is loading or rendering its prompt
beside it: two jobs submitted together were claimed within milliseconds, but the first reached
``generate`` first, took every core and then shared them with the second (three threads on two
cores). A call that turns out to compute elsewhere (a remote server) releases its reservation.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_reserved = 0
_lock = threading.Lock()


class Reservation:
    """One coming call's place in the count; ``release`` (idempotent) gives it up."""

    def __init__(self) -> None:
        global _reserved
        with _lock:
            _reserved += 1
        self._held = True

    def release(self) -> None:
        global _reserved
        with _lock:
            if self._held:
                _reserved -= 1
                self._held = False


@contextlib.contextmanager
def reserve() -> Iterator[Reservation]:
    reservation = Reservation()
    try:
        yield reservation
    finally:
        reservation.release()


def reserved() -> int:
    """How many calls hold a reservation in this process now."""
    with _lock:
        return _reserved
