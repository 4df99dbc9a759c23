"""Writes of publications: publish (now or when its time comes), schedule, correct, unpublish.

Publishing drives the draft, not the other way round: each act calls review's
``draft_transition`` and, in the same durable transaction, writes the immutable version, moves
the publication (``PUBLICATION_LIFECYCLE``, with its audit row) and creates the deliveries
(``publishing.services.versions``), so the version exists exactly when the draft says
"published". Review imports nothing from here; when a draft is moved by review's own page or
API instead, review announces it on commit and ``publication_catch_up_*`` writes the same
things then. Deliveries are sent by tasks after commit.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from contentstudio.errors import DomainError, InvalidTransition
from contentstudio.html import html_to_text, sanitize
from contentstudio.models import Role
from contentstudio.selectors import require_role
from generation.models import Draft
from publishing import provenance
from publishing.lifecycles import PUBLICATION_LIFECYCLE
from publishing.models import (
    Publication,
    PublicationEvent,
    PublicationStatus,
    PublicationVersion,
    VersionKind,
)
from publishing.services.versions import (
    MAX_SUMMARY,
    announcer,
    clean_tags,
    default_summary,
    kill_version,
    publication_created,
    publish_version,
    tags_set,
    version_write,
)
from review import archive, lifecycle
from review.lifecycle import DraftStatus
from review.services.pipeline import text_checks_run

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
    """Publish an approved draft now (an editor's or admin's act): the draft's move, version 1
    and its deliveries in one transaction."""
    require_role(user=user, project=draft.project, minimum=Role.EDITOR)
    tags = clean_tags(tags)
    with transaction.atomic(durable=True):
        lifecycle.draft_transition(
            draft=draft, action="publish", user=user, expected_version=expected_version
        )
        return publish_version(draft, user=user, tags=tags, summary=summary, headline=headline)


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
    a draft that is not approved; the periodic task publishes it when the time comes, with the
    headline, summary and tags stored on the publication now."""
    require_role(user=user, project=draft.project, minimum=Role.EDITOR)
    if timezone.is_naive(when):
        raise ValidationError({"scheduled_for": "Give the time with its time zone."})
    if when <= timezone.now():
        raise ValidationError(
            {"scheduled_for": f"{when.isoformat()} is in the past: choose a later time."}
        )
    tags = clean_tags(tags)
    with transaction.atomic(durable=True):
        current = Draft.objects.select_for_update().get(pk=draft.pk)
        if current.status != DraftStatus.APPROVED:
            raise InvalidTransition(
                f"Only an approved draft can be scheduled; this one is "
                f"{lifecycle.status_label(current.status).lower()}."
            )
        publication = Publication.objects.select_for_update().filter(draft=current).first()
        if publication is not None and publication.status != PublicationStatus.CANCELLED:
            raise InvalidTransition(
                f"This draft is {publication.get_status_display().lower()} already."
            )
        fields = {
            "scheduled_for": when,
            "scheduled_by": user,
            "headline": (headline or current.title).strip()[:300],
            "summary": summary[:MAX_SUMMARY],
            "tags": tags,
            "error": "",
            "updated_at": timezone.now(),
        }
        event = {"action": "schedule", "data": {"scheduled_for": when.isoformat()}}
        if publication is None:
            publication = Publication.objects.create(
                project_id=current.project_id,
                draft=current,
                status=PublicationStatus.SCHEDULED,
                **fields,
            )
            publication_created(publication, user=user, **event)
        else:
            moved = PUBLICATION_LIFECYCLE.move(
                publication.pk,
                to=PublicationStatus.SCHEDULED,
                expected=PublicationStatus.CANCELLED,
                fields=fields,
                event={"actor": user, **event},
                on_commit=announcer(publication, "schedule", PublicationStatus.SCHEDULED),
            )
            if moved is None:
                raise InvalidTransition("Someone else changed this publication at the same moment.")
            publication.refresh_from_db()
        tags_set(publication, tags)
    return publication


def publication_schedule_cancel(*, publication: Publication, user: AbstractBaseUser) -> None:
    require_role(user=user, project=publication.project, minimum=Role.EDITOR)
    with transaction.atomic(durable=True):
        moved = PUBLICATION_LIFECYCLE.move(
            publication.pk,
            to=PublicationStatus.CANCELLED,
            expected=PublicationStatus.SCHEDULED,
            fields={"updated_at": timezone.now()},
            event={"actor": user, "action": "schedule_cancel"},
            on_commit=announcer(publication, "schedule_cancel", PublicationStatus.CANCELLED),
        )
        if moved is None:
            raise InvalidTransition("This publication is not scheduled.")
    publication.refresh_from_db()


def publications_due(*, now: datetime | None = None) -> list[int]:
    """Publish every scheduled publication whose time has come (the periodic task), each in a
    transaction of its own. The row is claimed under a lock while still scheduled, so two
    schedulers never publish one twice. A draft that is no longer approved, or a scheduler who
    lost the right to publish, cancels the schedule with the reason. Returns the ids published.
    """
    now = now or timezone.now()
    published: list[int] = []
    due = Publication.objects.filter(
        status=PublicationStatus.SCHEDULED, scheduled_for__lte=now
    ).values_list("pk", flat=True)
    for pub_id in list(due[:200]):
        try:
            with transaction.atomic(durable=True):
                publication = (
                    # Lock the publication only: PostgreSQL refuses FOR UPDATE on the nullable
                    # side of the outer join to scheduled_by.
                    Publication.objects.select_for_update(of=("self",))
                    .select_related("draft", "scheduled_by", "project")
                    .filter(pk=pub_id, status=PublicationStatus.SCHEDULED)
                    .first()
                )
                if publication is None:
                    continue  # another scheduler had it, or a person acted first
                if publication.scheduled_by is None:
                    raise InvalidTransition("The person who scheduled it no longer exists.")
                lifecycle.draft_transition(
                    draft=publication.draft, action="publish", user=publication.scheduled_by
                )
                publish_version(
                    publication.draft,
                    user=publication.scheduled_by,
                    tags=publication.tags,
                    summary=publication.summary,
                    headline=publication.headline,
                    scheduled=True,
                )
        except (DomainError, ValidationError) as exc:
            message = exc.message if isinstance(exc, DomainError) else " ".join(exc.messages)
            with transaction.atomic(durable=True):
                stale = Publication.objects.get(pk=pub_id)
                PUBLICATION_LIFECYCLE.move(
                    pub_id,
                    to=PublicationStatus.CANCELLED,
                    expected=PublicationStatus.SCHEDULED,
                    fields={
                        "error": f"Not published at the scheduled time: {message}",
                        "updated_at": timezone.now(),
                    },
                    event={"action": "schedule_refused", "reason": message},
                    on_commit=announcer(stale, "schedule_refused", PublicationStatus.CANCELLED),
                )
            continue
        published.append(pub_id)
    return published


class CorrectionHeld(DomainError):
    """The corrected text did not pass the checks and the policy: not published, nothing sent.
    ``reasons`` are the policy's; the text is kept in the publication's audit trail."""

    status_code = 422

    def __init__(self, reasons: list[str], *, not_run: bool = False) -> None:
        message = "The correction is held by the checks and was not published: " + "; ".join(
            reasons
        )
        if not_run:
            # A draft is checked again by itself; a correction is sent again by a person.
            message += ". A check that could not run holds it: send it again once it can run."
        super().__init__(message)
        self.reasons = reasons


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
    """A corrected text: new text, so it goes through every check and the project's policy
    first, as a draft does (outside any transaction: the checks run models). Held: nothing is
    published or sent; the reasons, the results and the text go to the audit trail
    (``correction_held``) and ``CorrectionHeld`` says why. Passed: a new version whose
    provenance lists the checks of this text, delivered to every destination, and the
    plagiarism indexes updated with it."""
    require_role(user=user, project=publication.project, minimum=Role.EDITOR)
    clean = sanitize(body)
    if not html_to_text(clean).strip():
        raise ValidationError({"body": "The text cannot be empty."})
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": "Say what the correction changes (readers are told)."})
    current = Publication.objects.select_related("draft", "project").get(pk=publication.pk)
    _check_correctable(current, expected_version)
    last = PublicationVersion.objects.get(publication=current, number=current.current_version)
    new_headline = (headline if headline is not None else last.headline).strip()[:300]
    if not new_headline:
        raise ValidationError({"headline": "A headline is required."})
    new_tags = clean_tags(tags) if tags is not None else last.tags
    new_summary = (summary if summary is not None else last.summary).strip()[:MAX_SUMMARY]
    if new_summary == last.summary and last.summary == default_summary(last.body_text):
        # The summary was the text's first paragraph and is left as it was: it follows the
        # corrected text (a summary someone wrote stays until someone changes it).
        new_summary = default_summary(html_to_text(clean))[:MAX_SUMMARY]
    if (clean, new_headline, new_summary, new_tags) == (
        last.body_html,
        last.headline,
        last.summary,
        last.tags,
    ):
        raise ValidationError({"body": "Nothing changed: a correction must change something."})
    # The text is checked as a draft's is, with a headline or summary the correction changes
    # (new text readers get; unchanged ones went out with the version before).
    # (A summary that is the text's first paragraph is checked with the text already.)
    text = html_to_text(clean)
    changed = [
        new
        for new, old in ((new_headline, last.headline), (new_summary, last.summary))
        if new.strip() and new != old and new != default_summary(text)
    ]
    checked = "\n\n".join([*changed, text])
    outcomes, reasons = text_checks_run(draft=current.draft, text=checked)
    results = provenance.checks_of(
        [dict(o) for o in outcomes], on=f"correction of version {last.number}"
    )
    if reasons:
        with transaction.atomic(durable=True):
            PublicationEvent.objects.create(
                publication=current,
                from_status=current.status,
                to_status=current.status,
                actor=user,
                action="correction_held",
                version=last.number,
                reason="; ".join(reasons),
                data={
                    "reasons": reasons,
                    "checks": results,
                    "proposed": {
                        "headline": new_headline,
                        "summary": new_summary,
                        "tags": new_tags,
                        "body": clean,
                        "note": note,
                    },
                },
            )
        raise CorrectionHeld(reasons, not_run=any(o["status"] != "ok" for o in outcomes))
    with transaction.atomic(durable=True):
        current = (
            Publication.objects.select_for_update().select_related("draft").get(pk=publication.pk)
        )
        _check_correctable(current, expected_version)
        if current.current_version != last.number:
            raise InvalidTransition(
                "The publication changed while the correction was checked: open it again."
            )
        _, version = version_write(
            current,
            draft=current.draft,
            kind=VersionKind.CORRECTION,
            user=user,
            headline=new_headline,
            summary=new_summary,
            body_html=clean,
            tags=new_tags,
            note=note,
            checks=results,
        )
        # Later drafts are compared against what is published now, not the first text.
        corrected = copy.copy(current.draft)
        corrected.body = clean
        archive.publication_add(corrected)
    return version


def _check_correctable(current: Publication, expected_version: int | None) -> None:
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


def publication_unpublish(
    *, publication: Publication, user: AbstractBaseUser, reason: str
) -> Publication:
    """Kill: the draft moves to unpublished and a kill version goes to every destination."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why it is taken down (it is in the audit trail)."})
    with transaction.atomic(durable=True):
        lifecycle.draft_transition(
            draft=publication.draft, action="unpublish", user=user, reason=reason
        )
        kill_version(publication.draft, user=user, reason=reason)
    publication.refresh_from_db()
    return publication


# --- Drafts moved by review's own pages and API (announced on commit) ---------------------------


def publication_catch_up_published(
    *, draft_id: int, user: AbstractBaseUser | None
) -> Publication | None:
    """A draft moved to published other than through ``publication_publish`` (the "Publish"
    button of review's draft page, its API or bulk action): write version 1 and its deliveries
    now. Nothing to do when this module moved it (the version exists) or it has moved on."""
    with transaction.atomic(durable=True):
        draft = Draft.objects.select_for_update().filter(pk=draft_id).first()
        if draft is None or draft.status != DraftStatus.PUBLISHED:
            return None
        publication = Publication.objects.filter(draft=draft).first()
        if publication is not None and publication.current_version:
            return publication
        return publish_version(draft, user=user, tags=None, summary="", headline="")


def publication_catch_up_unpublished(
    *, draft_id: int, user: AbstractBaseUser | None, reason: str
) -> Publication | None:
    """A draft moved to unpublished other than through ``publication_unpublish``: the kill
    version goes out now. Nothing to do when it went out with the move."""
    with transaction.atomic(durable=True):
        draft = Draft.objects.select_for_update().filter(pk=draft_id).first()
        if draft is None or draft.status != DraftStatus.UNPUBLISHED:
            return None
        publication = Publication.objects.filter(draft=draft).first()
        if publication is None or publication.status == PublicationStatus.UNPUBLISHED:
            return publication
        return kill_version(draft, user=user, reason=reason)
