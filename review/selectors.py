"""Reads of the review app."""

from __future__ import annotations

from typing import Any, TypedDict

from django.db.models import Max, QuerySet

from contentstudio.html import html_to_text
from generation.models import Draft
from generation.quality import unsupported_specifics
from generation.services.quality import job_brief, source_texts
from review import highlight
from review.models import CheckResult, DraftEvent, ImportRun, Policy, PolicyEvent, SourcePassage


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
    specifics = draft_specifics(draft=draft, text=text)
    spans = [span for check in checks for span in check.spans] + [
        {
            "start": s["start"],
            "end": s["end"],
            "kind": s["status"],
            "label": ("Contradiction: " if s["status"] == "contradiction" else "Verify: ")
            + s.get("reason", ""),
        }
        for s in specifics
    ]
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
    # Sent to the queue although some checks could not read its language (the project's
    # policy informs rather than holds): the editor is told which, and why.
    check_notes: list[str] = []
    if last_route is not None and last_route.action == "pass":
        check_notes = (last_route.data or {}).get("notes", [])
    progress = None
    if any((c.details or {}).get("partial") for c in by_kind.values()):
        progress = indexing_progress(project_id=draft.project_id)
    return {
        "indexing_progress": progress,
        "segments": highlight.segments(text, spans),
        "checks": checks,
        "side_by_side": side_by_side,
        "paraphrases": paraphrases,
        "hold_reasons": hold_reasons,
        "check_notes": check_notes,
        "quality": draft.quality or {},
        "specifics": specifics,
        "legend": [
            (kind, label, sum(1 for s in spans if s.get("kind") == kind))
            for kind, label in highlight.KIND_LABELS.items()
            # The marks of the quality signals, for drafts that have them.
            if draft.quality or kind not in ("contradiction", "verify")
        ],
    }


def draft_specifics(*, draft: Draft, text: str) -> list[dict[str, Any]]:
    """The numbers, dates, names and quotations of the draft's current ``text`` that neither
    its brief nor the sources given to the model state ("verify"), and the figures that
    contradict the brief; read on the text as it is now, so an edit moves the marks with it."""
    if not draft.quality:  # written before the signals existed: not judged
        return []
    return list(
        unsupported_specifics(text, job_brief(draft.job), source_texts(draft.engine) or None)
    )


def import_runs(*, project_id: int, limit: int = 10) -> QuerySet[ImportRun]:
    return ImportRun.objects.filter(project_id=project_id).order_by("-created_at")[:limit]


class IndexingProgress(TypedDict):
    total: int
    embedded: int
    percent: int  # floor, so 100 means done
    done: bool


def indexing_progress(*, project_id: int) -> IndexingProgress:
    """How far the project's paraphrase index is (passages embedded of all), for the Archive
    page, the draft page of a draft that waits for it, and the JSON endpoint they poll."""
    passages = SourcePassage.objects.filter(project_id=project_id)
    total = passages.count()
    embedded = passages.filter(embedded_at__isnull=False).count()
    return IndexingProgress(
        total=total,
        embedded=embedded,
        percent=100 if not total else embedded * 100 // total,
        done=embedded >= total,
    )


def policy_history(*, policy: Policy, limit: int = 10) -> list[PolicyEvent]:
    """The newest changes of ``policy``, newest first, with who made them."""
    return list(
        PolicyEvent.objects.filter(policy=policy)
        .select_related("actor")
        .order_by("-created_at", "-pk")[:limit]
    )
