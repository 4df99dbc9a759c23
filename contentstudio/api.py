"""API plumbing shared by every app: one exception handler, the project list."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from contentstudio import keyset
from contentstudio.errors import Conflict, DomainError, InvalidTransition, PermissionDenied
from contentstudio.selectors import membership_role, project_list


def _first_message(value: Any) -> str:
    if isinstance(value, dict):
        key, inner = next(iter(value.items()), ("", ""))
        return f"{key}: {_first_message(inner)}" if key else ""
    if isinstance(value, list | tuple):
        return _first_message(value[0]) if value else ""
    return str(value)


def validation_response(fields: dict[str, Any]) -> Response:
    """400 with every field's messages under ``fields``; ``message`` names them all. The field
    keys are repeated at the top level for clients written before the code/message body."""
    message = "Invalid input: " + "; ".join(
        f"{name}: {_first_message(errors)}" for name, errors in fields.items()
    )
    body: dict[str, Any] = {"code": "invalid", "message": message, "fields": fields}
    for name, errors in fields.items():
        body.setdefault(name, errors)
    return Response(body, status=400)


_DOMAIN_CODES = {
    PermissionDenied: "permission_denied",
    InvalidTransition: "invalid_transition",
    Conflict: "conflict",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error is a JSON body with a ``code`` and a ``message`` (and ``detail``, as DRF
    writes it): domain errors with their status codes, Django and DRF validation errors as 400
    naming the fields."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return validation_response(dict(exc.message_dict))
        return validation_response({"non_field_errors": exc.messages})
    if isinstance(exc, DomainError):
        code = next((c for kind, c in _DOMAIN_CODES.items() if isinstance(exc, kind)), "invalid")
        body: dict[str, Any] = {"code": code, "message": exc.message, "detail": exc.message}
        if isinstance(exc, Conflict) and exc.current:
            body["current"] = exc.current
        return Response(body, status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        data = response.data
        fields = dict(data) if isinstance(data, dict) else {"non_field_errors": data}
        validated = validation_response(fields)
        validated.status_code = response.status_code
        return validated
    detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
    code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
    response.data = {"code": str(code), "message": str(detail), "detail": detail}
    return response


def etag(payload: bytes) -> str:
    return '"' + hashlib.sha256(payload).hexdigest()[:32] + '"'


def etag_response(
    request: Request, data: Any, *, status: int = 200, content_type: str | None = None
) -> Response | HttpResponse:
    """The response with a strong ETag of its body; 304 when the client has it already."""
    body = json.dumps(data, sort_keys=True, default=str).encode()
    tag = etag(body)
    if tag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponse(status=304)
    else:
        response = Response(data, status=status, content_type=content_type)
    response["ETag"] = tag
    return response


# Every list pages with ``limit`` (documented); ``page_size`` is accepted as its alias, because
# the publications API once documented it and scripts written against it must keep working.
PAGE_LIMIT_PARAMS = ("limit", "page_size")


def page_limit(request: Request, *, default: int = 50, maximum: int = 200) -> int:
    """The page size a list request asked for. Raises Django's ValidationError naming the
    parameter that was given when it is not a whole number from 1 to ``maximum``."""
    for name in PAGE_LIMIT_PARAMS:
        raw = request.query_params.get(name)
        if raw:
            if not raw.isdigit() or not 1 <= int(raw) <= maximum:
                raise DjangoValidationError({name: f"A whole number from 1 to {maximum}."})
            return int(raw)
    return default


class LimitPagination(LimitOffsetPagination):
    """Offset pages whose size is ``page_limit`` (a bad limit is a 400, not ignored)."""

    def get_limit(self, request: Request) -> int:
        return page_limit(request, default=self.default_limit or 50, maximum=200)


def keyset_page_response(
    request: Request,
    rows: QuerySet[Any],
    *,
    ordering: str,
    serialize: Callable[[list[Any]], Any],
    max_limit: int = 200,
) -> Response | HttpResponse:
    """One keyset page of ``rows`` as ``{"next": url or null, "results": [...]}``, with an ETag.

    ``limit`` (1..max_limit, default 50; ``page_size`` is its alias) and ``cursor`` come from
    the query; the ``next`` link repeats the query with the next cursor, so a client follows it
    unchanged."""
    try:
        size = page_limit(request, maximum=max_limit)
        page, next_cursor = keyset.page(
            rows, cursor=request.query_params.get("cursor"), ordering=ordering, size=size
        )
    except DjangoValidationError as exc:
        return validation_response(dict(exc.message_dict))
    next_url = None
    if next_cursor:
        params = request.query_params.copy()
        params["cursor"] = next_cursor
        next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
    return etag_response(request, {"next": next_url, "results": serialize(page)})


class ProjectOut(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    content_type = serializers.CharField()
    role = serializers.CharField()


class ProjectListApi(APIView):
    @extend_schema(responses=ProjectOut(many=True))
    def get(self, request: Request) -> Response:
        rows = [
            {
                "slug": p.slug,
                "name": p.name,
                "content_type": p.content_type,
                "role": membership_role(user=request.user, project=p),
            }
            for p in project_list(user=request.user)
        ]
        return Response(ProjectOut(rows, many=True).data)
