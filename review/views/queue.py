"""The approval queue: every draft the person may see across projects, filtered and paged."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from contentstudio.html import html_to_text
from contentstudio.models import Membership, Role, role_at_least
from generation.selectors import job_best_drafts
from review import editorial
from review import queue as queue_mod
from review.views.common import assignee_and_due, int_or_none

SNIPPET_CHARS = 160


def _snippet(body: str) -> str:
    """The start of the text as plain text on one line (the template escapes it)."""
    text = " ".join(html_to_text(body).split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"


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
    best = job_best_drafts(job_ids={d.job_id for d in page.object_list})
    rows = [
        {
            "draft": d,
            "can_decide": request.user.is_superuser
            or role_at_least(roles.get(d.project_id), Role.EDITOR),
            # Candidates of one job share their title: the opening words tell them apart.
            "snippet": _snippet(d.body),
            "best": d.pk in best,
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
    ids = [i for i in (int_or_none(v) for v in request.POST.getlist("draft")) if i]
    back = reverse("queue") + (f"?{request.POST.get('q')}" if request.POST.get("q") else "")
    if not ids:
        messages.error(request, "Select at least one draft.")
        return redirect(back)
    try:
        assignee, due_at = assignee_and_due(request) if action == "assign" else (None, None)
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
