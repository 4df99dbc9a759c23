"""Reads of the generation app, scoped to what the user may see."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet
from django.urls import reverse

from contentstudio.models import Project
from contentstudio.selectors import membership_role
from generation import stream
from generation.models import Candidate, Draft, GenerationJob, LanguageModel, PromptTemplate
from generation.quality import best_index, rank_order


def models_listed(
    *, projects: Iterable[Project] | QuerySet[Project], enabled_only: bool = False
) -> QuerySet[LanguageModel]:
    """The models that may be shown beside ``projects``: the shared ones and those tuned for
    one of these projects. A tuned model's weights (and its name) come from its project's
    texts, so it is never listed to anyone outside that project. Every list of models a
    person or a token sees goes through here (pass the projects the page or token shows)."""
    if isinstance(projects, QuerySet):
        ids: Any = projects.values("pk")
    else:
        ids = [p.pk for p in projects]
    models = LanguageModel.objects.filter(Q(project__isnull=True) | Q(project_id__in=ids))
    if enabled_only:
        models = models.filter(enabled=True)
    return models.order_by("name")


def job_for_user(*, user: AbstractBaseUser | AnonymousUser, job_id: int) -> GenerationJob | None:
    """The job if the user is a member of its project (any role), else None."""
    job = (
        GenerationJob.objects.select_related("project", "model", "template_version__template")
        .filter(pk=job_id)
        .first()
    )
    if job is None or membership_role(user=user, project=job.project) is None:
        return None
    return job


def project_jobs(*, project_id: int, limit: int = 20) -> QuerySet[GenerationJob]:
    return (
        GenerationJob.objects.filter(project_id=project_id)
        .select_related("model", "created_by", "template_version__template")
        .order_by("-created_at")[:limit]
    )


def project_jobs_all(*, project_id: int) -> QuerySet[GenerationJob]:
    """Every job of a project, unordered (the API pages them by keyset)."""
    return GenerationJob.objects.filter(project_id=project_id).select_related(
        "model", "created_by", "template_version__template"
    )


def project_drafts(*, project_id: int, limit: int = 50) -> QuerySet[Draft]:
    return (
        Draft.objects.filter(project_id=project_id)
        .select_related("template_version__template", "job")
        .order_by("-created_at")[:limit]
    )


def project_templates(*, project_id: int) -> QuerySet[PromptTemplate]:
    return PromptTemplate.objects.filter(project_id=project_id, archived=False).prefetch_related(
        "versions"
    )


def job_snapshot(*, job_id: int) -> dict[str, Any]:
    """The state of a job for a client that (re)connects: the text so far of each candidate.

    While the job runs, the worker's live state (updated with every frame) is fresher than the
    periodically saved rows; once the job has ended the rows are complete.
    """
    job = GenerationJob.objects.select_related("project").get(pk=job_id)
    candidates = list(
        Candidate.objects.filter(job_id=job_id).select_related("draft").order_by("index")
    )
    state = stream.live_state(job_id)
    # The sequence number always comes from the live state (a final frame may still be in
    # flight: the client must be able to tell it is already included); its texts only matter
    # while the job runs.
    seq = state["seq"] if state else 0
    live = None if job.is_final else state
    rows = []
    for c in candidates:
        draft = getattr(c, "draft", None)
        text, tokens = c.text, c.completion_tokens
        if live is not None and str(c.index) in live["texts"]:
            live_text = live["texts"][str(c.index)]
            if len(live_text) >= len(text):
                text, tokens = live_text, live["tokens"].get(str(c.index), tokens)
        rows.append(
            {
                "index": c.index,
                "seed": c.seed,
                "status": c.status,
                "text": text,
                "tokens": tokens,
                "tokens_per_second": c.tokens_per_second,
                "finish_reason": c.finish_reason,
                "draft_id": draft.pk if draft else None,
                "draft_url": (
                    reverse("draft_detail", args=[job.project.slug, draft.pk]) if draft else None
                ),
                "quality": quality_summary(draft),
            }
        )
    mark_best(rows)
    return {
        "type": "job.snapshot",
        "seq": seq,
        "job": job.pk,
        "status": job.status,
        "error": job.error,
        "cancel_requested": job.cancel_requested_at is not None,
        "candidates": rows,
    }


def candidate_states(*, job_id: int) -> list[stream.CandidateState]:
    """Each candidate's saved state (status, text, tokens, draft), in order: what a final
    status frame carries."""
    rows = Candidate.objects.filter(job_id=job_id).select_related("draft").order_by("index")
    states: list[stream.CandidateState] = []
    for c in rows:
        draft = getattr(c, "draft", None)
        states.append(
            {
                "index": c.index,
                "status": c.status,
                "text": c.text,
                "tokens": c.completion_tokens,
                "tokens_per_second": c.tokens_per_second,
                "finish_reason": c.finish_reason,
                "draft_id": draft.pk if draft else None,
                "quality": quality_summary(draft),
            }
        )
    mark_best(states)
    return states


def quality_summary(draft: Draft | None) -> dict[str, Any] | None:
    """What a page shows of a draft's quality signals: the score, the reasons, the marks."""
    quality = (draft.quality if draft is not None else None) or {}
    if quality.get("score") is None:
        return None
    unsupported = quality.get("unsupported") or []
    return {
        "score": quality["score"],
        "reasons": list(quality.get("reasons") or []),
        "off_brief": bool(quality.get("off_brief")),
        "verify": sum(1 for s in unsupported if s.get("status") != "contradiction"),
        "contradictions": sum(1 for s in unsupported if s.get("status") == "contradiction"),
        "best": False,
        "rank": None,  # set by mark_best with the job's other candidates
    }


def mark_best(rows: list[Any]) -> None:
    """Give each scored row its place in the on-brief-first order (``quality["rank"]``, 0 first;
    the page script orders by it) and mark the first as the best (of two or more scored)."""
    qualities = [r.get("quality") for r in rows]
    scored = sum(q is not None for q in qualities)
    for rank, i in enumerate(rank_order(qualities)):
        if qualities[i] is not None:
            qualities[i]["rank"] = rank
            qualities[i]["best"] = rank == 0 and scored > 1


def best_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Candidates in the on-brief-first order (``generation.quality.rank_order``: on brief
    before off brief, then the higher quality score; unscored ones last, by index)."""
    rows = sorted(rows, key=lambda r: r["index"])
    return [rows[i] for i in rank_order([r.get("quality") for r in rows])]


def job_best_drafts(*, job_ids: Iterable[int]) -> set[int]:
    """The ids of the best draft of each of ``job_ids`` (jobs of two or more scored drafts)."""
    by_job: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    rows = Draft.objects.filter(job_id__in=set(job_ids)).order_by("candidate__index")
    for draft_id, job_id, quality in rows.values_list("pk", "job_id", "quality"):
        by_job.setdefault(job_id, []).append((draft_id, quality or {}))
    best: set[int] = set()
    for drafts in by_job.values():
        qualities = [q for _, q in drafts]
        index = best_index(qualities)
        if index is not None and sum(q.get("score") is not None for q in qualities) > 1:
            best.add(drafts[index][0])
    return best
