"""Template filters every app's pages share."""

from __future__ import annotations

from django import template

from contentstudio.durations import duration_text, seconds_text

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """{{ run.estimate.seconds|duration }} -> "about 1 h 50 min"."""
    return duration_text(seconds)


@register.filter
def elapsed(seconds: float | None) -> str:
    """A measured duration, without "about": "4 min"."""
    return duration_text(seconds, about=False)


@register.filter
def seconds(value: float | None) -> str:
    """A short measured time: {{ 1.23456789|seconds }} -> "1.2 s"."""
    return seconds_text(value)
