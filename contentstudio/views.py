"""Pages of the core domain: the project list (a project's home is the review app's)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from contentstudio.selectors import membership_role, project_list


@login_required
def project_list_view(request: HttpRequest) -> HttpResponse:
    projects = [
        (project, membership_role(user=request.user, project=project))
        for project in project_list(user=request.user)
    ]
    return render(request, "contentstudio/project_list.html", {"projects": projects})


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 400 (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a malformed request): the API
    answers with the same JSON error body as every other API error, pages with the error page."""
    too_big = isinstance(exception, RequestDataTooBig)
    status = 413 if too_big else 400
    message = (
        f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2**20} MB."
        if too_big
        else "The request could not be read."
    )
    if request.path.startswith("/api/"):
        code = "request_too_large" if too_big else "bad_request"
        return JsonResponse({"detail": message, "code": code, "message": message}, status=status)
    return render(request, "error.html", {"message": message, "status": status}, status=status)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for a path nothing serves: JSON under /api/ (like every API error), the page else."""
    message = "Nothing is served at this address."
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"code": "not_found", "message": message, "detail": message}, status=404
        )
    return render(request, "error.html", {"message": message, "status": 404}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """500: JSON under /api/; the error page else. The details are in the server log only."""
    message = "Something went wrong on the server; it has been logged."
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"code": "server_error", "message": message, "detail": message}, status=500
        )
    return render(request, "error.html", {"message": message, "status": 500}, status=500)
