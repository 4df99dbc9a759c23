"""Writes of the fine-tuning app that people trigger: validate, estimate, start and cancel a run,
register a run's result as a model, keep the edit pair of an approval.

Views, the command and the receivers call these; the worker's side of a run is in ``runner``.
Status moves go through ``RUN_LIFECYCLE`` (conditional UPDATE and audit row in one
transaction); model loading and training never run inside a transaction.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path
from statistics import median
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from contentstudio.errors import InvalidTransition
from contentstudio.html import html_to_text
from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from finetune import data as data_mod
from finetune import live, rules, selectors
from finetune.models import (
    RUN_LIFECYCLE,
    EditPair,
    FineTuneEvent,
    FineTuneRun,
    MissedPair,
    RunStatus,
)
from finetune.training import estimate as estimate_mod
from finetune.training.config import TrainSettings
from finetune.training.errors import FineTuneError
from finetune.training.examples import Split, encode_examples, split_examples
from finetune.training.loop import TrainResult
from generation.backends.gguf import convert_packaged_gguf
from generation.backends.types import ModelLoadError
from generation.models import Device, Draft, LanguageModel, ModelSource
from review.lifecycle import status_label

logger = logging.getLogger(__name__)


# --- Models on disk ---------------------------------------------------------------------------


def model_dir(model: LanguageModel) -> str:
    """Where ``from_pretrained`` finds the model: a directory, or a hub id."""
    if model.source_kind == ModelSource.PACKAGE_GGUF:
        return str(convert_packaged_gguf(model.source, Path(django_settings.MODEL_CACHE_DIR)))
    if model.source_kind == ModelSource.LOCAL and not Path(model.source).is_dir():
        raise ModelLoadError(f"Local model directory {model.source!r} does not exist.")
    return model.source


def parameter_count(path: str) -> int:
    """Parameters of the model at ``path`` without loading its weights (built on the meta
    device from the config)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


# --- Validation -------------------------------------------------------------------------------

DATA_KINDS = ("archive", "drafts", "pairs")


def _clean_data(project: Project, data: dict[str, Any] | None) -> tuple[dict[str, Any], dict]:
    errors: dict[str, list[str]] = {}
    raw = dict(data or {})
    spec: dict[str, Any] = {}
    for name in raw:
        if name not in {*DATA_KINDS, "template_id", "date_from", "date_to"}:
            errors.setdefault(f"data.{name}", []).append("Unknown data option.")
    for kind in DATA_KINDS:
        value = raw.get(kind, False)
        spec[kind] = value if isinstance(value, bool) else str(value).lower() in {"1", "true", "on"}
    if not any(spec[k] for k in DATA_KINDS):
        errors.setdefault("data", []).append(
            "Choose at least one source: the archive, approved drafts or editor pairs."
        )
    template_id = raw.get("template_id")
    spec["template_id"] = None
    if template_id not in (None, ""):
        try:
            template_id = int(template_id)
        except (TypeError, ValueError):
            errors.setdefault("data.template_id", []).append("Not a template id.")
        else:
            if not project.templates.filter(pk=template_id).exists():
                errors.setdefault("data.template_id", []).append("No such template here.")
            spec["template_id"] = template_id
    for name in ("date_from", "date_to"):
        value = str(raw.get(name) or "").strip()
        spec[name] = value
        if value:
            try:
                date.fromisoformat(value)
            except ValueError:
                errors.setdefault(f"data.{name}", []).append("A date as YYYY-MM-DD is required.")
    if (
        not errors.get("data.date_from")
        and not errors.get("data.date_to")
        and spec["date_from"]
        and spec["date_to"]
        and spec["date_from"] > spec["date_to"]
    ):
        errors.setdefault("data.date_to", []).append("Must not be before the start date.")
    return spec, errors


def run_validate(
    *,
    project: Project,
    base_model: LanguageModel | None,
    data: dict[str, Any] | None,
    settings: dict[str, Any] | None,
    device: str = Device.AUTO,
) -> tuple[TrainSettings, dict[str, Any]]:
    """The resolved settings and data selection; ValidationError names every bad field."""
    errors: dict[str, list[str]] = {}
    if base_model is None:
        errors["base_model"] = ["Choose the model to start from."]
    elif not base_model.enabled:
        errors["base_model"] = [f"Model {base_model.name} is disabled."]
    elif base_model.project_id not in (None, project.pk):
        errors["base_model"] = ["No such model."]
    if device not in Device.values:
        errors["device"] = [f"One of {', '.join(Device.values)}."]
    spec, data_errors = _clean_data(project, data)
    errors.update(data_errors)
    resolved, setting_errors = rules.parse_settings(settings)
    errors.update(setting_errors)
    if errors:
        raise ValidationError(errors)
    return resolved, spec


def _select(project: Project, spec: dict[str, Any], settings: TrainSettings) -> Split:
    try:
        return split_examples(
            data_mod.examples(project_id=project.pk, spec=spec),  # type: ignore[arg-type]
            settings,
        )
    except FineTuneError as exc:
        raise ValidationError({exc.field or "data": [exc.message]}) from None


def _measured_speed(*, lora: bool, device: str) -> estimate_mod.MeasuredSpeed | None:
    """The steady speed (tokens/s x parameters, median) of the last five runs on this
    installation that trained past their warm-up with the same LoRA choice and device; None
    when there is none. A run's whole-run average is never used: a short run's is mostly its
    warm-up (a 1-step run once made the next estimate 50x too long)."""
    rates = [
        run.steady_tokens_per_second * run.parameters
        for run in FineTuneRun.objects.filter(
            status__in=[RunStatus.SUCCEEDED, RunStatus.CANCELLED],
            steady_tokens_per_second__isnull=False,
            parameters__isnull=False,
            settings__lora=lora,
            device=device,
        ).order_by("-finished_at")[:5]
    ]
    if not rates:
        return None
    return estimate_mod.MeasuredSpeed(rate=median(rates), runs=len(rates))


def run_estimate(
    *,
    project: Project,
    user: AbstractBaseUser,
    base_model: LanguageModel | None,
    data: dict[str, Any] | None,
    settings: dict[str, Any] | None,
    device: str = Device.AUTO,
) -> estimate_mod.Estimate:
    """What a run would train on and how long it should take, before it starts (loads the
    tokenizer and the model's config, never its weights)."""
    from transformers import AutoTokenizer

    require_role(user=user, project=project, minimum=Role.ADMIN)
    resolved, spec = run_validate(
        project=project, base_model=base_model, data=data, settings=settings, device=device
    )
    assert base_model is not None
    split = _select(project, spec, resolved)
    try:
        path = model_dir(base_model)
        tokenizer = AutoTokenizer.from_pretrained(path)
        parameters = parameter_count(path)
    except Exception as exc:
        raise ValidationError(
            {"base_model": [f"Model {base_model.name} cannot be read: {exc}"]}
        ) from None
    chat = bool(getattr(tokenizer, "chat_template", None))
    length = resolved.max_seq_length
    enc = encode_examples(split.train, tokenizer, max_length=length, chat=chat, pack=True)
    val = encode_examples(split.validation, tokenizer, max_length=length, chat=chat)
    test = encode_examples(split.test, tokenizer, max_length=length, chat=chat)
    if not enc.ids:
        raise ValidationError({"data": ["The training texts have no tokens."]})
    counts = {**split.counts(), "test_tokens": test.tokens}
    return estimate_mod.estimate(
        counts=counts,
        train=enc,
        evaluation_tokens=val.tokens,
        parameters=parameters,
        settings=resolved,
        measured=_measured_speed(lora=resolved.lora, device=device),
    )


# --- Runs -------------------------------------------------------------------------------------


def run_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    base_model: LanguageModel | None,
    data: dict[str, Any] | None,
    settings: dict[str, Any] | None,
    device: str = Device.AUTO,
    enqueue: bool = True,
) -> FineTuneRun:
    """Validate, estimate, create the run and enqueue it on commit (queue "generate"); the
    command-line twin passes ``enqueue=False`` and runs it in its own process.

    Project admins only. Raises ValidationError naming each bad field ("settings.batch_size",
    "data", "base_model"), PermissionDenied / Http404.
    """
    from finetune import tasks  # tasks import the services

    require_role(user=user, project=project, minimum=Role.ADMIN)
    resolved, spec = run_validate(
        project=project, base_model=base_model, data=data, settings=settings, device=device
    )
    estimate = run_estimate(
        project=project,
        user=user,
        base_model=base_model,
        data=data,
        settings=settings,
        device=device,
    )
    with transaction.atomic():
        run = FineTuneRun.objects.create(
            project=project,
            created_by=user,
            base_model=base_model,
            data=spec,
            settings=resolved.as_dict(),
            device=device,
            estimate=dict(estimate),
            total_steps=estimate["steps"],
        )
        FineTuneEvent.objects.create(
            run=run, actor=user, action="create", to_status=RunStatus.QUEUED
        )
        if enqueue:
            tasks.finetune_run.delay_on_commit(run.pk)
    return run


def run_cancel(*, run: FineTuneRun, user: AbstractBaseUser) -> FineTuneRun:
    """Stop a run. A queued run ends at once; a running one stops at its next batch, keeps the
    best weights so far, measures and registers them (its worker ends it, ``runner``). Raises
    InvalidTransition when it is over."""
    require_role(user=user, project=run.project, minimum=Role.ADMIN)
    now = timezone.now()
    cancelled = RUN_LIFECYCLE.move(
        run.pk,
        to=RunStatus.CANCELLED,
        expected=RunStatus.QUEUED,
        fields={"finished_at": now, "cancel_requested_at": now, "cancel_requested_by": user},
        event={"actor": user, "action": "cancel"},
        on_commit=lambda: run_announce(run.pk),
    )
    if cancelled is None:
        with transaction.atomic():
            requested = FineTuneRun.objects.filter(
                pk=run.pk, status=RunStatus.RUNNING, cancel_requested_at__isnull=True
            ).update(cancel_requested_at=now, cancel_requested_by=user)
            if requested:
                FineTuneEvent.objects.create(run=run, actor=user, action="cancel_requested")
        if (
            not requested
            and not FineTuneRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).exists()
        ):
            run.refresh_from_db()
            raise InvalidTransition(f"The run is {run.get_status_display().lower()} already.")
    run.refresh_from_db()
    return run


def run_announce(run_id: int) -> None:
    """Tell the run's watchers and the project's pages where the run is now."""
    run = FineTuneRun.objects.select_related("result_model").get(pk=run_id)
    live.publish_status(run_id, selectors.run_state(run, history=True))
    live.publish_project_event(
        run.project_id, {"kind": "finetune", "id": run_id, "status": run.status}
    )


def model_register(*, run: FineTuneRun, result: TrainResult) -> LanguageModel:
    """The run's best weights as a new LanguageModel of the run's project (only that project
    may use it: its weights have seen that project's texts), with the base model's defaults."""
    base = run.base_model
    suffix = f" · tuned #{run.pk}"
    return LanguageModel.objects.create(
        name=base.name[: 100 - len(suffix)] + suffix,
        source_kind=ModelSource.LOCAL,
        source=str(result.output_dir),
        device=base.device,
        dtype=base.dtype,
        enabled=True,
        is_default=False,
        project=run.project,
        max_new_tokens_limit=base.max_new_tokens_limit,
        max_new_tokens=base.max_new_tokens,
        min_new_tokens=base.min_new_tokens,
        temperature=base.temperature,
        top_p=base.top_p,
        top_k=base.top_k,
        repetition_penalty=base.repetition_penalty,
        no_repeat_ngram_size=base.no_repeat_ngram_size,
    )


# --- Edit pairs -------------------------------------------------------------------------------


def edit_pair_keep(
    *, draft_id: int, approved_by: AbstractBaseUser | None, approved_at: datetime | None
) -> EditPair | None:
    """Keep (model output, editor's final text, diff) of a draft just approved.

    Runs after the approval committed (review's ``draft_approved``), so nothing here can undo
    it. One pair per approved version: a second call for the same version returns the pair
    already kept. A failure is logged with its traceback and recorded as a MissedPair, which
    the fine-tuning pages count; a later success for the same version removes it.
    """
    draft: Draft | None = None
    try:
        draft = Draft.objects.filter(pk=draft_id).first()
        if draft is None:
            logger.warning("draft %s was deleted before its edit pair was kept", draft_id)
            return None
        kept = EditPair.objects.filter(draft=draft, draft_version=draft.version).first()
        if kept is not None:
            return kept
        if draft.status not in data_mod.APPROVED_STATES:
            raise RuntimeError(
                f"The draft was {status_label(draft.status).lower()} again before its pair was "
                "kept."
            )
        return _edit_pair_write(draft, approved_by, approved_at or timezone.now())
    except Exception as exc:
        logger.exception("could not keep the edit pair of draft %s", draft_id)
        if draft is not None:
            _pair_missed(draft, approved_at or timezone.now(), f"{type(exc).__name__}: {exc}")
        return None


def edit_pair_withdraw(*, draft_id: int, draft_version: int) -> int:
    """Forget the pair (or the missed pair) of an approval its approver undid: an approval
    taken back is not the editor's accepted text. Returns how many rows went."""
    pairs, _ = EditPair.objects.filter(draft_id=draft_id, draft_version=draft_version).delete()
    missed, _ = MissedPair.objects.filter(draft_id=draft_id, draft_version=draft_version).delete()
    return pairs + missed


def _edit_pair_write(
    draft: Draft, approved_by: AbstractBaseUser | None, approved_at: datetime
) -> EditPair:
    final_text = html_to_text(draft.body)
    diff, distance = data_mod.word_diff(draft.model_output, final_text)
    longest = max(len(data_mod.words(draft.model_output)), len(data_mod.words(final_text)), 1)
    try:
        with transaction.atomic():
            pair = EditPair.objects.create(
                project_id=draft.project_id,
                draft=draft,
                draft_version=draft.version,
                model_id=draft.model_id,
                model_name=draft.model_name,
                template_version_id=draft.template_version_id,
                prompt=draft.prompt,
                model_output=draft.model_output,
                final_text=final_text,
                diff=diff,
                edit_distance=distance,
                edit_ratio=round(min(1.0, distance / longest), 4),
                approved_at=approved_at,
                approved_by=approved_by,
                seconds_to_approval=max(0.0, (approved_at - draft.created_at).total_seconds()),
            )
            MissedPair.objects.filter(draft=draft, draft_version=draft.version).delete()
    except IntegrityError:
        # Another delivery of the same approval kept it a moment ago.
        kept = EditPair.objects.filter(draft=draft, draft_version=draft.version).first()
        if kept is None:
            raise
        return kept
    return pair


def _pair_missed(draft: Draft, approved_at: datetime, reason: str) -> None:
    try:
        with transaction.atomic():
            missed, created = MissedPair.objects.get_or_create(
                draft=draft,
                draft_version=draft.version,
                defaults={
                    "project_id": draft.project_id,
                    "approved_at": approved_at,
                    "reason": reason[:2000],
                },
            )
            if not created:
                MissedPair.objects.filter(pk=missed.pk).update(
                    reason=reason[:2000], attempts=F("attempts") + 1, failed_at=timezone.now()
                )
    except Exception:
        # The database itself failed: the log above is the only record left.
        logger.exception("could not record the missed edit pair of draft %s", draft.pk)
