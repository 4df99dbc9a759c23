"""Durations as people read them: "about 1 h 50 min", never "6799 s" or "113.3 min".

One rule for every page, the command line and (mirrored in ``static/js/durations.js``, checked
against this in a browser test) the live pages: under a minute in seconds, under an hour in
minutes, then hours and minutes. Rounding is half up, as JavaScript's ``Math.round``, so the
server and the browser never disagree by a unit.
"""

from __future__ import annotations

import math


def _round(value: float) -> int:
    return math.floor(value + 0.5)


def duration_text(seconds: float | None, *, about: bool = True) -> str:
    """``seconds`` as "about 40 s", "about 12 min", "about 1 h 50 min" ("—" for None, "under a
    second" below half a second)."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    whole = max(0, _round(seconds))
    if whole == 0:
        return "under a second"
    if whole < 60:
        text = f"{whole} s"
    elif _round(whole / 60) < 60:
        text = f"{_round(whole / 60)} min"
    else:
        minutes = _round(whole / 60)
        hours, rest = divmod(minutes, 60)
        text = f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"about {text}" if about else text


def seconds_text(seconds: float | None) -> str:
    """A short measured time with the precision it deserves: "0.42 s", "3.1 s", "48 s", then as
    ``duration_text`` ("2 min"); "—" for None. Never a float's 15 decimals."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{_round(seconds)} s"
    return duration_text(seconds, about=False)
