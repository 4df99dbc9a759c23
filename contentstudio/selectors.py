"""Reads of the core domain, every one scoped to what the user may see."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from contentstudio.errors import PermissionDenied
from contentstudio.models import ApiToken, Membership, Project, Role, TokenScope, role_at_least

# Set on the user object of a request authenticated by an API token (contentstudio.tokens).
TOKEN_ATTRIBUTE = "_contentstudio_token"  # noqa: S105 - an attribute name


def request_token(user: AbstractBaseUser | AnonymousUser) -> ApiToken | None:
    """The API token a request was authenticated with, or None for a browser session."""
    return getattr(user, TOKEN_ATTRIBUTE, None)


def project_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    token = request_token(user)
    if token is not None:
        # A project's token sees that project only, whatever else its creator belongs to.
        return Project.objects.filter(pk=token.project_id, memberships__user=user)
    return Project.objects.filter(memberships__user=user).order_by("name")


def membership_role(*, user: AbstractBaseUser | AnonymousUser, project: Project) -> str | None:
    """The user's role in ``project``, or None when they are not a member.

    Superusers act as admins everywhere: they run the installation.
    """
    if not user.is_authenticated:
        return None
    token = request_token(user)
    if token is not None:
        return _token_role(user, token, project)
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


def _token_role(user: AbstractBaseUser, token: ApiToken, project: Project) -> str | None:
    """A token acts in its own project only, as a viewer (read) or at most an editor
    (read-write), and never above what its creator holds there now: a creator who leaves the
    project takes the token's access with them."""
    if project.pk != token.project_id:
        return None
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
    held = cache[project.pk]
    if held is None and getattr(user, "is_superuser", False):
        held = Role.ADMIN  # superusers run the installation (see membership_role)
    if held is None:
        return None
    cap = Role.EDITOR if token.scope == TokenScope.READ_WRITE else Role.VIEWER
    return cap if role_at_least(held, cap) else held


def require_role(
    *, user: AbstractBaseUser | AnonymousUser, project: Project, minimum: str = Role.VIEWER
) -> str:
    """The user's role, or Http404 for non-members (no leak that the project exists) and
    PermissionDenied for members whose role is below ``minimum``."""
    role = membership_role(user=user, project=project)
    if role is None:
        raise Http404("No such project.")
    if not role_at_least(role, minimum):
        raise PermissionDenied(_refusal(user, minimum))
    return role


def _refusal(user: AbstractBaseUser | AnonymousUser, minimum: str) -> str:
    """Why a member may not: for a token, what would let it (a read-write token, a person's
    session), not a role the token's creator may well hold already."""
    needed = Role(minimum).label.lower()
    token = request_token(user)
    if token is None:
        return f"This needs the {needed} role or higher."
    if minimum == Role.ADMIN:
        return "API tokens cannot do this: a project admin does it in the studio."
    if token.scope == TokenScope.READ and role_at_least(minimum, Role.REVIEWER):
        return (
            "This token can only read: writing needs a read-write token "
            "(a project admin creates one on the API tokens page)."
        )
    return f"This token's creator does not hold the {needed} role in this project."


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
