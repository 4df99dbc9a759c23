"""Writes of the generation app: templates, jobs, the worker's execution of a job, drafts.

Every important write goes through a function here; views, the API, admin actions and tasks call
these. Slow work (loading a model, generating) never runs inside a transaction.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from contentstudio.errors import InvalidTransition
from contentstudio.html import text_to_html
from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from generation import engine as engine_mod
from generation import signals, stream
from generation.models import (
    Candidate,
    CandidateStatus,
    Draft,
    DraftStatus,
    GenerationJob,
    JobStatus,
    LanguageModel,
    PromptTemplate,
    PromptTemplateVersion,
)

logger = logging.getLogger(__name__)

PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,49}$")
MAX_VARIABLE_LENGTH = 20_000
MAX_SEED_TEXT_LENGTH = 20_000


# --- Settings validation ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    kind: type
    minimum: float
    maximum: float | None
    min_exclusive: bool = False


# The one place that says what a generation setting may be. max_new_tokens is also capped by
# the model's own limit; min_new_tokens by max_new_tokens.
SETTING_RULES: dict[str, _Rule] = {
    "max_new_tokens": _Rule(int, 1, None),
    "min_new_tokens": _Rule(int, 0, None),
    "temperature": _Rule(float, 0.0, 5.0),
    "top_p": _Rule(float, 0.0, 1.0, min_exclusive=True),
    "top_k": _Rule(int, 0, 1000),
    "repetition_penalty": _Rule(float, 0.0, 10.0, min_exclusive=True),
    "no_repeat_ngram_size": _Rule(int, 0, 20),
    # Spread candidates' temperatures around ``temperature`` (0 = same settings, seeds differ).
    "temperature_spread": _Rule(float, 0.0, 1.0),
}


def _coerce(name: str, value: Any, rule: _Rule) -> int | float:
    if isinstance(value, bool) or value is None or value == "":
        raise ValidationError({f"settings.{name}": "A number is required."})
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError({f"settings.{name}": f"{value!r} is not a number."}) from None
    if rule.kind is int:
        if number != int(number):
            raise ValidationError({f"settings.{name}": "Must be a whole number."})
        return int(number)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValidationError({f"settings.{name}": "Must be a finite number."})
    return number


def resolve_settings(
    *, model: LanguageModel, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The model's defaults overridden by ``overrides``, validated; errors name each field."""
    resolved: dict[str, Any] = {**model.default_settings(), "temperature_spread": 0.0}
    errors: dict[str, list[str]] = {}
    for name, value in (overrides or {}).items():
        rule = SETTING_RULES.get(name)
        if rule is None:
            errors.setdefault(f"settings.{name}", []).append("Unknown generation setting.")
            continue
        try:
            resolved[name] = _coerce(name, value, rule)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors.setdefault(field, []).extend(messages)
    for name, rule in SETTING_RULES.items():
        key = f"settings.{name}"
        if key in errors:
            continue
        value = resolved[name]
        too_low = value <= rule.minimum if rule.min_exclusive else value < rule.minimum
        if too_low:
            relation = "greater than" if rule.min_exclusive else "at least"
            errors.setdefault(key, []).append(f"Must be {relation} {rule.minimum:g}.")
        elif rule.maximum is not None and value > rule.maximum:
            errors.setdefault(key, []).append(f"Must be at most {rule.maximum:g}.")
    if "settings.max_new_tokens" not in errors and (
        resolved["max_new_tokens"] > model.max_new_tokens_limit
    ):
        errors.setdefault("settings.max_new_tokens", []).append(
            f"Must be at most {model.max_new_tokens_limit}, the limit of model {model.name}."
        )
    if (
        "settings.min_new_tokens" not in errors
        and "settings.max_new_tokens" not in errors
        and resolved["min_new_tokens"] > resolved["max_new_tokens"]
    ):
        errors.setdefault("settings.min_new_tokens", []).append("Must not exceed max_new_tokens.")
    if errors:
        raise ValidationError(errors)
    return resolved


def candidate_settings(resolved: Mapping[str, Any], *, index: int, count: int) -> dict[str, Any]:
    """Settings of candidate ``index``: the same as the job's, with its temperature spread."""
    own = {k: v for k, v in resolved.items() if k != "temperature_spread"}
    spread = float(resolved.get("temperature_spread") or 0.0)
    if spread and count > 1 and own["temperature"] > 0:
        position = index / (count - 1) - 0.5  # -0.5 .. 0.5
        own["temperature"] = round(max(0.05, own["temperature"] + 2 * spread * position), 4)
    return own


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
            lambda: stream.publish_project_event(
                project.pk, {"kind": "job", "id": job.pk, "status": job.status}
            )
        )
    return job


def job_cancel(*, job: GenerationJob, user: AbstractBaseUser) -> GenerationJob:
    """Stop a job. A queued job is cancelled at once; a running one is asked to stop and the
    worker stops at its next step (well within a second). Finished candidates stay."""
    require_role(user=user, project=job.project, minimum=Role.EDITOR)
    now = timezone.now()
    with transaction.atomic():
        if GenerationJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.CANCELLED,
            cancel_requested_at=now,
            cancel_requested_by=user,
            finished_at=now,
            error="Cancelled before it started.",
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
    stream.publish_project_event(
        job.project_id, {"kind": "job", "id": job.pk, "status": job.status}
    )


def job_fail(*, job_id: int, error: str) -> bool:
    """Mark a job that has not ended as failed; candidates keep the text they have."""
    now = timezone.now()
    with transaction.atomic():
        changed = GenerationJob.objects.filter(
            pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
        ).update(status=JobStatus.FAILED, error=error[:5000], finished_at=now)
        if changed:
            Candidate.objects.filter(
                job_id=job_id,
                status__in=[CandidateStatus.PENDING, CandidateStatus.STREAMING],
            ).update(status=CandidateStatus.FAILED, finish_reason="error", finished_at=now)
            transaction.on_commit(lambda: _announce_final(job_id))
    return bool(changed)


def job_fail_if_stale(*, job: GenerationJob) -> bool:
    """A running job whose worker stopped saving long ago died with its worker: fail it."""
    if job.status != JobStatus.RUNNING or job.heartbeat_at is None:
        return False
    age = (timezone.now() - job.heartbeat_at).total_seconds()
    if age < django_settings.GENERATION_STALE_AFTER:
        return False
    return job_fail(
        job_id=job.pk,
        error=(
            f"The worker running this job ({job.worker or 'unknown'}) stopped responding "
            f"{int(age)} s ago (it crashed or was killed). The text written until its last save "
            "is kept below; start a new job to try again."
        ),
    )


def jobs_fail_orphaned(*, worker_name: str) -> int:
    """At worker start: jobs this same worker was running died with its previous process."""
    failed = 0
    for job_id in GenerationJob.objects.filter(
        status=JobStatus.RUNNING, worker=worker_name
    ).values_list("pk", flat=True):
        failed += job_fail(
            job_id=job_id,
            error=(
                f"The worker {worker_name} restarted while running this job (it crashed or was "
                "killed). The text written until its last save is kept below."
            ),
        )
    return failed


def jobs_queued_ids() -> list[int]:
    return list(
        GenerationJob.objects.filter(status=JobStatus.QUEUED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def model_spec(model: LanguageModel) -> engine_mod.ModelSpec:
    return engine_mod.ModelSpec(
        source_kind=model.source_kind,
        source=model.source,
        revision=model.revision,
        device=model.device,
        dtype=model.dtype,
    )


class _Recorder:
    """Lives for one job run in the worker: streams steps, saves partial text, polls cancel."""

    def __init__(self, *, job: GenerationJob, candidates: list[Candidate], js: stream.JobStream):
        self.job = job
        self.candidates = candidates
        self.js = js
        self.save_interval = django_settings.GENERATION_SAVE_INTERVAL
        self.cancel_poll = django_settings.GENERATION_CANCEL_POLL
        self._last_save = time.monotonic()
        self._last_poll = time.monotonic()
        self._cancelled = False
        self._first_token_at: list[Any] = [None] * len(candidates)

    def on_step(self, deltas: list[str | None]) -> None:
        now = timezone.now()
        for index, delta in enumerate(deltas):
            if delta is not None and self._first_token_at[index] is None:
                self._first_token_at[index] = now
        self.js.step(deltas)
        if time.monotonic() - self._last_save >= self.save_interval:
            self.save()

    def should_stop(self) -> bool:
        if self._cancelled:
            return True
        if time.monotonic() - self._last_poll < self.cancel_poll:
            return False
        self._last_poll = time.monotonic()
        self._cancelled = GenerationJob.objects.filter(
            pk=self.job.pk, cancel_requested_at__isnull=False
        ).exists()
        return self._cancelled

    def save(self) -> None:
        """Persist the text so far: a crash after this loses only what comes later."""
        self._last_save = time.monotonic()
        for candidate, text, tokens, first in zip(
            self.candidates, self.js.texts, self.js.tokens, self._first_token_at, strict=True
        ):
            candidate.text = text
            candidate.completion_tokens = tokens
            candidate.first_token_at = first
        Candidate.objects.bulk_update(
            self.candidates, ["text", "completion_tokens", "first_token_at"]
        )
        GenerationJob.objects.filter(pk=self.job.pk).update(heartbeat_at=timezone.now())


def _draft_title(job: GenerationJob, text: str) -> str:
    for key in ("headline", "title", "product", "topic", "subject"):
        value = str(job.variables.get(key) or "").strip()
        if value:
            return value[:300]
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first_line[:117] + "...") if len(first_line) > 120 else first_line


def job_execute(*, job_id: int, worker_name: str) -> None:
    """Run a job in the worker: claim it, load the model, stream, save drafts.

    Idempotent: a job that is not queued any more (another worker has it, or it ended) is left
    alone, except a running one whose worker died, which is failed.
    """
    now = timezone.now()
    claimed = GenerationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, worker=worker_name
    )
    if claimed != 1:
        job = GenerationJob.objects.filter(pk=job_id).first()
        if job is not None:
            job_fail_if_stale(job=job)
        return
    try:
        _job_run(job_id)
    except Exception as exc:
        # Whatever broke, the job must not stay "running" until it looks stale.
        logger.exception("job %s failed", job_id)
        job_fail(job_id=job_id, error=f"Internal error while running the job: {exc!r}")


def _job_run(job_id: int) -> None:
    job = GenerationJob.objects.select_related("model", "template_version", "project").get(
        pk=job_id
    )
    candidates = list(job.candidates.order_by("index"))
    js = stream.JobStream(
        job_id=job.pk,
        n_candidates=len(candidates),
        tokens_per_frame=django_settings.STREAM_TOKENS_PER_FRAME,
        min_interval=django_settings.STREAM_MIN_FRAME_INTERVAL,
        max_delay=django_settings.STREAM_MAX_FRAME_DELAY,
    )
    js.status(JobStatus.RUNNING, candidates=_candidate_states(job.pk))
    stream.publish_project_event(job.project_id, {"kind": "job", "id": job.pk, "status": "running"})

    try:
        engine = engine_mod.get_engine(
            model_spec(job.model), cache_root=django_settings.MODEL_CACHE_DIR
        )
    except engine_mod.ModelLoadError as exc:
        job_fail(job_id=job.pk, error=f"Model {job.model.name} failed to load: {exc.args[0]}")
        return
    except Exception as exc:  # anything else while loading is still the model's fault
        logger.exception("loading model %s", job.model.name)
        job_fail(job_id=job.pk, error=f"Model {job.model.name} failed to load: {exc!r}")
        return

    if job.template_version is not None:
        user_text = template_render(version=job.template_version, values=job.variables)
        system_text = system_render(version=job.template_version, values=job.variables)
    else:
        user_text, system_text = job.seed_text, ""
    prompt = engine.render_prompt(system=system_text, user=user_text)
    prompt_ids = engine.encode(prompt)
    started = timezone.now()
    GenerationJob.objects.filter(pk=job.pk).update(
        prompt=prompt, load_seconds=engine.load_seconds, heartbeat_at=started
    )
    Candidate.objects.filter(job=job).update(
        status=CandidateStatus.STREAMING, started_at=started, prompt_tokens=len(prompt_ids)
    )
    for c in candidates:
        c.started_at = started
        c.prompt_tokens = len(prompt_ids)

    recorder = _Recorder(job=job, candidates=candidates, js=js)
    settings = engine_mod.SamplingSettings.from_dict(job.settings)
    temperatures = [float(c.settings.get("temperature", settings.temperature)) for c in candidates]
    error = ""
    outputs: list[engine_mod.CandidateOutput] = []
    try:
        outputs = engine.generate(
            prompt_ids=prompt_ids,
            seeds=[c.seed for c in candidates],
            settings=settings,
            temperatures=temperatures,
            on_step=recorder.on_step,
            should_stop=recorder.should_stop,
        )
    except engine_mod.PromptTooLong as exc:
        error = str(exc)
    except Exception as exc:
        logger.exception("generation failed for job %s", job.pk)
        error = f"Generation failed: {type(exc).__name__}: {exc}"
    if error:
        recorder.save()
        js.flush()
        job_fail(job_id=job.pk, error=error)
        return
    _job_finish(
        job=job,
        candidates=candidates,
        outputs=outputs,
        js=js,
        started=started,
        prompt=prompt,
        load_seconds=engine.load_seconds,
        first_token_at=recorder._first_token_at,
    )


def _job_finish(
    *,
    job: GenerationJob,
    candidates: list[Candidate],
    outputs: list[engine_mod.CandidateOutput],
    js: stream.JobStream,
    started: Any,
    prompt: str,
    load_seconds: float,
    first_token_at: list[Any],
) -> None:
    """Save final texts and turn every finished candidate into a draft, in one transaction."""
    end_mono = time.monotonic()
    end = timezone.now()
    created: list[Draft] = []
    cancelled = False
    for out in outputs:
        js.replace(out.index, out.text)
    js.flush()
    with transaction.atomic():
        for candidate, out in zip(candidates, outputs, strict=True):
            finished_at = end - timezone.timedelta(
                seconds=max(0.0, end_mono - (out.finished_at or end_mono))
            )
            candidate.text = out.text
            candidate.completion_tokens = len(out.token_ids)
            candidate.finish_reason = out.finish_reason
            candidate.first_token_at = first_token_at[candidate.index]
            candidate.finished_at = finished_at
            if out.finish_reason == "cancelled":
                candidate.status = CandidateStatus.CANCELLED
                cancelled = True
            else:
                candidate.status = CandidateStatus.FINISHED
        Candidate.objects.bulk_update(
            candidates,
            [
                "text",
                "completion_tokens",
                "finish_reason",
                "first_token_at",
                "finished_at",
                "status",
            ],
        )
        for candidate in candidates:
            if candidate.status != CandidateStatus.FINISHED:
                continue
            ttft = (
                (candidate.first_token_at - started).total_seconds()
                if candidate.first_token_at
                else None
            )
            created.append(
                Draft.objects.create(
                    project=job.project,
                    job=job,
                    candidate=candidate,
                    title=_draft_title(job, candidate.text),
                    model_output=candidate.text,
                    body=text_to_html(candidate.text),
                    status=DraftStatus.GENERATED,
                    model=job.model,
                    model_name=job.model.name,
                    model_source=job.model.source,
                    model_revision=job.model.revision,
                    template_version=job.template_version,
                    variables=job.variables,
                    prompt=prompt,
                    settings=candidate.settings,
                    seed=candidate.seed,
                    prompt_tokens=candidate.prompt_tokens or 0,
                    completion_tokens=candidate.completion_tokens,
                    finish_reason=candidate.finish_reason,
                    timings={
                        "queue_seconds": round((started - job.created_at).total_seconds(), 3),
                        "load_seconds": round(load_seconds, 3),
                        "ttft_seconds": round(ttft, 3) if ttft is not None else None,
                        "generation_seconds": round(
                            (candidate.finished_at - started).total_seconds(), 3
                        ),
                        "tokens_per_second": (
                            round(candidate.tokens_per_second, 2)
                            if candidate.tokens_per_second
                            else None
                        ),
                    },
                )
            )
        final = JobStatus.CANCELLED if cancelled else JobStatus.SUCCEEDED
        GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            status=final, finished_at=end, heartbeat_at=end
        )
        for draft in created:
            transaction.on_commit(lambda d=draft: signals.draft_created.send(sender=Draft, draft=d))
    job.refresh_from_db()
    js.status(
        job.status,
        error=job.error,
        candidates=[{**s, "text": ""} for s in _candidate_states(job.pk)],
    )
    for draft in created:
        js.draft(
            index=draft.candidate.index,
            draft_id=draft.pk,
            url=reverse("draft_detail", args=[job.project.slug, draft.pk]),
        )
    stream.publish_project_event(
        job.project_id,
        {"kind": "job", "id": job.pk, "status": job.status, "drafts": [d.pk for d in created]},
    )


def model_check(*, model_id: int) -> LanguageModel:
    """Load a model in this worker, generate a few tokens, record the time or the exact error."""
    model = LanguageModel.objects.get(pk=model_id)
    ok, message, load_seconds = False, "", None
    try:
        engine = engine_mod.get_engine(
            model_spec(model), cache_root=django_settings.MODEL_CACHE_DIR
        )
        load_seconds = engine.load_seconds
        prompt = engine.render_prompt(system="", user="Write one sentence about the weather.")
        started = time.monotonic()
        out = engine.generate(
            prompt_ids=engine.encode(prompt),
            seeds=[0],
            settings=engine_mod.SamplingSettings(max_new_tokens=24, temperature=0.0),
        )[0]
        ok = True
        message = (
            f"Loaded in {engine.load_seconds:.1f} s on {engine.device}; context "
            f"{engine.context_length} tokens; test output ({len(out.token_ids)} tokens in "
            f"{time.monotonic() - started:.1f} s): {out.text.strip()[:300]!r}"
        )
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
    LanguageModel.objects.filter(pk=model_id).update(
        last_check_at=timezone.now(),
        last_check_ok=ok,
        last_check_message=message[:5000],
        last_check_load_seconds=load_seconds,
    )
    model.refresh_from_db()
    return model
