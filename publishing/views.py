"""Pages of publishing: the Publications page (live list, filters, publish or schedule approved
drafts), a publication with its versions, diffs and deliveries, and the destinations."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from contentstudio.errors import DomainError
from contentstudio.html import sanitize
from contentstudio.models import Project, Role, role_at_least
from contentstudio.selectors import project_get
from generation.models import Draft
from publishing import selectors, services
from publishing.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    DestinationKind,
    Publication,
    PublicationStatus,
    PublicationVersion,
)
from publishing.redaction import public_error
from review import diff
from review.lifecycle import DraftStatus


def _errors_text(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return " ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


def _delivery_state(
    publication: Publication, failed: set[int], pending: dict[int, str], sent: set[int]
) -> str:
    """The list's delivery column: "all delivered" only when something was delivered; a
    publication with no deliveries is scheduled (sent when published) or was not sent."""
    if publication.pk in failed:
        return "failed"
    if publication.pk in pending:
        return pending[publication.pk]
    if publication.pk in sent:
        return "ok"
    return "scheduled" if publication.status == PublicationStatus.SCHEDULED else "none"


def _list_context(request: HttpRequest, project: Project, role: str) -> dict[str, Any]:
    params = request.GET.copy()
    params.setlist("project", [project.slug])
    try:
        filters = selectors.parse_filters(params)
        error = ""
    except ValidationError as exc:
        filters, error = selectors.PublicationFilters(projects=[project.slug]), _errors_text(exc)
    rows = list(selectors.publication_list(user=request.user, filters=filters)[:100])
    pending = dict(
        Delivery.objects.filter(publication__in=rows)
        .exclude(status=DeliveryStatus.DELIVERED)
        .exclude(status=DeliveryStatus.SUPERSEDED)
        .values_list("publication_id", "status")
    )
    failed = set(
        Delivery.objects.filter(publication__in=rows, status=DeliveryStatus.FAILED).values_list(
            "publication_id", flat=True
        )
    )
    sent = set(
        Delivery.objects.filter(publication__in=rows).values_list("publication_id", flat=True)
    )
    return {
        "project": project,
        "role": role,
        "rows": [(p, _delivery_state(p, failed, pending, sent)) for p in rows],
        "filters": filters,
        "filter_error": error,
        "states": PublicationStatus.choices,
        "can_publish": role_at_least(role, Role.EDITOR),
    }


def _list_page(request: HttpRequest, project: Project, role: str, **extra: Any) -> dict[str, Any]:
    context = _list_context(request, project, role)
    context["ready"] = (
        Draft.objects.filter(project=project, status=DraftStatus.APPROVED)
        .exclude(publication__status=PublicationStatus.SCHEDULED)
        .order_by("-updated_at")[:50]
        if context["can_publish"]
        else []
    )
    context["destinations"] = Destination.objects.filter(project=project)
    context.update(extra)
    return context


@login_required
def publication_list(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    return render(request, "publishing/publication_list.html", _list_page(request, project, role))


@login_required
def publication_rows(request: HttpRequest, slug: str) -> HttpResponse:
    """The table body alone, for live updates."""
    project, role = project_get(user=request.user, slug=slug)
    return render(
        request, "publishing/_publication_rows.html", _list_context(request, project, role)
    )


def _when(request: HttpRequest) -> datetime | None:
    """The schedule time from a datetime-local field and the browser's offset in minutes
    (``getTimezoneOffset``); without the offset the time is read as UTC."""
    raw = (request.POST.get("scheduled_for") or "").strip()
    if not raw:
        return None
    try:
        naive = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError({"scheduled_for": f"{raw!r} is not a date and time."}) from None
    if naive.tzinfo is not None:
        return naive
    try:
        offset = int(request.POST.get("tz_offset") or 0)
    except ValueError:
        offset = 0
    return naive.replace(tzinfo=dt_timezone(-timedelta(minutes=offset)))


@login_required
@require_POST
def publication_publish(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug, minimum=Role.EDITOR)
    draft = get_object_or_404(Draft, pk=request.POST.get("draft") or 0, project=project)
    options = {
        "tags": request.POST.get("tags", ""),
        "summary": request.POST.get("summary", ""),
        "headline": request.POST.get("headline", ""),
    }
    try:
        when = _when(request)
        if when is None:
            publication = services.publication_publish(draft=draft, user=request.user, **options)
            messages.success(request, f"Published “{publication.headline}”.")
        else:
            publication = services.publication_schedule(
                draft=draft, user=request.user, when=when, **options
            )
            messages.success(request, f"Scheduled “{publication.headline}” for {when.isoformat()}.")
    except (ValidationError, DomainError) as exc:
        # The page again, with the reason next to the draft and what was typed kept.
        reason = exc.message if isinstance(exc, DomainError) else _errors_text(exc)
        posted = {
            "draft": draft.pk,
            "error": reason,
            "tags": options["tags"],
            "scheduled_for": request.POST.get("scheduled_for", ""),
        }
        return render(
            request,
            "publishing/publication_list.html",
            _list_page(request, project, role, posted=posted),
            status=exc.status_code if isinstance(exc, DomainError) else 400,
        )
    return redirect("publication_detail", slug=slug, publication_id=publication.pk)


def _publication(project: Project, publication_id: int) -> Publication:
    return get_object_or_404(
        Publication.objects.select_related("project", "draft"), pk=publication_id, project=project
    )


def _shown_errors(rows: Any, role: str | None) -> list[Delivery]:
    """Each row's error as this member may see it: the receiver's answer for admins only."""
    rows = list(rows)
    admin = role_at_least(role, Role.ADMIN)
    for row in rows:
        row.shown_error = row.last_error if admin else public_error(row.last_error)
    return rows


def _deliveries_context(publication: Publication, role: str | None) -> dict[str, Any]:
    rows = _shown_errors(
        Delivery.objects.filter(publication=publication)
        .select_related("destination", "version")
        .order_by("destination__name", "sequence"),
        role,
    )
    by_destination: dict[str, list[Delivery]] = {}
    for row in rows:
        by_destination.setdefault(row.destination.name, []).append(row)
    # Said when there is nothing yet: where a scheduled one will go, or why nothing went.
    names = list(
        Destination.objects.filter(project_id=publication.project_id)
        .order_by("name")
        .values_list("name", flat=True)
    )
    return {"deliveries": by_destination, "destination_names": names}


def _detail_context(
    project: Project, role: str, publication: Publication, **extra: Any
) -> dict[str, Any]:
    versions = list(PublicationVersion.objects.filter(publication=publication).order_by("number"))
    shown = []
    for index, version in enumerate(versions):
        previous = versions[index - 1] if index else None
        shown.append(
            {
                "version": version,
                "diff": diff.word_diff(previous.body_text, version.body_text) if previous else None,
                "headline_changed": previous is not None and previous.headline != version.headline,
                "previous_headline": previous.headline if previous else "",
                # Sanitised when written and again when shown (a rule change, an old row).
                "body_safe": sanitize(version.body_html),
            }
        )
    current = versions[-1] if versions else None
    correction = {
        "headline": current.headline if current else "",
        "summary": current.summary if current else "",
        "tags": ", ".join(current.tags) if current else "",
        "body": current.body_html if current else "",
        "note": "",
    }
    return {
        "project": project,
        "role": role,
        "publication": publication,
        "versions": list(reversed(shown)),
        "current": current,
        "correction": correction,
        # What the editor opens with: sanitised (the stored body was; a posted one may not be).
        "correction_body_safe": sanitize(correction["body"]),
        "events": publication.events.select_related("actor").order_by("-created_at", "-pk"),
        "can_publish": role_at_least(role, Role.EDITOR),
        **_deliveries_context(publication, role),
        **extra,
    }


@login_required
def publication_detail(request: HttpRequest, slug: str, publication_id: int) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    publication = _publication(project, publication_id)
    return render(
        request,
        "publishing/publication_detail.html",
        _detail_context(project, role, publication),
    )


@login_required
def publication_deliveries(request: HttpRequest, slug: str, publication_id: int) -> HttpResponse:
    """The deliveries table alone, for live updates."""
    project, role = project_get(user=request.user, slug=slug)
    publication = _publication(project, publication_id)
    return render(
        request,
        "publishing/_deliveries.html",
        {
            "project": project,
            "publication": publication,
            "can_publish": role_at_least(role, Role.EDITOR),
            **_deliveries_context(publication, role),
        },
    )


@login_required
@require_POST
def publication_action(request: HttpRequest, slug: str, publication_id: int) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug, minimum=Role.EDITOR)
    publication = _publication(project, publication_id)
    action = request.POST.get("action", "")
    back = redirect("publication_detail", slug=slug, publication_id=publication.pk)
    if action == "correct":
        return _correct(request, project, role, publication)
    try:
        if action == "unpublish":
            services.publication_unpublish(
                publication=publication, user=request.user, reason=request.POST.get("reason", "")
            )
            messages.success(request, "Unpublished; every destination is told to take it down.")
        elif action == "cancel_schedule":
            services.publication_schedule_cancel(publication=publication, user=request.user)
            messages.success(request, "Schedule cancelled.")
        elif action == "publish_now":
            services.publication_publish(
                draft=publication.draft, user=request.user, tags=publication.tags
            )
            messages.success(request, "Published.")
        else:
            messages.error(request, f"Unknown action {action!r}.")
    except ValidationError as exc:
        messages.error(request, _errors_text(exc))
    except DomainError as exc:
        messages.error(request, exc.message)
    return back


def _correct(
    request: HttpRequest, project: Project, role: str, publication: Publication
) -> HttpResponse:
    """A correction; on an error the page comes back with the reason and everything typed."""
    posted = {k: request.POST.get(k, "") for k in ("headline", "summary", "tags", "body", "note")}
    try:
        version = services.publication_correct(
            publication=publication,
            user=request.user,
            body=posted["body"],
            headline=posted["headline"],
            summary=posted["summary"],
            tags=posted["tags"],
            note=posted["note"],
            expected_version=int(request.POST.get("version") or 0) or None,
        )
    except (ValidationError, DomainError) as exc:
        reason = exc.message if isinstance(exc, DomainError) else _errors_text(exc)
        context = _detail_context(project, role, publication, correction_error=reason)
        context["correction"] = posted
        context["correction_body_safe"] = sanitize(posted["body"])
        status = exc.status_code if isinstance(exc, DomainError) else 400
        return render(request, "publishing/publication_detail.html", context, status=status)
    messages.success(request, f"Correction published as version {version.number}.")
    return redirect("publication_detail", slug=project.slug, publication_id=publication.pk)


@login_required
@require_POST
def delivery_retry(request: HttpRequest, slug: str, delivery_id: int) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.EDITOR)
    delivery = get_object_or_404(
        Delivery.objects.select_related("publication__project", "destination", "version"),
        pk=delivery_id,
        publication__project=project,
    )
    try:
        services.delivery_retry_now(delivery=delivery, user=request.user)
        messages.success(request, f"Sending to {delivery.destination.name} now.")
    except DomainError as exc:
        messages.error(request, exc.message)
    if request.POST.get("back") == "destination":
        return redirect("destination_log", slug=slug, destination_id=delivery.destination_id)
    return redirect("publication_detail", slug=slug, publication_id=delivery.publication_id)


# --- Destinations -------------------------------------------------------------------------------


@login_required
def destination_list(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    is_admin = role_at_least(role, Role.ADMIN)
    errors: dict[str, list[str]] = {}
    new_secret = None
    posted: dict[str, str] = {}
    if request.method == "POST":
        project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
        posted = {k: request.POST.get(k, "") for k in ("name", "kind", "url", "username", "secret")}
        try:
            destination, new_secret = services.destination_create(
                project=project, user=request.user, **posted
            )
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            if new_secret is None:
                messages.success(request, f"Destination “{destination.name}” added.")
                return redirect("destination_list", slug=slug)
            posted = {}
    posted.pop("secret", None)  # a typed secret is never sent back to the browser
    return render(
        request,
        "publishing/destinations.html",
        {
            "project": project,
            "role": role,
            "is_admin": is_admin,
            "destinations": Destination.objects.filter(project=project),
            "kinds": DestinationKind.choices,
            "errors": errors,
            "posted": posted,
            "new_secret": new_secret,
        },
    )


def _destination_log_context(project: Project, role: str, destination: Destination) -> dict:
    rows = _shown_errors(
        Delivery.objects.filter(destination=destination)
        .select_related("version", "publication")
        .order_by("-sequence")[:100],
        role,
    )
    counts = dict(
        Delivery.objects.filter(destination=destination)
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return {
        "project": project,
        "role": role,
        "destination": destination,
        "rows": rows,
        "counts": counts,
        "can_publish": role_at_least(role, Role.EDITOR),
    }


@login_required
def destination_log(request: HttpRequest, slug: str, destination_id: int) -> HttpResponse:
    """One destination's delivery log, newest first (live: the table reloads on events)."""
    project, role = project_get(user=request.user, slug=slug)
    destination = get_object_or_404(Destination, pk=destination_id, project=project)
    template = (
        "publishing/_destination_rows.html"
        if request.GET.get("rows")
        else "publishing/destination_log.html"
    )
    return render(request, template, _destination_log_context(project, role, destination))


@login_required
@require_POST
def destination_action(request: HttpRequest, slug: str, destination_id: int) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    destination = get_object_or_404(Destination, pk=destination_id, project=project)
    action = request.POST.get("action")
    if action in {"enable", "disable"}:
        services.destination_set_enabled(
            destination=destination, user=request.user, enabled=action == "enable"
        )
        messages.success(request, f"{destination.name} {action}d.")
    elif action == "delete":
        services.destination_delete(destination=destination, user=request.user)
        messages.success(request, f"{destination.name} deleted with its delivery log.")
    return redirect(reverse("destination_list", args=[slug]))
