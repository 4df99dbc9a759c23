"""Writes of generation jobs: create (validate, enqueue on commit), move, cancel, fail.

Every move goes through ``job_transition`` (the job lifecycle's table, a conditional UPDATE and
a JobEvent in one transaction). The worker's side of a job is ``generation.runner``; the
periodic sweep is ``generation.services.sweep``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from contentstudio import realtime
from contentstudio.errors import InvalidTransition
from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from generation import stream
from generation.models import (
    JOB_LIFECYCLE,
    Candidate,
    CandidateStatus,
    Draft,
    GenerationJob,
    JobEvent,
    JobStatus,
    LanguageModel,
    PromptTemplateVersion,
)
from generation.rules import candidate_settings, resolve_settings
from generation.selectors import candidate_states
from generation.services.templates import clean_topup, template_render

MAX_SEED_TEXT_LENGTH = 20_000
# At most this many archive passages as background (the context decides how many fit).
MAX_BACKGROUND_PASSAGES = 8


def default_model() -> LanguageModel | None:
    shared = LanguageModel.objects.filter(enabled=True, project__isnull=True)
    return shared.filter(is_default=True).first() or shared.order_by("pk").first()


def job_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    model: LanguageModel | None = None,
    template_version: PromptTemplateVersion | None = None,
    variables: Mapping[str, Any] | None = None,
    seed_text: str = "",
    settings: Mapping[str, Any] | None = None,
    n_candidates: int = 1,
    base_seed: int | None = None,
    parent_draft: Draft | None = None,
    background: int | None = None,
    topup: int | None = None,
) -> GenerationJob:
    """Validate a generation request, create the job with its candidates, enqueue it on commit.

    ``background``: how many passages of the project's archive the worker retrieves for the
    brief and puts into the prompt (None: as many as the template asks for; 0: none).
    ``topup``: how many more candidates the worker draws when none of the job's own covers
    half of the brief's key terms (None: as the template says, 0 for a free prompt; 0: none).

    Raises ValidationError (a dict naming each bad field) and PermissionDenied / Http404.
    """
    from generation import tasks  # tasks import services

    require_role(user=user, project=project, minimum=Role.EDITOR)
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    model = model or default_model()
    if model is None:
        add("model", "No language model is configured; an admin must add one.")
    elif not model.enabled:
        add("model", f"Model {model.name} is disabled.")
    elif model.project_id is not None and model.project_id != project.pk:
        # A model tuned on another project's texts: never say more than that it is not here.
        add("model", "No such model.")

    if isinstance(n_candidates, bool) or not isinstance(n_candidates, int):
        add("n_candidates", "A whole number from 1 to 8 is required.")
    elif not 1 <= n_candidates <= django_settings.GENERATION_MAX_CANDIDATES:
        add(
            "n_candidates",
            f"Between 1 and {django_settings.GENERATION_MAX_CANDIDATES} candidates.",
        )

    if base_seed is not None and (
        isinstance(base_seed, bool) or not isinstance(base_seed, int) or not 0 <= base_seed < 2**32
    ):
        add("seed", "A whole number from 0 to 4294967295.")

    values = dict(variables or {})
    seed_text = (seed_text or "").strip()
    if template_version is not None:
        if template_version.template.project_id != project.pk:
            add("template", "This template belongs to another project.")
        else:
            try:
                template_render(version=template_version, values=values)
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    errors.setdefault(field, []).extend(messages)
    else:
        if values:
            add("variables", "Variables need a template.")
        if not seed_text:
            add("seed_text", "Write a prompt or pick a template.")
        elif len(seed_text) > MAX_SEED_TEXT_LENGTH:
            add("seed_text", f"At most {MAX_SEED_TEXT_LENGTH} characters.")

    if background is None:
        background = template_version.background if template_version is not None else 0
    if (
        isinstance(background, bool)
        or not isinstance(background, int)
        or not 0 <= background <= MAX_BACKGROUND_PASSAGES
    ):
        add("background", f"A whole number of passages from 0 to {MAX_BACKGROUND_PASSAGES}.")

    if topup is None:
        topup = template_version.topup if template_version is not None else 0
    try:
        topup = clean_topup(topup)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)

    resolved: dict[str, Any] = {}
    if model is not None:
        try:
            resolved = resolve_settings(model=model, overrides=settings)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors.setdefault(field, []).extend(messages)
    if errors:
        raise ValidationError(errors)

    if base_seed is None:
        base_seed = secrets.randbelow(2**31)
    assert model is not None
    with transaction.atomic():
        job = GenerationJob.objects.create(
            project=project,
            created_by=user,
            model=model,
            template_version=template_version,
            variables=values,
            seed_text=seed_text,
            settings=resolved,
            n_candidates=n_candidates,
            base_seed=base_seed,
            parent_draft=parent_draft,
            background=background,
            topup=topup,
            enqueued_at=timezone.now(),
        )
        JobEvent.objects.create(
            job=job, from_status="", to_status=JobStatus.QUEUED, actor=user, reason="created"
        )
        Candidate.objects.bulk_create(
            Candidate(
                job=job,
                index=i,
                seed=base_seed + i,
                settings=candidate_settings(resolved, index=i, count=n_candidates),
            )
            for i in range(n_candidates)
        )
        # Ids can be reused after a database reset: never show another job's live text.
        stream.live_state_clear(job.pk)
        tasks.job_generate.delay_on_commit(job.pk)
        transaction.on_commit(
            lambda: realtime.publish_project_event(
                project.pk, {"kind": "job", "id": job.pk, "status": job.status}
            )
        )
    return job


def job_transition(
    *,
    job_id: int,
    to: str,
    expected: str | Sequence[str],
    fields: Mapping[str, Any] | None = None,
    worker: str | None = None,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
) -> bool:
    """Move a job from ``expected`` (a status or several) to ``to`` if it is still there.

    The table (``JOB_TRANSITIONS``) must allow the move. A conditional UPDATE decides who wins
    a race (worker, sweep, person); the winner writes a JobEvent in the same transaction.
    ``worker`` narrows the move to the run that claimed the job. Returns False (and changes
    nothing) when the job is no longer where the caller believed.
    """
    return (
        JOB_LIFECYCLE.move(
            job_id,
            to=to,
            expected=expected,
            where={"worker": worker} if worker is not None else None,
            fields=fields,
            event={
                "actor": actor,
                "worker": worker or (fields or {}).get("worker", ""),
                "reason": reason[:5000],
            },
        )
        is not None
    )


def job_cancel(*, job: GenerationJob, user: AbstractBaseUser) -> GenerationJob:
    """Stop a job. A queued job is cancelled at once; a running one is asked to stop and the
    worker stops at its next step (well within a second). Finished candidates stay."""
    require_role(user=user, project=job.project, minimum=Role.EDITOR)
    now = timezone.now()
    with transaction.atomic():
        if job_transition(
            job_id=job.pk,
            to=JobStatus.CANCELLED,
            expected=JobStatus.QUEUED,
            fields={
                "cancel_requested_at": now,
                "cancel_requested_by": user,
                "finished_at": now,
                "error": "Cancelled before it started.",
            },
            actor=user,
            reason="cancelled before it started",
        ):
            Candidate.objects.filter(job=job).update(
                status=CandidateStatus.CANCELLED, finish_reason="cancelled"
            )
            transaction.on_commit(lambda: _announce_final(job.pk))
        elif not GenerationJob.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now, cancel_requested_by=user):
            current = GenerationJob.objects.get(pk=job.pk)
            if current.status == JobStatus.RUNNING:
                pass  # already asked to stop: cancelling twice is not an error
            else:
                raise InvalidTransition(
                    f"This job is {current.get_status_display().lower()}; it cannot be cancelled."
                )
    job.refresh_from_db()
    return job


def _announce_final(job_id: int) -> None:
    job = GenerationJob.objects.get(pk=job_id)
    js = stream.JobStream(
        job_id=job.pk,
        n_candidates=job.n_candidates,
        tokens_per_frame=1,
        min_interval=0,
        max_delay=0,
    )
    states = candidate_states(job_id=job.pk)
    live = stream.live_state(job.pk)
    js.seq = (live or {}).get("seq", 0)
    js.texts = [s["text"] for s in states]
    js.status(job.status, error=job.error, candidates=[{**s, "text": ""} for s in states])
    realtime.publish_project_event(
        job.project_id, {"kind": "job", "id": job.pk, "status": job.status}
    )


def job_fail(*, job_id: int, error: str, worker: str | None = None) -> bool:
    """Mark a job that has not ended as failed; candidates keep the text they have.

    ``worker``: only if that run still holds the job (a worker failing its own job)."""
    now = timezone.now()
    with transaction.atomic():
        changed = job_transition(
            job_id=job_id,
            to=JobStatus.FAILED,
            expected=[JobStatus.QUEUED, JobStatus.RUNNING],
            fields={"error": error[:5000], "finished_at": now},
            worker=worker,
            reason=error,
        )
        if changed:
            Candidate.objects.filter(
                job_id=job_id,
                status__in=[CandidateStatus.PENDING, CandidateStatus.STREAMING],
            ).update(status=CandidateStatus.FAILED, finish_reason="error", finished_at=now)
            transaction.on_commit(lambda: _announce_final(job_id))
    return changed
