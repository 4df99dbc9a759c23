"""Pages of the review app: the draft page with its checks, the archive, the policy."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from contentstudio.errors import Conflict, DomainError
from contentstudio.html import html_to_text, sanitize
from contentstudio.models import Membership, Project, Role, role_at_least
from contentstudio.selectors import project_get
from generation import selectors as gen_selectors
from generation.forms import generation_context
from generation.models import Draft
from review import archive, diff, editorial, indexing, lifecycle, policy, selectors, services
from review import queue as queue_mod
from review.checks import ethics
from review.lifecycle import DraftStatus
from review.models import (
    ArchiveDocument,
    Comment,
    CommentKind,
    DraftEvent,
    DraftRevision,
    ImportFormat,
    ImportRun,
    SourcePassage,
)
from review.services import adapters


def _draft(project: Project, draft_id: int) -> Draft:
    return get_object_or_404(
        Draft.objects.select_related(
            "job", "template_version__template", "candidate", "project", "assignment__assignee"
        ),
        pk=draft_id,
        project=project,
    )


def _revision_diff(draft: Draft, request: HttpRequest) -> dict[str, Any]:
    revisions = list(DraftRevision.objects.filter(draft=draft).select_related("author"))
    numbers = [r.number for r in revisions]
    by_number = {r.number: r for r in revisions}
    compare = None
    try:
        a, b = int(request.GET.get("rev_a", "")), int(request.GET.get("rev_b", ""))
    except ValueError:
        a = b = None
    if a in by_number and b in by_number:
        compare = {
            "a": a,
            "b": b,
            "pieces": diff.word_diff(
                html_to_text(by_number[a].body), html_to_text(by_number[b].body)
            ),
        }
    return {
        "revisions": revisions,
        "revision_numbers": numbers,
        "compare": compare,
        "model_vs_current": diff.word_diff(draft.model_output.strip(), html_to_text(draft.body)),
    }


def _draft_context(request: HttpRequest, project: Project, role: str, draft: Draft) -> dict:
    filters = queue_mod.parse_filters(QueryDict(request.GET.get("q", "")))
    return {
        "project": project,
        "role": role,
        "draft": draft,
        "can_edit": role_at_least(role, Role.EDITOR),
        "can_comment": role_at_least(role, Role.REVIEWER),
        "editable": draft.status in lifecycle.EDITABLE,
        "can_recheck": draft.status in lifecycle.ACTIONS["check"].moves
        and draft.status != DraftStatus.GENERATED,
        "actions": lifecycle.allowed_actions(draft=draft, role=role),
        "lock": editorial.lock_state(draft=draft, user=request.user),
        "body_html": sanitize(draft.body),
        "settings_json": json.dumps(draft.settings, indent=2, sort_keys=True),
        "queue_q": request.GET.get("q", ""),
        "queue_querystring": filters.querystring(),
        # The text's revision (1 = the model's output), not the row's optimistic-lock counter,
        # which every move of the lifecycle bumps.
        "revision_number": DraftRevision.objects.filter(draft=draft).count() or 1,
        "toxicity_thresholds": services.policy_get(project=project).toxicity_thresholds
        or policy.DEFAULT_TOXICITY_THRESHOLDS,
        **selectors.draft_review_context(draft=draft),
    }


def _activity_context(request: HttpRequest, draft: Draft) -> dict[str, Any]:
    comments = list(
        Comment.objects.filter(draft=draft).select_related("author").order_by("created_at", "pk")
    )
    children: dict[int | None, list[Comment]] = {}
    for comment in comments:
        children.setdefault(comment.parent_id, []).append(comment)

    def thread(parent_id: int | None, depth: int) -> list[tuple[Comment, int]]:
        rows: list[tuple[Comment, int]] = []
        for comment in children.get(parent_id, []):
            rows.append((comment, min(depth, 4)))
            rows.extend(thread(comment.pk, depth + 1))
        return rows

    return {
        "comment_rows": thread(None, 0),
        "events": DraftEvent.objects.filter(draft=draft)
        .select_related("actor")
        .order_by("-created_at", "-pk"),
        "regenerations": draft.regenerations.order_by("-created_at"),
        **_revision_diff(draft, request),
    }


@login_required
def draft_detail(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    draft = _draft(project, draft_id)
    context = _draft_context(request, project, role, draft)
    context.update(_activity_context(request, draft))
    filters = queue_mod.parse_filters(QueryDict(context["queue_q"]))
    context["neighbours"] = queue_mod.neighbours(user=request.user, filters=filters, draft=draft)
    context["assignable"] = editorial.assignable_members(draft=draft)
    context["comment_kinds"] = CommentKind.choices
    context["conflict"] = request.session.pop(f"conflict-{draft.pk}", None)
    return render(request, "review/draft_detail.html", context)


@login_required
def draft_panel(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    """The parts of the draft page that live updates replace: status, text, checks."""
    project, role = project_get(user=request.user, slug=slug)
    draft = _draft(project, draft_id)
    return render(
        request, "review/_draft_panel.html", _draft_context(request, project, role, draft)
    )


@login_required
def draft_activity(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    """Comments, revisions and history, re-rendered when they change."""
    project, _ = project_get(user=request.user, slug=slug)
    draft = _draft(project, draft_id)
    context = {"project": project, "draft": draft, **_activity_context(request, draft)}
    return render(request, "review/_draft_activity.html", context)


def _back(request: HttpRequest, project: Project, draft: Draft) -> HttpResponse:
    target = reverse("draft_detail", args=[project.slug, draft.pk])
    q = request.POST.get("q", "")
    return redirect(f"{target}?{urlencode({'q': q})}" if q else target)


def _error_text(exc: DomainError | ValidationError) -> str:
    return exc.message if isinstance(exc, DomainError) else " ".join(exc.messages)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


@login_required
@require_POST
def draft_action(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    """Approve, reject, request changes, release, reopen: one endpoint, the lifecycle decides."""
    project, _ = project_get(user=request.user, slug=slug)
    draft = _draft(project, draft_id)
    action = request.POST.get("action", "")
    try:
        moved = lifecycle.draft_transition(
            draft=draft,
            action=action,
            user=request.user,
            reason=request.POST.get("reason", ""),
            expected_version=_int(request.POST.get("version")),
        )
    except DomainError as exc:
        if _wants_json(request):
            body: dict[str, Any] = {"detail": exc.message}
            if isinstance(exc, Conflict):
                body["current"] = exc.current
            return JsonResponse(body, status=exc.status_code)
        messages.error(request, exc.message)
        return _back(request, project, draft)
    label = lifecycle.ACTIONS[action].label
    if _wants_json(request):
        return JsonResponse({"status": moved.status, "version": moved.version, "action": action})
    now = lifecycle.status_label(moved.status).lower()
    messages.success(request, f"{label}: the draft is now {now}.")
    return _back(request, project, moved)


@login_required
@require_POST
def draft_edit(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.EDITOR)
    draft = _draft(project, draft_id)
    try:
        editorial.draft_edit(
            draft=draft,
            user=request.user,
            body=request.POST.get("body", ""),
            title=request.POST.get("title"),
            expected_version=_int(request.POST.get("version")) or -1,
            note=request.POST.get("note", ""),
        )
    except (DomainError, ValidationError) as exc:
        # Never lose what they wrote: it comes back in the editor, with the reason (and, for a
        # stale version, what changed), shown once on the page they return to.
        request.session[f"conflict-{draft.pk}"] = {
            "message": _error_text(exc),
            "theirs": sanitize(request.POST.get("body", "")),
            "diff": exc.current.get("diff", []) if isinstance(exc, Conflict) else [],
        }
        return _back(request, project, draft)
    messages.success(request, "Saved as a new revision; the checks are running again.")
    return _back(request, project, draft)


@login_required
@require_POST
def draft_comment(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug)
    draft = _draft(project, draft_id)
    parent = None
    parent_id = _int(request.POST.get("parent"))
    if parent_id:
        parent = Comment.objects.filter(pk=parent_id, draft=draft).first()
        if parent is None:
            messages.error(request, "That comment belongs to another draft.")
            return _back(request, project, draft)
    try:
        editorial.comment_add(
            draft=draft,
            user=request.user,
            body=request.POST.get("body", ""),
            kind=request.POST.get("kind", CommentKind.COMMENT),
            parent=parent,
        )
    except (DomainError, ValidationError) as exc:
        messages.error(request, _error_text(exc))
    return _back(request, project, draft)


@login_required
@require_POST
def draft_assign(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.EDITOR)
    draft = _draft(project, draft_id)
    try:
        assignee, due_at = _assignee_and_due(request)
        editorial.draft_assign(draft=draft, user=request.user, assignee=assignee, due_at=due_at)
    except (DomainError, ValidationError) as exc:
        messages.error(request, _error_text(exc))
    else:
        messages.success(request, "Assignment saved.")
    return _back(request, project, draft)


def _assignee_and_due(request: HttpRequest) -> tuple[Any, Any]:
    from django.contrib.auth import get_user_model

    username = request.POST.get("assignee", "").strip()
    assignee = None
    if username:
        assignee = get_user_model().objects.filter(username=username).first()
        if assignee is None:
            raise ValidationError({"assignee": f"No user {username!r}."})
    due_raw = request.POST.get("due_at", "").strip()
    due_at = None
    if due_raw:
        parsed = parse_datetime(due_raw) or (
            parse_datetime(due_raw + ":00") if len(due_raw) == 16 else None
        )
        if parsed is None:
            raise ValidationError({"due_at": f"{due_raw!r} is not a date and time."})
        due_at = timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed
    return assignee, due_at


@login_required
@require_POST
def draft_lock(request: HttpRequest, slug: str, draft_id: int) -> JsonResponse:
    """Take, renew (POST) or give back (POST release=1) the soft edit lock."""
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.EDITOR)
    draft = _draft(project, draft_id)
    if request.POST.get("release"):
        editorial.lock_release(draft=draft, user=request.user)
        state = editorial.lock_state(draft=draft, user=request.user)
    else:
        state = editorial.lock_acquire(draft=draft, user=request.user)
    return JsonResponse(
        {
            "holder": state.holder,
            "mine": state.mine,
            "expires_at": state.expires_at.isoformat() if state.expires_at else None,
        }
    )


@login_required
@require_POST
def draft_regenerate(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.EDITOR)
    draft = _draft(project, draft_id)
    try:
        job = editorial.draft_regenerate(draft=draft, user=request.user)
    except (DomainError, ValidationError) as exc:
        messages.error(request, _error_text(exc))
        return _back(request, project, draft)
    return redirect("job_detail", slug=project.slug, job_id=job.pk)


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
    return _back(request, project, draft)


# --- The queue ------------------------------------------------------------------------------


def _queue_context(request: HttpRequest) -> dict[str, Any]:
    filters = queue_mod.parse_filters(request.GET)
    drafts = queue_mod.queue_drafts(user=request.user, filters=filters)
    # Page through narrow rows (ids, sorted on indexes), then fetch the page's 50 rows with
    # their joins: joining every matching draft before the LIMIT made a 10k-draft project's
    # page 2.6x slower than a 100-draft one's (bench/bench_queue.py).
    page = Paginator(drafts.values_list("pk", flat=True), filters.page_size).get_page(
        request.GET.get("page")
    )
    ids = list(page.object_list)
    by_id = {d.pk: d for d in drafts.filter(pk__in=ids)}
    page.object_list = [by_id[pk] for pk in ids if pk in by_id]
    roles = {m.project_id: m.role for m in Membership.objects.filter(user=request.user)}
    rows = [
        {
            "draft": d,
            "can_decide": request.user.is_superuser
            or role_at_least(roles.get(d.project_id), Role.EDITOR),
        }
        for d in page.object_list
    ]
    return {
        "filters": filters,
        "page": page,
        "rows": rows,
        "now": timezone.now(),
        "querystring": filters.querystring(),
        **queue_mod.filter_choices(user=request.user),
    }


@login_required
def queue(request: HttpRequest) -> HttpResponse:
    return render(request, "review/queue.html", _queue_context(request))


@login_required
def queue_rows(request: HttpRequest) -> HttpResponse:
    """The table body alone, for live updates."""
    return render(request, "review/_queue_rows.html", _queue_context(request))


@login_required
@require_POST
def queue_bulk(request: HttpRequest) -> HttpResponse:
    action = request.POST.get("action", "")
    ids = [i for i in (_int(v) for v in request.POST.getlist("draft")) if i]
    back = reverse("queue") + (f"?{request.POST.get('q')}" if request.POST.get("q") else "")
    if not ids:
        messages.error(request, "Select at least one draft.")
        return redirect(back)
    try:
        assignee, due_at = _assignee_and_due(request) if action == "assign" else (None, None)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(back)
    outcomes = editorial.bulk_act(
        user=request.user,
        draft_ids=ids,
        action=action,
        reason=request.POST.get("reason", ""),
        assignee=assignee,
        due_at=due_at,
    )
    done = [o for o in outcomes if o.ok]
    if done:
        messages.success(request, f"{len(done)} of {len(outcomes)} drafts done.")
    for outcome in outcomes:
        if not outcome.ok:
            messages.error(request, f"Draft {outcome.draft_id}: {outcome.message}")
    return redirect(back)


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
        "progress": indexing.indexing_progress(project_id=project.pk),
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
    shown: dict[str, Any] = {
        "toxicity_thresholds": current.toxicity_thresholds,
        "lexical_threshold": current.lexical_threshold,
        "lexical_draft_share": current.lexical_draft_share,
        "semantic_threshold": current.semantic_threshold,
        "semantic_share": current.semantic_share,
        "semantic_source_share": current.semantic_source_share,
        "blocking_rule_kinds": current.blocking_rule_kinds,
        "rules": current.rules or {},
    }
    if request.method == "POST":
        project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
        posted: dict[str, Any] = {
            "toxicity_thresholds": {
                c: request.POST.get(f"tox_{c}", "") for c in policy.DEFAULT_TOXICITY_THRESHOLDS
            },
            "lexical_threshold": request.POST.get("lexical_threshold"),
            "lexical_draft_share": request.POST.get("lexical_draft_share"),
            "semantic_threshold": request.POST.get("semantic_threshold"),
            "semantic_share": request.POST.get("semantic_share"),
            "semantic_source_share": request.POST.get("semantic_source_share"),
            "blocking_rule_kinds": request.POST.getlist("blocking_rule_kinds"),
            "rules": _rules_from_post(request.POST),
        }
        try:
            services.policy_update(project=project, user=request.user, **posted)
        except ValidationError as exc:
            errors = exc.message_dict
            shown = posted  # show what was typed, with the errors, not the stored policy
        else:
            messages.success(request, "Policy saved; it applies to drafts checked from now on.")
            return redirect("policy_edit", slug=project.slug)
    rules = shown["rules"]
    return render(
        request,
        "review/policy.html",
        {
            "project": project,
            "role": role,
            "is_admin": is_admin,
            "toxicity_model": adapters.toxicity_model_info(),
            "policy": shown,
            "errors": errors,
            "error_list": [(f, m) for f, ms in errors.items() for m in ms],
            "toxicity": [
                (c, shown["toxicity_thresholds"].get(c, d))
                for c, d in policy.DEFAULT_TOXICITY_THRESHOLDS.items()
            ],
            "rule_kinds": ethics.RULE_KINDS,
            "rules": rules,
            "regex_text": "\n".join(
                f"{r['name']}: {r['pattern']}" for r in rules.get("regexes", [])
            ),
            "blocked_text": "\n".join(rules.get("blocked_terms", [])),
            "disclosure_text": "\n".join(rules.get("required_disclosures", [])),
        },
        status=400 if errors else 200,
    )


@login_required
def project_home(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    context = {
        "project": project,
        "role": role,
        "can_generate": role_at_least(role, Role.EDITOR),
        "is_admin": role_at_least(role, Role.ADMIN),
        "jobs": gen_selectors.project_jobs(project_id=project.pk),
        "drafts": gen_selectors.project_drafts(project_id=project.pk),
    }
    if context["can_generate"]:
        context.update(generation_context(project=project))
    return render(request, "review/project_home.html", context)
