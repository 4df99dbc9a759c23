"""A project's home page: its generate form, recent jobs and drafts with their review states."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from contentstudio.models import Role, role_at_least
from contentstudio.selectors import project_get
from generation import selectors as gen_selectors
from generation.forms import generation_context


@login_required
def project_home(request: HttpRequest, slug: str) -> HttpResponse:
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
    return render(request, "review/project_home.html", context)
