"""What the review pages share: reading a form's numbers, people and dates, and error texts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from contentstudio.errors import DomainError


def error_text(exc: DomainError | ValidationError) -> str:
    return exc.message if isinstance(exc, DomainError) else " ".join(exc.messages)


def wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def assignee_and_due(request: HttpRequest) -> tuple[Any, Any]:
    username = request.POST.get("assignee", "").strip()
    assignee = None
    if username:
        assignee = get_user_model().objects.filter(username=username).first()
        if assignee is None:
            raise ValidationError({"assignee": f"No user {username!r}."})
    due_raw = request.POST.get("due_at", "").strip()
    due_at = None
    if due_raw:
        parsed = parse_datetime(due_raw) or (
            parse_datetime(due_raw + ":00") if len(due_raw) == 16 else None
        )
        if parsed is None:
            raise ValidationError({"due_at": f"{due_raw!r} is not a date and time."})
        due_at = timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed
    return assignee, due_at
