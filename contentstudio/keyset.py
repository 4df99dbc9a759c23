"""Keyset ("cursor") pagination on (updated_at, id), for any model that has both.

The cost of a page does not grow with its depth (no OFFSET), and paging stays correct while
rows change: an item updated meanwhile moves to the end of an ascending walk, where a sync sees
it again, instead of shifting every later page as an offset would.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.utils.dateparse import parse_datetime

# ordering parameter -> descending?
ORDERINGS = {"updated_at": False, "-updated_at": True}


def order(rows: QuerySet[Any], ordering: str) -> QuerySet[Any]:
    if ORDERINGS[ordering]:
        return rows.order_by("-updated_at", "-id")
    return rows.order_by("updated_at", "id")


def encode_cursor(row: Model, ordering: str) -> str:
    raw = json.dumps([ordering, row.updated_at.isoformat(), row.pk])  # type: ignore[attr-defined]
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def apply_cursor(rows: QuerySet[Any], cursor: str, ordering: str) -> QuerySet[Any]:
    """Rows after the cursor's (updated_at, id); a ValidationError naming ``cursor`` for one
    that was not made by ``encode_cursor`` with the same ordering."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        cursor_ordering, stamp, pk = json.loads(base64.urlsafe_b64decode(padded))
        at = parse_datetime(stamp)
        if at is None or cursor_ordering != ordering or not isinstance(pk, int):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise ValidationError(
            {"cursor": "Invalid cursor: use the next link of the previous page unchanged."}
        ) from None
    # Written as a range on updated_at (which an index serves) minus the ties already seen,
    # rather than an OR, which planners may not turn into an index range.
    if ORDERINGS[ordering]:
        return rows.filter(updated_at__lte=at).exclude(updated_at=at, id__gte=pk)
    return rows.filter(updated_at__gte=at).exclude(updated_at=at, id__lte=pk)


def page(
    rows: QuerySet[Any], *, cursor: str | None, ordering: str, size: int
) -> tuple[list[Any], str | None]:
    """One page of ``rows`` (already filtered, not yet ordered) and the cursor of the next."""
    rows = order(rows, ordering)
    if cursor:
        rows = apply_cursor(rows, cursor, ordering)
    found = list(rows[: size + 1])
    more = len(found) > size
    found = found[:size]
    return found, encode_cursor(found[-1], ordering) if more else None
