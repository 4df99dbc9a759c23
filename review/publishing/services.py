"""Writes of publishing: publish (now or scheduled), correct, unpublish, destinations, and the
deliveries each version creates.

The draft's own moves (publish, unpublish) stay in ``review.lifecycle.draft_transition``; it
calls ``on_draft_published`` / ``on_draft_unpublished`` here inside its transaction, so the
immutable version, its audit row and its deliveries exist exactly when the draft's state says
so, whichever page, API call or task moved it. Deliveries are sent by tasks after commit.
"""

from __future__ import annotations

import base64
import copy
import secrets as pysecrets
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from contentstudio import realtime
from contentstudio.errors import DomainError, InvalidTransition
from contentstudio.html import html_to_text, sanitize
from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from generation.models import Draft
from review import archive, lifecycle
from review.publishing import provenance
from review.publishing import secrets as secret_box
from review.publishing.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    DestinationKind,
    Publication,
    PublicationEvent,
    PublicationStatus,
    PublicationTag,
    PublicationVersion,
    VersionKind,
)

MAX_TAGS = 20
MAX_SUMMARY = 1000
EVENT_TYPES = {
    VersionKind.PUBLISH: "publication.published",
    VersionKind.CORRECTION: "publication.corrected",
    VersionKind.KILL: "publication.unpublished",
}


def _announce(publication: Publication, what: str) -> None:
    project_id, pub_id, status = publication.project_id, publication.pk, publication.status
    transaction.on_commit(
        lambda: realtime.publish_project_event(
            project_id, {"kind": "publication", "id": pub_id, "action": what, "status": status}
        )
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


def _default_summary(text: str) -> str:
    first = text.strip().split("\n\n", 1)[0]
    return first if len(first) <= 280 else first[:277].rsplit(" ", 1)[0] + "…"


def _log(
    publication: Publication,
    *,
    user: AbstractBaseUser | None,
    action: str,
    version: int | None = None,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> PublicationEvent:
    return PublicationEvent.objects.create(
        publication=publication,
        actor=user,
        action=action,
        version=version,
        reason=reason,
        data=data or {},
    )


def _new_version(
    publication: Publication,
    *,
    kind: str,
    user: AbstractBaseUser | None,
    headline: str,
    summary: str,
    body_html: str,
    tags: list[str],
    note: str = "",
    draft: Draft,
) -> PublicationVersion:
    """Write the next immutable version and its deliveries (caller holds the transaction)."""
    clean = sanitize(body_html)
    edited = provenance.edited_by_people(draft, clean)
    approver = provenance.approving_editor(draft) or user
    editor = provenance.person(approver)
    number = publication.current_version + 1
    version = PublicationVersion.objects.create(
        publication=publication,
        number=number,
        kind=kind,
        headline=headline,
        summary=summary,
        body_html=clean,
        body_text=html_to_text(clean),
        tags=tags,
        byline=f"{editor}, with AI assistance",
        ai_disclosure=provenance.disclosure(draft, editor, edited),
        digital_source_type=provenance.digital_source_type(edited),
        provenance=provenance.record(draft, edited=edited),
        note=note,
        created_by=user,
    )
    now = timezone.now()
    fields: dict[str, Any] = {
        "current_version": number,
        "headline": headline,
        "tags": tags,
        "updated_at": now,
    }
    if kind == VersionKind.PUBLISH:
        fields.update(status=PublicationStatus.PUBLISHED, first_published_at=now, error="")
    elif kind == VersionKind.KILL:
        fields["status"] = PublicationStatus.UNPUBLISHED
    # Conditional on the version we built on: two corrections at once cannot both be "v3".
    updated = Publication.objects.filter(
        pk=publication.pk, current_version=publication.current_version
    ).update(**fields)
    if updated != 1:
        raise InvalidTransition("Someone else changed this publication at the same moment.")
    publication.refresh_from_db()
    _tags_set(publication, tags)
    _deliveries_create(publication, version)
    return version


def _tags_set(publication: Publication, tags: list[str]) -> None:
    PublicationTag.objects.filter(publication=publication).exclude(name__in=tags).delete()
    have = set(
        PublicationTag.objects.filter(publication=publication).values_list("name", flat=True)
    )
    PublicationTag.objects.bulk_create(
        [PublicationTag(publication=publication, name=tag) for tag in tags if tag not in have]
    )


def _deliveries_create(publication: Publication, version: PublicationVersion) -> list[Delivery]:
    from review.publishing import tasks

    created = []
    # Disabled destinations get their deliveries too: they wait, in order, until it is enabled.
    for destination in Destination.objects.filter(project_id=publication.project_id):
        # The destination's sequence orders its deliveries; the row lock (PostgreSQL) and the
        # conditional increment keep two publishers from taking the same number.
        Destination.objects.filter(pk=destination.pk).update(next_sequence=F("next_sequence") + 1)
        sequence = Destination.objects.values_list("next_sequence", flat=True).get(
            pk=destination.pk
        )
        created.append(
            Delivery.objects.create(
                destination=destination,
                publication=publication,
                version=version,
                sequence=sequence - 1,
                event_type=EVENT_TYPES[VersionKind(version.kind)],
                next_attempt_at=timezone.now(),
            )
        )
        tasks.destination_flush.delay_on_commit(destination.pk)
    return created


# --- Hooks called by review.lifecycle.draft_transition (inside its transaction) ----------------


def on_draft_published(
    *, draft: Draft, user: AbstractBaseUser | None, data: dict[str, Any] | None
) -> Publication:
    """The draft moved approved -> published: write version 1 (or the scheduled publication's
    first version) and its deliveries."""
    options = (data or {}).get("publication", {})
    publication = Publication.objects.select_for_update().filter(draft=draft).first()
    if publication is None:
        publication = Publication.objects.create(
            project_id=draft.project_id,
            draft=draft,
            status=PublicationStatus.PUBLISHED,
            headline=draft.title,
            updated_at=timezone.now(),
        )
    elif publication.current_version:
        raise InvalidTransition("This draft was published already.")
    body = sanitize(draft.body)
    tags = clean_tags(options.get("tags", publication.tags))
    summary = (options.get("summary") or "").strip() or _default_summary(html_to_text(body))
    headline = (options.get("headline") or draft.title or "").strip()[:300] or "Untitled"
    version = _new_version(
        publication,
        kind=VersionKind.PUBLISH,
        user=user,
        headline=headline,
        summary=summary[:MAX_SUMMARY],
        body_html=body,
        tags=tags,
        draft=draft,
    )
    _log(
        publication,
        user=user,
        action="publish",
        version=version.number,
        data={"scheduled": bool(options.get("scheduled"))},
    )
    _announce(publication, "publish")
    return publication


def on_draft_unpublished(*, draft: Draft, user: AbstractBaseUser | None, reason: str) -> None:
    """The draft moved published -> unpublished: a kill version goes to every destination."""
    publication = Publication.objects.select_for_update().filter(draft=draft).first()
    if publication is None or publication.current_version == 0:
        return
    last = PublicationVersion.objects.get(
        publication=publication, number=publication.current_version
    )
    version = _new_version(
        publication,
        kind=VersionKind.KILL,
        user=user,
        headline=last.headline,
        summary=last.summary,
        body_html=last.body_html,
        tags=last.tags,
        note=reason,
        draft=draft,
    )
    _log(publication, user=user, action="unpublish", version=version.number, reason=reason)
    _announce(publication, "unpublish")


# --- What people do -----------------------------------------------------------------------------


def publication_publish(
    *,
    draft: Draft,
    user: AbstractBaseUser,
    tags: Any = None,
    summary: str = "",
    headline: str = "",
    expected_version: int | None = None,
) -> Publication:
    """Publish an approved draft now (an editor's or admin's act)."""
    require_role(user=user, project=draft.project, minimum=Role.EDITOR)
    options = {"tags": clean_tags(tags), "summary": summary[:MAX_SUMMARY], "headline": headline}
    lifecycle.draft_transition(
        draft=draft,
        action="publish",
        user=user,
        expected_version=expected_version,
        data={"publication": options},
    )
    return Publication.objects.get(draft=draft)


def publication_schedule(
    *,
    draft: Draft,
    user: AbstractBaseUser,
    when: datetime,
    tags: Any = None,
    summary: str = "",
    headline: str = "",
) -> Publication:
    """Publish an approved draft at ``when``. Refused with the reason for a time in the past or
    a draft that is not approved; the periodic task publishes it when the time comes."""
    require_role(user=user, project=draft.project, minimum=Role.EDITOR)
    if timezone.is_naive(when):
        raise ValidationError({"scheduled_for": "Give the time with its time zone."})
    if when <= timezone.now():
        raise ValidationError(
            {"scheduled_for": f"{when.isoformat()} is in the past: choose a later time."}
        )
    tags = clean_tags(tags)
    with transaction.atomic():
        current = Draft.objects.select_for_update().get(pk=draft.pk)
        if current.status != lifecycle.DraftStatus.APPROVED:
            raise InvalidTransition(
                f"Only an approved draft can be scheduled; this one is "
                f"{lifecycle.status_label(current.status).lower()}."
            )
        publication = Publication.objects.select_for_update().filter(draft=current).first()
        if publication is not None and publication.status not in {PublicationStatus.CANCELLED}:
            raise InvalidTransition(
                f"This draft is {publication.get_status_display().lower()} already."
            )
        fields = {
            "status": PublicationStatus.SCHEDULED,
            "scheduled_for": when,
            "scheduled_by": user,
            "headline": (headline or current.title).strip()[:300],
            "tags": tags,
            "error": "",
            "updated_at": timezone.now(),
        }
        if publication is None:
            publication = Publication.objects.create(
                project_id=current.project_id, draft=current, **fields
            )
        else:
            Publication.objects.filter(pk=publication.pk).update(**fields)
            publication.refresh_from_db()
        _tags_set(publication, tags)
        _log(
            publication,
            user=user,
            action="schedule",
            data={"scheduled_for": when.isoformat(), "summary": summary[:MAX_SUMMARY]},
        )
        _announce(publication, "schedule")
    return publication


def publication_schedule_cancel(*, publication: Publication, user: AbstractBaseUser) -> None:
    require_role(user=user, project=publication.project, minimum=Role.EDITOR)
    with transaction.atomic():
        updated = Publication.objects.filter(
            pk=publication.pk, status=PublicationStatus.SCHEDULED
        ).update(status=PublicationStatus.CANCELLED, updated_at=timezone.now())
        if updated != 1:
            raise InvalidTransition("This publication is not scheduled.")
        publication.refresh_from_db()
        _log(publication, user=user, action="schedule_cancel")
        _announce(publication, "schedule_cancel")


def publications_due(*, now: datetime | None = None) -> list[int]:
    """Publish every scheduled publication whose time has come (the periodic task). Each is
    claimed by a conditional UPDATE, so two schedulers never publish one twice. A draft that is
    no longer approved, or a scheduler who lost the right to publish, cancels the schedule with
    the reason. Returns the ids published."""
    now = now or timezone.now()
    published: list[int] = []
    due = Publication.objects.filter(
        status=PublicationStatus.SCHEDULED, scheduled_for__lte=now
    ).values_list("pk", flat=True)
    for pub_id in list(due[:200]):
        publication = Publication.objects.select_related("draft", "scheduled_by", "project").get(
            pk=pub_id
        )
        try:
            with transaction.atomic():
                # The claim: from here the row is this task's.
                claimed = Publication.objects.filter(
                    pk=pub_id, status=PublicationStatus.SCHEDULED
                ).update(status=PublicationStatus.PUBLISHED, updated_at=timezone.now())
                if claimed != 1:
                    continue
                options = {
                    "tags": publication.tags,
                    "headline": publication.headline,
                    "scheduled": True,
                }
                last = publication.events.filter(action="schedule").order_by("-pk").first()
                if last is not None and last.data.get("summary"):
                    options["summary"] = last.data["summary"]
                if publication.scheduled_by is None:
                    raise InvalidTransition("The person who scheduled it no longer exists.")
                lifecycle.draft_transition(
                    draft=publication.draft,
                    action="publish",
                    user=publication.scheduled_by,
                    data={"publication": options},
                )
        except (DomainError, ValidationError) as exc:
            message = exc.message if isinstance(exc, DomainError) else " ".join(exc.messages)
            with transaction.atomic():
                Publication.objects.filter(pk=pub_id, status=PublicationStatus.SCHEDULED).update(
                    status=PublicationStatus.CANCELLED,
                    error=f"Not published at the scheduled time: {message}",
                    updated_at=timezone.now(),
                )
                publication.refresh_from_db()
                _log(publication, user=None, action="schedule_refused", reason=message)
                _announce(publication, "schedule_refused")
            continue
        published.append(pub_id)
    return published


def publication_correct(
    *,
    publication: Publication,
    user: AbstractBaseUser,
    body: str,
    headline: str | None = None,
    summary: str | None = None,
    tags: Any = None,
    note: str = "",
    expected_version: int | None = None,
) -> PublicationVersion:
    """A corrected text: a new version, delivered to every destination, and the plagiarism
    indexes updated with the corrected text."""
    require_role(user=user, project=publication.project, minimum=Role.EDITOR)
    clean = sanitize(body)
    if not html_to_text(clean).strip():
        raise ValidationError({"body": "The text cannot be empty."})
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": "Say what the correction changes (readers are told)."})
    with transaction.atomic():
        current = (
            Publication.objects.select_for_update().select_related("draft").get(pk=publication.pk)
        )
        if current.status != PublicationStatus.PUBLISHED:
            raise InvalidTransition(
                f"Only a published item can be corrected; this one is "
                f"{current.get_status_display().lower()}."
            )
        if expected_version is not None and current.current_version != expected_version:
            raise InvalidTransition(
                f"The publication changed since you opened it (version {expected_version} -> "
                f"{current.current_version})."
            )
        last = PublicationVersion.objects.get(publication=current, number=current.current_version)
        new_headline = (headline if headline is not None else last.headline).strip()[:300]
        if not new_headline:
            raise ValidationError({"headline": "A headline is required."})
        new_tags = clean_tags(tags) if tags is not None else last.tags
        new_summary = (summary if summary is not None else last.summary).strip()[:MAX_SUMMARY]
        if (clean, new_headline, new_summary, new_tags) == (
            last.body_html,
            last.headline,
            last.summary,
            last.tags,
        ):
            raise ValidationError({"body": "Nothing changed: a correction must change something."})
        version = _new_version(
            current,
            kind=VersionKind.CORRECTION,
            user=user,
            headline=new_headline,
            summary=new_summary,
            body_html=clean,
            tags=new_tags,
            note=note,
            draft=current.draft,
        )
        # Later drafts are compared against what is published now, not the first text.
        corrected = copy.copy(current.draft)
        corrected.body = clean
        archive.publication_add(corrected)
        _log(current, user=user, action="correct", version=version.number, reason=note)
        _announce(current, "correct")
    return version


def publication_unpublish(
    *, publication: Publication, user: AbstractBaseUser, reason: str
) -> Publication:
    """Kill: the draft moves to unpublished (the lifecycle writes the kill version)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why it is taken down (it is in the audit trail)."})
    lifecycle.draft_transition(
        draft=publication.draft, action="unpublish", user=user, reason=reason
    )
    publication.refresh_from_db()
    return publication


# --- Destinations -------------------------------------------------------------------------------


def new_signing_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(pysecrets.token_bytes(24)).decode()


def _validate_secret(kind: str, secret: str) -> None:
    if kind == DestinationKind.GHOST:
        key_id, _, hex_secret = secret.partition(":")
        try:
            bytes.fromhex(hex_secret)
        except ValueError:
            hex_secret = ""
        if not key_id or not hex_secret:
            raise ValidationError({"secret": "A Ghost Admin API key looks like <id>:<hex secret>."})
    elif kind == DestinationKind.GENERIC and secret:
        raw = secret.removeprefix("whsec_")
        try:
            decoded = base64.b64decode(raw + "==", validate=False)
        except ValueError:
            decoded = b""
        if len(decoded) < 16:
            raise ValidationError(
                {"secret": "A signing secret is whsec_ and at least 16 bytes in base64."}
            )
    elif kind == DestinationKind.WORDPRESS and not secret:
        raise ValidationError({"secret": "Enter the WordPress application password."})


def destination_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    name: str,
    kind: str,
    url: str,
    username: str = "",
    secret: str = "",
) -> tuple[Destination, str | None]:
    """A new destination (project admins). For a generic webhook without a secret one is made;
    it is returned here, to be shown once, and never again."""
    require_role(user=user, project=project, minimum=Role.ADMIN)
    name, url, username, secret = (
        (name or "").strip(),
        (url or "").strip(),
        username.strip(),
        (secret or "").strip(),
    )
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Give the destination a name."
    if kind not in DestinationKind.values:
        errors["kind"] = f"Unknown kind {kind!r}."
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        errors["url"] = "Enter an http:// or https:// address."
    if kind == DestinationKind.WORDPRESS and not username:
        errors["username"] = "WordPress needs the user name the application password belongs to."
    if Destination.objects.filter(project=project, name=name).exists():
        errors["name"] = f"This project already has a destination named {name!r}."
    if errors:
        raise ValidationError(errors)
    _validate_secret(kind, secret)
    generated = None
    if kind == DestinationKind.GENERIC and not secret:
        secret = generated = new_signing_secret()
    destination = Destination.objects.create(
        project=project,
        name=name,
        kind=kind,
        url=url,
        username=username,
        secret_encrypted=secret_box.encrypt(secret),
        secret_hint=secret_box.hint(secret),
        created_by=user,
    )
    return destination, generated


def destination_set_enabled(
    *, destination: Destination, user: AbstractBaseUser, enabled: bool
) -> Destination:
    from review.publishing import tasks

    require_role(user=user, project=destination.project, minimum=Role.ADMIN)
    Destination.objects.filter(pk=destination.pk).update(enabled=enabled)
    destination.refresh_from_db()
    if enabled:
        # What waited while it was off goes out now, in order.
        transaction.on_commit(lambda: tasks.destination_flush.delay(destination.pk))
    return destination


def destination_delete(*, destination: Destination, user: AbstractBaseUser) -> None:
    require_role(user=user, project=destination.project, minimum=Role.ADMIN)
    destination.delete()


def delivery_retry_now(*, delivery: Delivery, user: AbstractBaseUser) -> Delivery:
    """Send a waiting or failed delivery now (editors and admins)."""
    from review.publishing import tasks

    require_role(user=user, project=delivery.publication.project, minimum=Role.EDITOR)
    with transaction.atomic():
        updated = Delivery.objects.filter(
            pk=delivery.pk, status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED]
        ).update(status=DeliveryStatus.PENDING, next_attempt_at=timezone.now())
        if updated != 1:
            raise InvalidTransition(
                f"This delivery is {delivery.get_status_display().lower()}: nothing to retry."
            )
        _log(
            delivery.publication,
            user=user,
            action="retry",
            version=delivery.version.number,
            data={"destination": delivery.destination.name},
        )
        destination_id = delivery.destination_id
        transaction.on_commit(lambda: tasks.destination_flush.delay(destination_id))
        _announce(delivery.publication, "retry")
    delivery.refresh_from_db()
    return delivery
