"""Pages of the core domain: the project list (a project's home is the review app's)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from contentstudio import liveness
from contentstudio.errors import PermissionDenied
from contentstudio.selectors import membership_role, project_list


@login_required
def project_list_view(request: HttpRequest) -> HttpResponse:
    projects = [
        (project, membership_role(user=request.user, project=project))
        for project in project_list(user=request.user)
    ]
    return render(request, "contentstudio/project_list.html", {"projects": projects})


def _require_staff(request: HttpRequest) -> None:
    # The workers serve the whole installation, not one project: its administrators' page.
    if not request.user.is_staff:
        raise PermissionDenied("Only the studio's administrators (staff) see and restart workers.")


@login_required
def workers_view(request: HttpRequest) -> HttpResponse:
    """Every worker, its queues and state: from this process's supervisor (embedded) or from
    the heartbeats the worker processes write."""
    _require_staff(request)
    return render(
        request,
        "contentstudio/workers.html",
        {
            "workers": liveness.workers(),
            "embedded": liveness.embedded(),
            "stale_after": settings.WORKER_STALE_AFTER,
        },
    )


@login_required
@require_POST
def workers_restart(request: HttpRequest) -> HttpResponse:
    """Embedded: start every worker that is down now, instead of after its backoff."""
    _require_staff(request)
    if liveness.embedded():
        from contentstudio import embedded

        count = embedded.restart_now()
        if count:
            messages.success(request, f"Starting {count} worker(s) again.")
        else:
            messages.info(request, "No worker was down.")
    else:
        messages.error(request, "Workers run as processes of their own: restart them there.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = "workers"
    return redirect(back)


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
