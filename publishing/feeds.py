"""Feeds for ordinary readers, and the project setting that opens them.

A project's feed is private until an admin makes it public: then ``/feeds/<slug>/feed.json``
and ``feed.atom`` answer anyone, without a session or a token, and 404 otherwise (so a closed
project is not told apart from a missing one). A public feed needs the project's public base
URL, because its item links must take a reader to the published article, never to the studio.
The members' feeds under ``/api/v1/`` use the same links when the base URL is set, and the
studio's publication page when it is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from contentstudio.api import etag
from contentstudio.models import Project, Role, role_at_least
from contentstudio.selectors import project_get, require_role
from publishing import formats, selectors
from publishing.models import FeedSettings, Publication

PLACEHOLDERS = ("{guid}", "{slug}")


# --- Selectors ------------------------------------------------------------------------------


def feed_settings_get(*, project: Project) -> FeedSettings:
    """The project's feed settings (an unsaved, closed one when none were saved)."""
    return FeedSettings.objects.filter(project=project).first() or FeedSettings(project=project)


def article_url(base_url: str, publication: Publication) -> str:
    """The published article's public address under ``base_url``."""
    if not any(p in base_url for p in PLACEHOLDERS):
        base_url = base_url.rstrip("/") + "/{guid}"
    return base_url.replace("{guid}", str(publication.guid)).replace(
        "{slug}", slugify(publication.headline) or str(publication.guid)
    )


def public_home_url(base_url: str) -> str:
    """The reader's site: the base URL up to its first placeholder."""
    cut = min((base_url.find(p) for p in PLACEHOLDERS if p in base_url), default=len(base_url))
    return base_url[:cut]


def article_links(
    request: HttpRequest, project: Project, settings: FeedSettings
) -> Callable[[Publication], str]:
    """Item links for the members' feeds: public addresses when configured, else the studio."""
    if settings.public_base_url:
        return lambda publication: article_url(settings.public_base_url, publication)
    return lambda publication: request.build_absolute_uri(
        reverse("publication_detail", args=[project.slug, publication.pk])
    )


# --- Service --------------------------------------------------------------------------------


def feed_settings_update(
    *, project: Project, user: AbstractBaseUser, public: bool, public_base_url: str
) -> FeedSettings:
    """Save the project's feed settings (project admins only). Raises ValidationError naming
    the field: a bad URL, or a public feed without one."""
    require_role(user=user, project=project, minimum=Role.ADMIN)
    base = public_base_url.strip()
    errors: dict[str, list[str]] = {}
    if base:
        try:
            URLValidator(schemes=["http", "https"])(
                base.replace("{guid}", "g").replace("{slug}", "s")
            )
        except ValidationError:
            errors["public_base_url"] = [
                "Enter the http(s) address of the site where readers find the articles."
            ]
    if public and not base:
        errors["public_base_url"] = [
            "A public feed needs the public base URL: its links take readers to the articles."
        ]
    if errors:
        raise ValidationError(errors)
    settings, _ = FeedSettings.objects.update_or_create(
        project=project,
        defaults={"public": public, "public_base_url": base, "updated_by": user},
    )
    return settings


# --- Public feeds ---------------------------------------------------------------------------


def _public_settings(slug: str) -> FeedSettings:
    settings = (
        FeedSettings.objects.filter(project__slug=slug, public=True)
        .select_related("project")
        .first()
    )
    if settings is None or not settings.public_base_url:
        raise Http404("No public feed here.")
    return settings


def _feed_args(request: HttpRequest, settings: FeedSettings) -> dict[str, Any]:
    project = settings.project
    return {
        "title": project.name,
        "home_url": public_home_url(settings.public_base_url),
        "feed_url": request.build_absolute_uri(request.path),
        "versions": selectors.feed_versions(project_id=project.pk),
        "article_url": lambda publication: article_url(settings.public_base_url, publication),
    }


def _public_response(request: HttpRequest, response: HttpResponse, body: bytes) -> HttpResponse:
    tag = etag(body)
    if tag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponse(status=304)
    response["ETag"] = tag
    response["Cache-Control"] = "public, max-age=300"
    # Web-based feed readers fetch from their own origin; the feed holds nothing private.
    response["Access-Control-Allow-Origin"] = "*"
    return response


@require_GET
def public_feed_json(request: HttpRequest, slug: str) -> HttpResponse:
    settings = _public_settings(slug)
    feed = formats.json_feed(**_feed_args(request, settings))
    response = JsonResponse(feed, content_type="application/feed+json")
    return _public_response(request, response, response.content)


@require_GET
def public_feed_atom(request: HttpRequest, slug: str) -> HttpResponse:
    settings = _public_settings(slug)
    xml = formats.atom_feed(**_feed_args(request, settings))
    response = HttpResponse(xml, content_type="application/atom+xml; charset=utf-8")
    return _public_response(request, response, xml.encode())


# --- The settings page ----------------------------------------------------------------------


@login_required
def feed_settings_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Members see whether the feed is public and its addresses; admins change it."""
    project, role = project_get(user=request.user, slug=slug)
    settings = feed_settings_get(project=project)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
        public = request.POST.get("public") == "on"
        base = request.POST.get("public_base_url", "")
        try:
            feed_settings_update(
                project=project, user=request.user, public=public, public_base_url=base
            )
        except ValidationError as exc:
            errors = exc.message_dict
            settings.public, settings.public_base_url = public, base
        else:
            messages.success(request, "Feed settings saved.")
            return redirect("feed_settings", slug=slug)
    return render(
        request,
        "publishing/feed_settings.html",
        {
            "project": project,
            "role": role,
            "is_admin": role_at_least(role, Role.ADMIN),
            "settings": settings,
            "errors": errors,
            "public_json": request.build_absolute_uri(reverse("public_feed_json", args=[slug])),
            "public_atom": request.build_absolute_uri(reverse("public_feed_atom", args=[slug])),
        },
    )
