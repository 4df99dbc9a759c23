"""The draft page: the text with its checks, activity and history, and every action on a draft.

Each action checks the person's role in the draft's project (``project_get``) and calls one
service (``review.lifecycle``, ``review.editorial``, ``review.services``); the page is rendered
from the draft row, never from the request.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from contentstudio.errors import Conflict, DomainError
from contentstudio.html import html_to_text, sanitize
from contentstudio.models import Project, Role, role_at_least
from contentstudio.selectors import project_get
from generation.models import Draft
from review import diff, editorial, holds, lifecycle, selectors, services
from review import queue as queue_mod
from review.lifecycle import DraftStatus
from review.models import Comment, CommentKind, DraftEvent, DraftRevision
from review.views.common import assignee_and_due, error_text, int_or_none, wants_json


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
        "revision_number": editorial.text_revision(draft),
        "toxicity_thresholds": services.policy_get(project=project).toxicity_thresholds
        or holds.DEFAULT_TOXICITY_THRESHOLDS,
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
            expected_version=int_or_none(request.POST.get("version")),
        )
    except DomainError as exc:
        if wants_json(request):
            body: dict[str, Any] = {"detail": exc.message}
            if isinstance(exc, Conflict):
                body["current"] = exc.current
            return JsonResponse(body, status=exc.status_code)
        messages.error(request, exc.message)
        return _back(request, project, draft)
    label = lifecycle.ACTIONS[action].label
    if wants_json(request):
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
            expected_version=int_or_none(request.POST.get("version")) or -1,
            note=request.POST.get("note", ""),
            # The text the editor opened: a save after only the checks moved the draft on
            # (the version changed, the text did not) goes through.
            base_revision=int_or_none(request.POST.get("revision")),
        )
    except (DomainError, ValidationError) as exc:
        # Never lose what they wrote: it comes back in the editor, with the reason (and, for a
        # stale version, what changed), shown once on the page they return to.
        request.session[f"conflict-{draft.pk}"] = {
            "message": error_text(exc),
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
    parent_id = int_or_none(request.POST.get("parent"))
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
        messages.error(request, error_text(exc))
    return _back(request, project, draft)


@login_required
@require_POST
def draft_assign(request: HttpRequest, slug: str, draft_id: int) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.EDITOR)
    draft = _draft(project, draft_id)
    try:
        assignee, due_at = assignee_and_due(request)
        editorial.draft_assign(draft=draft, user=request.user, assignee=assignee, due_at=due_at)
    except (DomainError, ValidationError) as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, "Assignment saved.")
    return _back(request, project, draft)


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
        messages.error(request, error_text(exc))
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
