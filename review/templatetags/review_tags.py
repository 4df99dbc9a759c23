"""Template filters of the review app."""

from __future__ import annotations

from typing import Any

from django import template

from review.checks import language
from review.lifecycle import ACTIONS, status_label
from review.models import CommentKind

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


# What the history says for the actions that are not moves of the lifecycle table.
_EVENT_LABELS = {
    "edit": "edited the text",
    "comment": "commented",
    "assign": "assigned the draft",
    "unassign": "removed the assignment",
    "regenerate": "asked for a new version (regenerate)",
    "check": "started the checks",
}


@register.filter
def event_label(event: Any) -> str:
    """A history line's verb: "Checks passed", "recommends approval", never a raw name."""
    if event.action == "recommend":
        kind = (event.data or {}).get("kind", "")
        return CommentKind(kind).label.lower() if kind in CommentKind.values else "recommends"
    if event.action in _EVENT_LABELS:
        return _EVENT_LABELS[event.action]
    action = ACTIONS.get(event.action)
    return action.label if action is not None else event.action.replace("_", " ")


@register.filter
def dict_get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if hasattr(mapping, "get") else None


_QUOTES = "\"'“”‘’«»„"


@register.filter
def quoted(text: str) -> str:
    """``text`` in curly quotes, unless it already starts and ends with quote marks (a quoted
    claim keeps its own, instead of showing doubled ones)."""
    text = str(text)
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        return text
    return f"“{text}”"


@register.filter
def language_name(code: str) -> str:
    """ "Chinese (zh)" for "zh"; "not detected yet" for an empty code."""
    if not code:
        return "not detected yet"
    return f"{language.language_name(code)} ({code})"
