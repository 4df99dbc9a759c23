"""The archive pages: documents, imports and their progress, and the paraphrase index's progress.

Reading needs membership of the project; importing and deleting need its admin role.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from contentstudio.models import Role, role_at_least
from contentstudio.selectors import project_get
from review import archive, selectors, services
from review.checks.language import language_name
from review.models import ArchiveDocument, ImportFormat, ImportRun, SourcePassage


@login_required
def archive_list(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    documents = ArchiveDocument.objects.filter(project=project).only(
        "pk",
        "title",
        "citation",
        "license",
        "author",
        "published_date",
        "imported_at",
        "source_url",
        "language",
    )
    query = request.GET.get("q", "").strip()
    if query:
        documents = documents.filter(title__icontains=query) | documents.filter(
            text__icontains=query
        )
    language = request.GET.get("language", "").strip().lower()[:8]
    if language:
        documents = documents.filter(language=language)
    page = Paginator(documents.order_by("-imported_at", "-pk"), 50).get_page(
        request.GET.get("page")
    )
    passages = SourcePassage.objects.filter(project=project)
    context: dict[str, Any] = {
        "project": project,
        "role": role,
        "is_admin": role_at_least(role, Role.ADMIN),
        "page": page,
        "query": query,
        "language": language,
        # The languages of the project's documents, for the filter: [(code, name, count)].
        "languages": [
            (row["language"], language_name(row["language"]), row["n"])
            for row in ArchiveDocument.objects.filter(project=project)
            .exclude(language="")
            .values("language")
            .annotate(n=Count("pk"))
            .order_by("-n", "language")
        ],
        "document_count": ArchiveDocument.objects.filter(project=project).count(),
        "passage_count": passages.count(),
        "embedded_count": passages.filter(embedded_at__isnull=False).count(),
        "progress": selectors.indexing_progress(project_id=project.pk),
        "runs": selectors.import_runs(project_id=project.pk),
        "formats": ImportFormat.choices,
        "fields": archive.FIELDS,
        "errors": {},
    }
    return render(request, "review/archive_list.html", context)


@login_required
@require_POST
def archive_import(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    defaults = {
        name: request.POST.get(f"default_{name}", "").strip()
        for name in ("license", "author", "citation")
    }
    try:
        run = services.import_run_create(
            project=project,
            user=request.user,
            upload=request.FILES.get("file"),
            fmt=request.POST.get("format", ""),
            mapping=request.POST.get("mapping", ""),
            defaults=defaults,
        )
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            for error in errors:
                messages.error(request, f"{field}: {error}")
        return redirect("archive_list", slug=project.slug)
    messages.info(request, f"Importing {run.source_name}: progress is shown below.")
    return redirect("archive_list", slug=project.slug)


@login_required
def import_status(request: HttpRequest, slug: str, run_id: int) -> JsonResponse:
    project, _ = project_get(user=request.user, slug=slug)
    run = get_object_or_404(ImportRun, pk=run_id, project=project)
    return JsonResponse(
        {
            "id": run.pk,
            "status": run.status,
            "total": run.total,
            "processed": run.processed,
            "imported": run.imported,
            "duplicates": run.duplicates,
            "percent": run.percent,
            "errors": run.errors[:200],
            "error_count": len(run.errors),
            "error": run.error,
            "encodings": run.encodings,
        }
    )


@login_required
@require_POST
def document_delete(request: HttpRequest, slug: str, document_id: int) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    document = get_object_or_404(ArchiveDocument, pk=document_id, project=project)
    services.document_delete(document=document, user=request.user)
    messages.info(request, "Document removed from the archive.")
    return redirect("archive_list", slug=project.slug)


@login_required
def document_detail(request: HttpRequest, slug: str, document_id: int) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    document = get_object_or_404(ArchiveDocument, pk=document_id, project=project)
    return render(
        request,
        "review/document_detail.html",
        {
            "project": project,
            "role": role,
            "document": document,
            "is_admin": role_at_least(role, Role.ADMIN),
        },
    )


@login_required
@require_GET
def indexing_status(request: HttpRequest, slug: str) -> JsonResponse:
    project, _ = project_get(user=request.user, slug=slug)
    return JsonResponse(dict(selectors.indexing_progress(project_id=project.pk)))
