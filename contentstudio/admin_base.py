"""Admin building blocks shared by the apps.

Every admin of project rows is project-scoped: staff who are not superusers see only the
projects they administer (the admin must not show more than the studio would).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Model, QuerySet
from django.http import HttpRequest


def project_path(model: type[Model], depth: int = 4) -> str | None:
    """The ORM lookup from ``model`` to its Project ("" for Project itself), following forward
    foreign keys breadth-first; None for rows that belong to no project."""
    from contentstudio.models import Project

    queue: list[tuple[type[Model], str]] = [(model, "")]
    seen = {model}
    for _ in range(depth + 1):
        following: list[tuple[type[Model], str]] = []
        for current, path in queue:
            if current is Project:
                return path
            for field in current._meta.get_fields():
                related = getattr(field, "related_model", None)
                if not (field.many_to_one or field.one_to_one) or field.auto_created:
                    continue
                if related is None or related in seen or related is get_user_model():
                    continue
                seen.add(related)
                following.append((related, f"{path}__{field.name}" if path else field.name))
        queue = following
    return None


def admin_projects(user: Any) -> QuerySet[Any]:
    """The projects a non-superuser staff member may look at in the admin: those they are an
    admin of (the admin shows what only project admins see in the studio, tokens among them)."""
    from contentstudio.models import Project, Role

    return Project.objects.filter(memberships__user=user, memberships__role=Role.ADMIN)


class ProjectScopedAdmin(admin.ModelAdmin):
    """Superusers run the installation and see every row; other staff see the rows of the
    projects they administer, and may pick only those projects in forms."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        rows = super().get_queryset(request)
        path = project_path(self.model)
        if request.user.is_superuser or path is None:
            return rows
        mine = admin_projects(request.user)
        return rows.filter(**{f"{path}__in" if path else "pk__in": mine})

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        from contentstudio.models import Project

        if db_field.related_model is Project and not request.user.is_superuser:
            kwargs["queryset"] = admin_projects(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ReadOnlyAdmin(ProjectScopedAdmin):
    """Rows that change only through the services (jobs, drafts, audit trails, check results):
    visible in the admin, never edited there."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
