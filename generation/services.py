"""Writes of the generation app: templates, jobs, the worker's execution of a job, drafts.

Every important write goes through a function here; views, the API, admin actions and tasks call
these. Slow work (loading a model, generating) never runs inside a transaction.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from contentstudio import realtime
from contentstudio.errors import InvalidTransition
from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from generation import stream
from generation.models import (
    JOB_TRANSITIONS,
    Candidate,
    CandidateStatus,
    Draft,
    GenerationJob,
    JobEvent,
    JobStatus,
    LanguageModel,
    PromptTemplate,
    PromptTemplateVersion,
)
from generation.rules import candidate_settings, resolve_settings

logger = logging.getLogger(__name__)

PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,49}$")
MAX_VARIABLE_LENGTH = 20_000
MAX_SEED_TEXT_LENGTH = 20_000


# --- Templates --------------------------------------------------------------------------------


def _clean_variables(variables: Any, body: str, system_prompt: str) -> list[dict[str, Any]]:
    if not isinstance(variables, list):
        raise ValidationError({"variables": "A list of variables is required."})
    cleaned: list[dict[str, Any]] = []
    seen: set[str] = set()
    for position, item in enumerate(variables):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValidationError({f"variables.{position}": "Each variable needs a name."})
        name = item["name"].strip()
        if not VARIABLE_NAME_RE.match(name):
            raise ValidationError(
                {f"variables.{position}": f"{name!r} is not a valid name (letters, digits, _)."}
            )
        if name in seen:
            raise ValidationError({f"variables.{position}": f"{name!r} is declared twice."})
        seen.add(name)
        cleaned.append(
            {
                "name": name,
                "label": str(item.get("label") or name.replace("_", " ").capitalize())[:100],
                "required": bool(item.get("required", True)),
                "multiline": bool(item.get("multiline", False)),
            }
        )
    used = set(PLACEHOLDER_RE.findall(body)) | set(PLACEHOLDER_RE.findall(system_prompt))
    undeclared = sorted(used - seen)
    if undeclared:
        raise ValidationError(
            {"body": f"Placeholders without a declared variable: {', '.join(undeclared)}."}
        )
    return cleaned


def _require_admin(*, user: AbstractBaseUser, project: Project) -> None:
    require_role(user=user, project=project, minimum=Role.ADMIN)


@transaction.atomic
def template_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    name: str,
    body: str,
    variables: list[Any],
    system_prompt: str = "",
    content_type: str | None = None,
) -> PromptTemplate:
    _require_admin(user=user, project=project)
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A name is required."})
    if not body.strip():
        raise ValidationError({"body": "The template text is required."})
    if PromptTemplate.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"This project already has a template named {name!r}."})
    cleaned = _clean_variables(variables, body, system_prompt)
    template = PromptTemplate.objects.create(
        project=project, name=name, content_type=content_type or project.content_type
    )
    PromptTemplateVersion.objects.create(
        template=template,
        number=1,
        system_prompt=system_prompt,
        body=body,
        variables=cleaned,
        created_by=user,
    )
    return template


@transaction.atomic
def template_update(
    *,
    template: PromptTemplate,
    user: AbstractBaseUser,
    body: str,
    variables: list[Any],
    system_prompt: str = "",
    note: str = "",
) -> PromptTemplateVersion:
    """Add a new version; drafts keep pointing at the version they were written with."""
    _require_admin(user=user, project=template.project)
    if not body.strip():
        raise ValidationError({"body": "The template text is required."})
    cleaned = _clean_variables(variables, body, system_prompt)
    # Lock the template row so two concurrent edits get consecutive numbers.
    PromptTemplate.objects.select_for_update().get(pk=template.pk)
    last = template.versions.order_by("-number").values_list("number", flat=True).first() or 0
    return PromptTemplateVersion.objects.create(
        template=template,
        number=last + 1,
        system_prompt=system_prompt,
        body=body,
        variables=cleaned,
        note=note[:300],
        created_by=user,
    )


def template_render(*, version: PromptTemplateVersion, values: Mapping[str, Any]) -> str:
    """The user message with variables filled in; errors name the variable."""
    declared = {v["name"]: v for v in version.variables}
    errors: dict[str, str] = {}
    for name in values:
        if name not in declared:
            errors[f"variables.{name}"] = f"Unknown template variable {name!r}."
    for name, spec in declared.items():
        value = values.get(name)
        if value is not None and not isinstance(value, str | int | float):
            errors[f"variables.{name}"] = "Must be text."
        elif spec["required"] and not str(value or "").strip():
            errors[f"variables.{name}"] = "This variable is required."
        elif value is not None and len(str(value)) > MAX_VARIABLE_LENGTH:
            errors[f"variables.{name}"] = f"At most {MAX_VARIABLE_LENGTH} characters."
    if errors:
        raise ValidationError(errors)
    # One pass, so a value that itself contains "{{x}}" is never expanded again.
    return PLACEHOLDER_RE.sub(lambda m: str(values.get(m.group(1)) or "").strip(), version.body)


def system_render(*, version: PromptTemplateVersion, values: Mapping[str, Any]) -> str:
    return PLACEHOLDER_RE.sub(
        lambda m: str(values.get(m.group(1)) or "").strip(), version.system_prompt
    )


# --- Jobs -------------------------------------------------------------------------------------


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
) -> GenerationJob:
    """Validate a generation request, create the job with its candidates, enqueue it on commit.

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
        tasks.job_run.delay_on_commit(job.pk)
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
    froms = [expected] if isinstance(expected, str) else list(expected)
    for current in froms:
        if to not in JOB_TRANSITIONS[current]:
            raise InvalidTransition(f"A job cannot move from {current} to {to}.")
    with transaction.atomic():
        rows = GenerationJob.objects.select_for_update().filter(pk=job_id, status__in=froms)
        if worker is not None:
            rows = rows.filter(worker=worker)
        before = rows.values_list("status", flat=True).first()
        if before is None:
            return False
        GenerationJob.objects.filter(pk=job_id).update(status=to, **(fields or {}))
        JobEvent.objects.create(
            job_id=job_id,
            from_status=before,
            to_status=to,
            actor=actor,
            worker=worker or (fields or {}).get("worker", ""),
            reason=reason[:5000],
        )
    return True


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


def _candidate_states(job_id: int) -> list[stream.CandidateState]:
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
                "draft_id": draft.pk if draft else None,
            }
        )
    return states


def _announce_final(job_id: int) -> None:
    job = GenerationJob.objects.get(pk=job_id)
    js = stream.JobStream(
        job_id=job.pk,
        n_candidates=job.n_candidates,
        tokens_per_frame=1,
        min_interval=0,
        max_delay=0,
    )
    states = _candidate_states(job.pk)
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


def jobs_sweep() -> dict[str, int]:
    """The periodic sweep (every ``SWEEP_INTERVAL`` s, whatever worker runs it).

    - A running job whose heartbeat stopped ``GENERATION_STALE_AFTER`` ago died with its worker
      (the heartbeat comes from a timer thread, so waiting or loading never looks stale): fail
      it with the reason, keeping the text saved so far.
    - A queued job whose message was sent ``GENERATION_REQUEUE_AFTER`` ago and never claimed
      lost its message (a broker or embedded studio restart): send it again. The claim makes a
      duplicate harmless.
    """

    now = timezone.now()
    stale_before = now - timezone.timedelta(seconds=django_settings.GENERATION_STALE_AFTER)
    failed = 0
    for job_id, worker, heartbeat in GenerationJob.objects.filter(
        status=JobStatus.RUNNING, heartbeat_at__lt=stale_before
    ).values_list("pk", "worker", "heartbeat_at"):
        age = int((now - heartbeat).total_seconds())
        failed += job_fail(
            job_id=job_id,
            worker=worker,
            error=(
                f"The worker running this job ({worker or 'unknown'}) stopped responding {age} s "
                "ago (it crashed or was killed). The text written until its last save is kept "
                "below; start a new job to try again."
            ),
        )
    requeued = jobs_requeue(older_than=django_settings.GENERATION_REQUEUE_AFTER)
    return {"failed": failed, "requeued": requeued}


def jobs_fail_orphaned(*, worker_name: str) -> int:
    """At worker start: jobs this same worker was running died with its previous process
    (the sweep would find them a minute later; this is at once)."""
    failed = 0
    for job_id in GenerationJob.objects.filter(
        status=JobStatus.RUNNING, worker=worker_name
    ).values_list("pk", flat=True):
        failed += job_fail(
            job_id=job_id,
            worker=worker_name,
            error=(
                f"The worker {worker_name} restarted while running this job (it crashed or was "
                "killed). The text written until its last save is kept below."
            ),
        )
    return failed


def jobs_requeue(*, older_than: float) -> int:
    """Send again the message of every queued job sent more than ``older_than`` seconds ago
    (0 at a worker start: the in-memory broker lost its messages with the process). Each job's
    ``enqueued_at`` moves with it, so the sweep does not send it again at once; the claim makes
    a duplicate harmless. Returns how many were sent."""
    from generation import tasks  # tasks import services

    now = timezone.now()
    before = now - timezone.timedelta(seconds=older_than)
    sent = 0
    # Jobs created before enqueued_at existed have none: they are as good as lost.
    due = Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=before)
    for job_id in (
        GenerationJob.objects.filter(due, status=JobStatus.QUEUED)
        .order_by("pk")
        .values_list("pk", flat=True)
    ):
        if GenerationJob.objects.filter(due, pk=job_id, status=JobStatus.QUEUED).update(
            enqueued_at=now
        ):
            tasks.job_run.delay(job_id)
            sent += 1
    return sent
