"""How a publication's versions are written: the immutable version with its provenance, the
publication's move (``PUBLICATION_LIFECYCLE``, one audit row) or its creation, its tags and its
deliveries, all inside the caller's transaction. ``publish_version`` and ``kill_version`` are
the first version and the kill of a draft that has just moved; a correction calls
``version_write`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from contentstudio import realtime
from contentstudio.errors import InvalidTransition
from contentstudio.html import html_to_text, sanitize
from generation.models import Draft
from publishing import provenance
from publishing.lifecycles import PUBLICATION_LIFECYCLE
from publishing.models import (
    Publication,
    PublicationEvent,
    PublicationStatus,
    PublicationTag,
    PublicationVersion,
    VersionKind,
)
from publishing.services.deliveries import deliveries_create

MAX_TAGS = 20
MAX_SUMMARY = 1000
# What each kind of version does to its publication: the status it moves to, the audit action.
KIND_MOVES = {
    VersionKind.PUBLISH: (PublicationStatus.PUBLISHED, "publish"),
    VersionKind.CORRECTION: (PublicationStatus.PUBLISHED, "correct"),
    VersionKind.KILL: (PublicationStatus.UNPUBLISHED, "unpublish"),
}


def announcer(publication: Publication, what: str, status: str) -> Callable[[], None]:
    project_id, pub_id = publication.project_id, publication.pk
    return lambda: realtime.publish_project_event(
        project_id, {"kind": "publication", "id": pub_id, "action": what, "status": status}
    )


def clean_tags(raw: Any) -> list[str]:
    """Tags from a list or a comma-separated string: trimmed, unique, in order."""
    if raw is None:
        return []
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    tags: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValidationError({"tags": "Tags are text."})
        tag = item.strip()
        if len(tag) > 50:
            raise ValidationError({"tags": f"Tag {tag[:20]!r}… is longer than 50 characters."})
        if tag and tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise ValidationError({"tags": f"At most {MAX_TAGS} tags."})
    return tags


def default_summary(text: str) -> str:
    first = text.strip().split("\n\n", 1)[0]
    return first if len(first) <= 280 else first[:277].rsplit(" ", 1)[0] + "…"


def publication_created(
    publication: Publication, *, user: AbstractBaseUser | None, **event: Any
) -> None:
    """The audit row of a publication made in its first state (a creation is not a move)."""
    PublicationEvent.objects.create(
        publication=publication,
        from_status="",
        to_status=publication.status,
        actor=user,
        **event,
    )
    transaction.on_commit(announcer(publication, event["action"], publication.status))


def tags_set(publication: Publication, tags: list[str]) -> None:
    PublicationTag.objects.filter(publication=publication).exclude(name__in=tags).delete()
    have = set(
        PublicationTag.objects.filter(publication=publication).values_list("name", flat=True)
    )
    PublicationTag.objects.bulk_create(
        [PublicationTag(publication=publication, name=tag) for tag in tags if tag not in have]
    )


def version_write(
    publication: Publication | None,
    *,
    draft: Draft,
    kind: str,
    user: AbstractBaseUser | None,
    headline: str,
    summary: str,
    body_html: str,
    tags: list[str],
    note: str = "",
    data: dict[str, Any] | None = None,
    checks: list[dict[str, Any]] | None = None,
) -> tuple[Publication, PublicationVersion]:
    """Write the next immutable version, move the publication with its audit row (or make it,
    for a draft published at once), and create its deliveries. The caller holds the
    transaction. ``checks``: the provenance entries of the checks run on this very text when
    it is not the draft's (see ``provenance.record``)."""
    to, action = KIND_MOVES[VersionKind(kind)]
    clean = sanitize(body_html)
    edited = provenance.edited_by_people(draft, clean)
    editor = provenance.person(provenance.approving_editor(draft) or user)
    made = publication is None
    if publication is None:
        # Published at once: the row is made in its first state (not a move; audited below).
        publication = Publication.objects.create(
            project_id=draft.project_id, draft=draft, status=to, updated_at=timezone.now()
        )
    seen = publication.current_version
    version = PublicationVersion.objects.create(
        publication=publication,
        number=seen + 1,
        kind=kind,
        headline=headline,
        summary=summary,
        body_html=clean,
        body_text=html_to_text(clean),
        tags=tags,
        byline=f"{editor}, with AI assistance",
        ai_disclosure=provenance.disclosure(draft, editor, edited),
        digital_source_type=provenance.digital_source_type(edited),
        provenance=provenance.record(draft, edited=edited, checks=checks),
        note=note,
        created_by=user,
    )
    # After the version, so "updated since" a version's time finds its publication.
    now = timezone.now()
    fields: dict[str, Any] = {
        "current_version": version.number,
        "headline": headline,
        "summary": summary,
        "tags": tags,
        "updated_at": now,
    }
    if kind == VersionKind.PUBLISH:
        fields.update(first_published_at=now, error="")
    event = {"action": action, "version": version.number, "reason": note, "data": data or {}}
    if made:
        Publication.objects.filter(pk=publication.pk).update(**fields)
        publication_created(publication, user=user, **event)
    else:
        # Conditional on the version we built on: two corrections at once cannot both be "v3".
        moved = PUBLICATION_LIFECYCLE.move(
            publication.pk,
            to=to,
            expected=publication.status,
            where={"current_version": seen},
            fields=fields,
            event={"actor": user, **event},
            on_commit=announcer(publication, action, to),
        )
        if moved is None:
            raise InvalidTransition("Someone else changed this publication at the same moment.")
    publication.refresh_from_db()
    tags_set(publication, tags)
    deliveries_create(publication=publication, version=version)
    return publication, version


def publish_version(
    draft: Draft,
    *,
    user: AbstractBaseUser | None,
    tags: list[str] | None,
    summary: str,
    headline: str,
    scheduled: bool = False,
) -> Publication:
    """Version 1 of a draft that has just moved to published (inside the caller's transaction).
    ``tags`` None keeps the scheduled ones; a blank summary is the text's first paragraph."""
    publication = Publication.objects.select_for_update().filter(draft=draft).first()
    if publication is not None and publication.current_version:
        raise InvalidTransition("This draft was published already.")
    body = sanitize(draft.body)
    if tags is None:
        tags = publication.tags if publication is not None else []
    publication, _ = version_write(
        publication,
        draft=draft,
        kind=VersionKind.PUBLISH,
        user=user,
        headline=(headline or draft.title or "").strip()[:300] or "Untitled",
        summary=(summary.strip() or default_summary(html_to_text(body)))[:MAX_SUMMARY],
        body_html=body,
        tags=clean_tags(tags),
        data={"scheduled": scheduled},
    )
    return publication


def kill_version(draft: Draft, *, user: AbstractBaseUser | None, reason: str) -> Publication | None:
    """A kill version of a draft that has just moved to unpublished, to every destination."""
    publication = Publication.objects.select_for_update().filter(draft=draft).first()
    if publication is None or publication.current_version == 0:
        return publication  # never published: nothing went out to take down
    last = PublicationVersion.objects.get(
        publication=publication, number=publication.current_version
    )
    publication, _ = version_write(
        publication,
        draft=draft,
        kind=VersionKind.KILL,
        user=user,
        headline=last.headline,
        summary=last.summary,
        body_html=last.body_html,
        tags=last.tags,
        note=reason,
        # The same text as the version it takes down: the same check results.
        checks=last.provenance.get("checks"),
    )
    return publication
