"""How far the project's paraphrase index is (passages embedded of all), for the Archive page,
the draft page of a draft that waits for it, and the JSON endpoint their script polls."""

from __future__ import annotations

from typing import TypedDict

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from contentstudio.selectors import project_get
from review.models import SourcePassage


class IndexingProgress(TypedDict):
    total: int
    embedded: int
    percent: int  # floor, so 100 means done
    done: bool


def indexing_progress(*, project_id: int) -> IndexingProgress:
    passages = SourcePassage.objects.filter(project_id=project_id)
    total = passages.count()
    embedded = passages.filter(embedded_at__isnull=False).count()
    return IndexingProgress(
        total=total,
        embedded=embedded,
        percent=100 if not total else embedded * 100 // total,
        done=embedded >= total,
    )


@login_required
@require_GET
def indexing_status(request: HttpRequest, slug: str) -> JsonResponse:
    project, _ = project_get(user=request.user, slug=slug)
    return JsonResponse(dict(indexing_progress(project_id=project.pk)))
