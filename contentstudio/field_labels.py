"""Error summaries that name fields as the form labels them, never by their internal keys.

Services raise ``ValidationError`` keyed by the API's field paths ("variables.headline",
"settings.top_p"), which an API client needs; a page's summary shows the label the person sees
beside the field instead. A page passes the labels it knows; any other key is made readable.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import NON_FIELD_ERRORS


def _readable(part: str) -> str:
    return part.replace("_", " ").strip().capitalize()


def field_label(field: str, labels: Mapping[str, str] | None = None) -> str:
    """``labels[field]`` when given; else the path made readable: "settings.top_p" -> "Top p",
    "variables.2" -> "Variables, item 3"."""
    labels = labels or {}
    if field in labels:
        return labels[field]
    if field == NON_FIELD_ERRORS:
        return "This form"
    head, _, tail = field.rpartition(".")
    if tail.isdigit():
        return f"{field_label(head, labels)}, item {int(tail) + 1}" if head else f"Item {tail}"
    return _readable(tail)


def labelled_errors(
    errors: Mapping[str, list[str]], labels: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """(label, message) pairs for an error summary."""
    return [
        (field_label(field, labels), message) for field, msgs in errors.items() for message in msgs
    ]
