"""Reads of the core domain, every one scoped to what the user may see."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from contentstudio.errors import PermissionDenied
from contentstudio.models import Membership, Project, Role, role_at_least


def project_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(memberships__user=user).order_by("name")


def membership_role(*, user: AbstractBaseUser | AnonymousUser, project: Project) -> str | None:
    """The user's role in ``project``, or None when they are not a member.

    Superusers act as admins everywhere: they run the installation.
    """
    if not user.is_authenticated:
        return None
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    cache = getattr(user, "_contentstudio_roles", None)
    if cache is None:
        cache = {}
        user._contentstudio_roles = cache  # type: ignore[attr-defined]
    if project.pk not in cache:
        cache[project.pk] = (
            Membership.objects.filter(user=user, project=project)
            .values_list("role", flat=True)
            .first()
        )
    return cache[project.pk]


def require_role(
    *, user: AbstractBaseUser | AnonymousUser, project: Project, minimum: str = Role.VIEWER
) -> str:
    """The user's role, or Http404 for non-members (no leak that the project exists) and
    PermissionDenied for members whose role is below ``minimum``."""
    role = membership_role(user=user, project=project)
    if role is None:
        raise Http404("No such project.")
    if not role_at_least(role, minimum):
        raise PermissionDenied(f"This needs the {Role(minimum).label.lower()} role or higher.")
    return role


def project_get(
    *, user: AbstractBaseUser | AnonymousUser, slug: str, minimum: str = Role.VIEWER
) -> tuple[Project, str]:
    """The project with ``slug`` if the user may see it, with their role."""
    try:
        project = Project.objects.get(slug=slug)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None
    role = require_role(user=user, project=project, minimum=minimum)
    return project, role
