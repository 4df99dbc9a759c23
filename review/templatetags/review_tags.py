"""Template filters of the review app."""

from __future__ import annotations

from django import template

from review.lifecycle import status_label

register = template.Library()


@register.filter
def draft_status(status: str) -> str:
    """The human name of a draft's stored status: ``{{ draft.status|draft_status }}``."""
    return status_label(status)


@register.filter
def percent(value: float | None) -> str:
    """A 0..1 share as a whole percent: ``{{ 0.314|percent }}`` → ``31%``."""
    try:
        return f"{float(value or 0.0):.0%}"
    except (TypeError, ValueError):
        return ""
