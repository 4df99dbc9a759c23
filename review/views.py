"""Pages of the review app: the draft page with its checks, the archive, the policy."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from contentstudio.errors import DomainError
from contentstudio.models import Project, Role, role_at_least
from contentstudio.selectors import project_get
from generation.models import Draft
from review import archive, lifecycle, policy, selectors, services
from review.checks.ethics import DEFAULT_RULES
from review.models import ArchiveDocument, ImportFormat, ImportRun, SourcePassage


def _draft(project: Project, draft_id: int) -> Draft:
    return get_object_or_404(
        Draft.objects.select_related("job", "template_version__template", "candidate", "project"),
        pk=draft_id,
        project=project,
    )


def _draft_context(request: HttpRequest, project: Project, role: str, draft: Draft) -> dict:
    return {
        "project": project,
        "role": role,
        "draft": draft,
        "can_edit": role_at_least(role, Role.EDITOR),
        "actions": lifecycle.allowed_actions(draft=draft, role=role),
        "settings_json": json.dumps(draft.settings, indent=2, sort_keys=True),
        **selectors.draft_review_context(draft=draft),
    }


@login_required
def draft_detail(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    draft = _draft(project, draft_id)
    return render(
        request, "review/draft_detail.html", _draft_context(request, project, role, draft)
    )


@login_required
def draft_panel(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    """The parts of the draft page that live updates replace: status, text, checks."""
    project, role = project_get(user=request.user, slug=slug)
    draft = _draft(project, draft_id)
    return render(
        request, "review/_draft_panel.html", _draft_context(request, project, role, draft)
    )


@login_required
@require_POST
def draft_recheck(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.EDITOR)
    draft = _draft(project, draft_id)
    try:
        services.draft_checks_rerun(draft=draft, user=request.user)
        messages.info(request, "The checks are running again.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("draft_detail", slug=project.slug, draft_id=draft.pk)


# --- Archive --------------------------------------------------------------------------------


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
    )
    query = request.GET.get("q", "").strip()
    if query:
        documents = documents.filter(title__icontains=query) | documents.filter(
            text__icontains=query
        )
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
        "document_count": ArchiveDocument.objects.filter(project=project).count(),
        "passage_count": passages.count(),
        "embedded_count": passages.filter(embedded_at__isnull=False).count(),
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


# --- Policy ---------------------------------------------------------------------------------


def _rules_from_post(data: Any) -> dict[str, Any]:
    def lines(name: str) -> list[str]:
        return [line.strip() for line in data.get(name, "").splitlines() if line.strip()]

    regexes = []
    for line in lines("regexes"):
        name, sep, pattern = line.partition(":")
        regexes.append(
            {"name": name.strip(), "pattern": pattern.strip()}
            if sep
            else {"name": line[:40], "pattern": line}
        )
    return {
        "blocked_terms": lines("blocked_terms"),
        "regexes": regexes,
        "pii": {k: data.get(f"pii_{k}") == "on" for k in ("email", "phone", "card")},
        "required_disclosures": lines("required_disclosures"),
        "claims": {
            k: data.get(f"claims_{k}") == "on" for k in ("percentages", "statistics", "quotations")
        },
    }


@login_required
def policy_edit(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    current = services.policy_get(project=project)
    errors: dict[str, list[str]] = {}
    is_admin = role_at_least(role, Role.ADMIN)
    if request.method == "POST":
        project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
        try:
            services.policy_update(
                project=project,
                user=request.user,
                toxicity_thresholds={
                    c: request.POST.get(f"tox_{c}", "") for c in policy.DEFAULT_TOXICITY_THRESHOLDS
                },
                lexical_threshold=request.POST.get("lexical_threshold"),
                semantic_threshold=request.POST.get("semantic_threshold"),
                semantic_share=request.POST.get("semantic_share"),
                blocking_rule_kinds=request.POST.getlist("blocking_rule_kinds"),
                rules=_rules_from_post(request.POST),
            )
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            messages.success(request, "Policy saved; it applies to drafts checked from now on.")
            return redirect("policy_edit", slug=project.slug)
    rules = current.rules or {}
    return render(
        request,
        "review/policy.html",
        {
            "project": project,
            "role": role,
            "is_admin": is_admin,
            "policy": current,
            "errors": errors,
            "error_list": [(f, m) for f, ms in errors.items() for m in ms],
            "toxicity": [
                (c, current.toxicity_thresholds.get(c, d))
                for c, d in policy.DEFAULT_TOXICITY_THRESHOLDS.items()
            ],
            "rule_kinds": policy.RULE_KINDS,
            "rules": rules,
            "regex_text": "\n".join(
                f"{r['name']}: {r['pattern']}" for r in rules.get("regexes", [])
            ),
            "blocked_text": "\n".join(rules.get("blocked_terms", [])),
            "disclosure_text": "\n".join(rules.get("required_disclosures", [])),
            "default_rules": DEFAULT_RULES,
        },
        status=400 if errors else 200,
    )
