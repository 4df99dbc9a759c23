"""API plumbing shared by every app: one exception handler, the project list."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from contentstudio.errors import Conflict, DomainError
from contentstudio.selectors import membership_role, project_list


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Domain errors to their status codes; Django ValidationErrors to 400 naming the fields."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            body: Any = dict(exc.message_dict)
        else:
            body = {"non_field_errors": exc.messages}
        return Response(body, status=400)
    if isinstance(exc, DomainError):
        body = {"detail": exc.message}
        if isinstance(exc, Conflict) and exc.current:
            body["current"] = exc.current
        return Response(body, status=exc.status_code)
    return drf_exception_handler(exc, context)


class ProjectOut(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    content_type = serializers.CharField()
    role = serializers.CharField()


class ProjectListApi(APIView):
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
