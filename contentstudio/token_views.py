"""The API tokens page of a project: admins create (the key is shown once) and revoke."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from contentstudio import tokens
from contentstudio.errors import DomainError
from contentstudio.models import ApiToken, Role, TokenScope
from contentstudio.selectors import project_get


@login_required
def token_list(request: HttpRequest, slug: str) -> HttpResponse:
    # Admins only: even a token's name and prefix say which integrations exist.
    project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    errors: dict[str, list[str]] = {}
    new_key = None
    created = None
    if request.method == "POST":
        try:
            created, new_key = tokens.token_create(
                project=project,
                user=request.user,
                name=request.POST.get("name", ""),
                scope=request.POST.get("scope", ""),
            )
        except ValidationError as exc:
            errors = exc.message_dict
    return render(
        request,
        "contentstudio/tokens.html",
        {
            "project": project,
            "role": role,
            "tokens": ApiToken.objects.filter(project=project).select_related("created_by"),
            "scopes": TokenScope.choices,
            "errors": errors,
            "new_key": new_key,
            "created": created,
            "posted_name": request.POST.get("name", "") if errors else "",
        },
    )


@login_required
@require_POST
def token_revoke(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    token = get_object_or_404(ApiToken, pk=token_id, project=project)
    try:
        tokens.token_revoke(token=token, user=request.user)
        messages.success(request, f"Token “{token.name}” revoked; it no longer works.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("token_list", slug=slug)
