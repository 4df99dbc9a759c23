"""Reads of the generation app, scoped to what the user may see."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.urls import reverse

from contentstudio.selectors import membership_role
from generation import stream
from generation.models import Candidate, Draft, GenerationJob, PromptTemplate


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
            }
        )
    return {
        "type": "job.snapshot",
        "seq": seq,
        "job": job.pk,
        "status": job.status,
        "error": job.error,
        "cancel_requested": job.cancel_requested_at is not None,
        "candidates": rows,
    }
