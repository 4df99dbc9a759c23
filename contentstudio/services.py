"""Writes of the core domain."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from contentstudio.models import ContentType, Membership, Project, Role


@transaction.atomic
def project_create(
    *,
    name: str,
    slug: str | None = None,
    description: str = "",
    content_type: str = ContentType.NEWS_REPORT,
    admin: AbstractBaseUser | None = None,
) -> Project:
    slug = slug or slugify(name)[:80]
    if not slug:
        raise ValidationError({"slug": "A slug is required."})
    if Project.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"A project with slug {slug!r} already exists."})
    if content_type not in ContentType.values:
        raise ValidationError({"content_type": f"Unknown content type {content_type!r}."})
    project = Project.objects.create(
        name=name, slug=slug, description=description, content_type=content_type
    )
    if admin is not None:
        Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    return project


def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership
