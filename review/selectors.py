"""Reads of the review app."""

from __future__ import annotations

from typing import Any

from django.db.models import Max, QuerySet

from contentstudio.html import html_to_text
from generation.models import Draft
from review import highlight
from review.models import CheckResult, DraftEvent, ImportRun


def latest_checks(*, draft: Draft) -> list[CheckResult]:
    """The results of the newest check run of the draft (one per kind, in pipeline order)."""
    newest = draft.checks.aggregate(v=Max("draft_version"))["v"]
    if newest is None:
        return []
    order = {"toxicity": 0, "ethics": 1, "lexical": 2, "semantic": 3}
    results = list(draft.checks.filter(draft_version=newest))
    return sorted(results, key=lambda r: order.get(r.kind, 9))


def draft_review_context(*, draft: Draft) -> dict[str, Any]:
    """What the draft page shows of the checks: highlighted text, scores, matches."""
    text = html_to_text(draft.body)
    checks = latest_checks(draft=draft)
    spans = [span for check in checks for span in check.spans]
    by_kind = {check.kind: check for check in checks}
    lexical = by_kind.get("lexical")
    side_by_side = []
    if lexical is not None:
        for match in (lexical.details or {}).get("matches", [])[:20]:
            source = match.get("source") or {}
            side_by_side.append(
                {
                    "match": match,
                    "source": source,
                    "draft_passages": [text[s:e] for s, e in match.get("draft_spans", [])],
                    "source_segments": highlight.mark_spans(
                        source.get("text", ""), match.get("source_spans", [])
                    ),
                }
            )
    semantic = by_kind.get("semantic")
    paraphrases = []
    if semantic is not None:
        for match in (semantic.details or {}).get("matches", [])[:30]:
            paraphrases.append(
                {
                    "match": match,
                    "source": match.get("source") or {},
                    "draft_sentence": text[match["draft_start"] : match["draft_end"]],
                }
            )
    hold_reasons: list[str] = []
    last_route = (
        DraftEvent.objects.filter(draft=draft, action__in=["hold", "pass"])
        .order_by("-created_at", "-pk")
        .first()
    )
    if last_route is not None and last_route.action == "hold":
        hold_reasons = (last_route.data or {}).get("reasons", [])
    indexing_progress = None
    if semantic is not None and (semantic.details or {}).get("partial"):
        from review.indexing import indexing_progress as progress_of

        indexing_progress = progress_of(project_id=draft.project_id)
    return {
        "indexing_progress": indexing_progress,
        "segments": highlight.segments(text, spans),
        "checks": checks,
        "side_by_side": side_by_side,
        "paraphrases": paraphrases,
        "hold_reasons": hold_reasons,
        "legend": [
            (kind, label, sum(1 for s in spans if s.get("kind") == kind))
            for kind, label in highlight.KIND_LABELS.items()
        ],
    }


def import_runs(*, project_id: int, limit: int = 10) -> QuerySet[ImportRun]:
    return ImportRun.objects.filter(project_id=project_id).order_by("-created_at")[:limit]
