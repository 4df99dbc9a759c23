"""Reads of publishing, each scoped to what the user (or API token) may see."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils.dateparse import parse_datetime

from contentstudio import keyset
from contentstudio.selectors import membership_role
from publishing.models import (
    Delivery,
    Publication,
    PublicationStatus,
    PublicationVersion,
)
from review.queue import visible_projects

ORDERINGS = keyset.ORDERINGS


@dataclass
class PublicationFilters:
    projects: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    updated_since: datetime | None = None
    tag: str = ""
    ordering: str = "-updated_at"


def parse_filters(params: Any) -> PublicationFilters:
    """Filters from query parameters; a bad value is a ValidationError naming the parameter
    (a script must not mistake unfiltered results for filtered ones)."""
    errors: dict[str, str] = {}
    filters = PublicationFilters(
        projects=[p for p in params.getlist("project") if p],
        states=[s for s in params.getlist("state") if s],
        tag=(params.get("tag") or "").strip(),
        ordering=params.get("ordering") or "-updated_at",
    )
    bad = [s for s in filters.states if s not in PublicationStatus.values]
    if bad:
        errors["state"] = f"Unknown state {bad[0]!r}: use {', '.join(PublicationStatus.values)}."
    raw = params.get("updated_since")
    if raw:
        parsed = parse_datetime(raw)
        if parsed is None or parsed.tzinfo is None:
            errors["updated_since"] = (
                f"{raw!r} is not an ISO 8601 date-time with a time zone "
                "(e.g. 2026-01-31T12:00:00Z)."
            )
        filters.updated_since = parsed
    if filters.ordering not in ORDERINGS:
        errors["ordering"] = f"Use one of {', '.join(ORDERINGS)}."
    if errors:
        raise ValidationError(errors)
    return filters


def publication_list(
    *, user: AbstractBaseUser, filters: PublicationFilters
) -> QuerySet[Publication]:
    projects = visible_projects(user=user)
    if filters.projects:
        projects = projects.filter(slug__in=filters.projects)
    # A plain list of ids, so the (project, updated_at, id) index is used (see the bench).
    rows = Publication.objects.filter(
        project_id__in=list(projects.values_list("pk", flat=True))
    ).select_related("project")
    if filters.states:
        rows = rows.filter(status__in=filters.states)
    if filters.updated_since:
        rows = rows.filter(updated_at__gte=filters.updated_since)
    if filters.tag:
        rows = rows.filter(tag_rows__name=filters.tag)
    return keyset.order(rows, filters.ordering)


# --- Single rows --------------------------------------------------------------------------------


def publication_get(*, user: AbstractBaseUser, publication_id: int) -> Publication:
    """The publication if the user (or token) may see its project; Http404 otherwise."""
    publication = (
        Publication.objects.select_related("project", "draft").filter(pk=publication_id).first()
    )
    if publication is None or membership_role(user=user, project=publication.project) is None:
        raise Http404("No such publication.")
    return publication


def version_get(*, publication: Publication, number: int | None = None) -> PublicationVersion:
    number = number or publication.current_version
    version = (
        PublicationVersion.objects.select_related("publication__project")
        .filter(publication=publication, number=number)
        .first()
    )
    if version is None:
        raise Http404("No such version.")
    return version


def delivery_get(*, user: AbstractBaseUser, delivery_id: int) -> Delivery:
    delivery = (
        Delivery.objects.select_related("publication__project", "destination", "version")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or membership_role(user=user, project=delivery.publication.project) is None:
        raise Http404("No such delivery.")
    return delivery


def current_versions(publications: list[Publication]) -> dict[int, PublicationVersion]:
    """The current version of each publication, in one query."""
    wanted = Q()
    for publication in publications:
        if publication.current_version:
            wanted |= Q(publication_id=publication.pk, number=publication.current_version)
    if not wanted:
        return {}
    return {
        v.publication_id: v
        for v in PublicationVersion.objects.filter(wanted).select_related("publication__project")
    }


def feed_versions(*, project_id: int, limit: int = 50) -> list[PublicationVersion]:
    """The current versions of a project's live publications, newest first."""
    publications = list(
        Publication.objects.filter(project_id=project_id, status=PublicationStatus.PUBLISHED)
        .select_related("project")
        .order_by("-updated_at", "-id")[:limit]
    )
    versions = current_versions(publications)
    return [versions[p.pk] for p in publications if p.pk in versions]
