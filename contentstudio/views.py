"""Pages of the core domain: the project list and a project's home page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from contentstudio.models import Role, role_at_least
from contentstudio.selectors import membership_role, project_get, project_list
from generation import selectors as gen_selectors
from generation.forms import generation_context


@login_required
def project_list_view(request: HttpRequest) -> HttpResponse:
    projects = [
        (project, membership_role(user=request.user, project=project))
        for project in project_list(user=request.user)
    ]
    return render(request, "contentstudio/project_list.html", {"projects": projects})


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    context = {
        "project": project,
        "role": role,
        "can_generate": role_at_least(role, Role.EDITOR),
        "is_admin": role_at_least(role, Role.ADMIN),
        "jobs": gen_selectors.project_jobs(project_id=project.pk),
        "drafts": gen_selectors.project_drafts(project_id=project.pk),
    }
    if context["can_generate"]:
        context.update(generation_context(project=project))
    return render(request, "contentstudio/project_detail.html", context)
