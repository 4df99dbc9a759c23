"""Pages of the core domain: the project list (a project's home is the review app's)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from contentstudio.selectors import membership_role, project_list


@login_required
def project_list_view(request: HttpRequest) -> HttpResponse:
    projects = [
        (project, membership_role(user=request.user, project=project))
        for project in project_list(user=request.user)
    ]
    return render(request, "contentstudio/project_list.html", {"projects": projects})
