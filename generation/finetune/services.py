"""Writes of the fine-tuning app: validate and start a run, run it in the worker, cancel it,
register its result, keep edit pairs.

Every run write goes through a function here (views, the command, the task and the receivers
call them). Status moves follow ``RUN_TRANSITIONS`` with a conditional UPDATE and an audit row in
the same transaction; model loading and training never run inside a transaction.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from pathlib import Path
from statistics import median
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from contentstudio.errors import InvalidTransition
from contentstudio.heartbeat import Heartbeat
from contentstudio.html import html_to_text
from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from generation import engine as engine_mod
from generation.finetune import data as data_mod
from generation.finetune import live, trainer
from generation.finetune.models import (
    RUN_TRANSITIONS,
    EditPair,
    FineTuneEvent,
    FineTuneRun,
    RunStatus,
)
from generation.models import Device, Draft, LanguageModel, ModelSource

logger = logging.getLogger(__name__)

# Progress is saved to the row at most this often (every point is published live).
SAVE_INTERVAL = 1.0


# --- Models on disk ---------------------------------------------------------------------------


def model_dir(model: LanguageModel) -> str:
    """Where ``from_pretrained`` finds the model: a directory, or a hub id."""
    if model.source_kind == ModelSource.PACKAGE_GGUF:
        return str(
            engine_mod.convert_packaged_gguf(model.source, Path(django_settings.MODEL_CACHE_DIR))
        )
    if model.source_kind == ModelSource.LOCAL and not Path(model.source).is_dir():
        raise engine_mod.ModelLoadError(f"Local model directory {model.source!r} does not exist.")
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


def output_dir_for(run_id: int) -> Path:
    return Path(django_settings.MODEL_CACHE_DIR) / "finetuned" / f"run-{run_id}"


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
) -> tuple[trainer.TrainSettings, dict[str, Any]]:
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
    resolved, setting_errors = trainer.parse_settings(settings)
    errors.update(setting_errors)
    if errors:
        raise ValidationError(errors)
    return resolved, spec


def _select(project: Project, spec: dict[str, Any], settings: trainer.TrainSettings) -> Any:
    try:
        return trainer.split_examples(
            data_mod.examples(project_id=project.pk, spec=spec),
            settings,  # type: ignore[arg-type]
        )
    except trainer.FineTuneError as exc:
        raise ValidationError({exc.field or "data": [exc.message]}) from None


def _measured_rate(lora: bool) -> float | None:
    """Tokens/s x parameters of the last runs on this installation with the same LoRA choice."""
    rates = [
        run.tokens_per_second * run.parameters
        for run in FineTuneRun.objects.filter(
            status=RunStatus.SUCCEEDED,
            tokens_per_second__isnull=False,
            parameters__isnull=False,
            settings__lora=lora,
        ).order_by("-finished_at")[:5]
    ]
    return median(rates) if rates else None


def run_estimate(
    *,
    project: Project,
    user: AbstractBaseUser,
    base_model: LanguageModel | None,
    data: dict[str, Any] | None,
    settings: dict[str, Any] | None,
    device: str = Device.AUTO,
) -> trainer.Estimate:
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
    enc = trainer.encode_examples(
        split.train, tokenizer, max_length=resolved.max_seq_length, chat=chat, pack=True
    )
    val = trainer.encode_examples(
        split.validation, tokenizer, max_length=resolved.max_seq_length, chat=chat
    )
    test = trainer.encode_examples(
        split.test, tokenizer, max_length=resolved.max_seq_length, chat=chat
    )
    if not enc.ids:
        raise ValidationError({"data": ["The training texts have no tokens."]})
    counts = {**split.counts(), "test_tokens": test.tokens}
    return trainer.estimate(
        counts=counts,
        train=enc,
        evaluation_tokens=val.tokens,
        parameters=parameters,
        settings=resolved,
        measured_rate=_measured_rate(resolved.lora),
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
    from generation.finetune import tasks  # tasks import services

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


def _move(
    run_id: int,
    to: str,
    *,
    actor: AbstractBaseUser | None = None,
    action: str,
    data: dict[str, Any] | None = None,
    only_from: frozenset[str] | None = None,
    **fields: Any,
) -> bool:
    """Move a run to ``to`` when the transition table allows it from its current status:
    a conditional UPDATE and an audit row in one transaction. False when another writer moved
    it first."""
    with transaction.atomic():
        current = FineTuneRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        if current is None or to not in RUN_TRANSITIONS[current]:
            return False
        if only_from is not None and current not in only_from:
            return False
        changed = FineTuneRun.objects.filter(pk=run_id, status=current).update(status=to, **fields)
        if changed != 1:
            return False
        FineTuneEvent.objects.create(
            run_id=run_id,
            actor=actor,
            action=action,
            from_status=current,
            to_status=to,
            data=data or {},
        )
    return True


def run_cancel(*, run: FineTuneRun, user: AbstractBaseUser) -> FineTuneRun:
    """Stop a run. A queued run ends at once; a running one stops at its next batch, keeps the
    best weights so far, measures and registers them. Raises InvalidTransition when over."""
    require_role(user=user, project=run.project, minimum=Role.ADMIN)
    now = timezone.now()
    # Only a queued run ends here; a running one is ended by its worker (below).
    if _move(
        run.pk,
        RunStatus.CANCELLED,
        only_from=frozenset({RunStatus.QUEUED}),
        actor=user,
        action="cancel",
        finished_at=now,
        cancel_requested_at=now,
        cancel_requested_by=user,
    ):
        _announce(run.pk)
    else:
        requested = FineTuneRun.objects.filter(
            pk=run.pk, status=RunStatus.RUNNING, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now, cancel_requested_by=user)
        if requested:
            FineTuneEvent.objects.create(run=run, actor=user, action="cancel_requested")
        elif not FineTuneRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).exists():
            run.refresh_from_db()
            raise InvalidTransition(f"The run is {run.get_status_display().lower()} already.")
    run.refresh_from_db()
    return run


def run_fail(*, run_id: int, error: str, field: str = "") -> bool:
    failed = _move(
        run_id,
        RunStatus.FAILED,
        action="fail",
        data={"error": error[:500], "field": field},
        error=error[:5000],
        error_field=field[:100],
        finished_at=timezone.now(),
        phase="",
        seconds_left=None,
    )
    if failed:
        _announce(run_id)
    return failed


def run_fail_if_stale(*, run: FineTuneRun) -> bool:
    if run.status != RunStatus.RUNNING or run.heartbeat_at is None:
        return False
    age = (timezone.now() - run.heartbeat_at).total_seconds()
    # A timer thread beats while the run trains, evaluates or loads (contentstudio.heartbeat):
    # silence this long means the worker process died.
    if age < django_settings.GENERATION_STALE_AFTER:
        return False
    return run_fail(
        run_id=run.pk,
        error=(
            f"The worker running this fine-tuning ({run.worker or 'unknown'}) stopped responding "
            f"{int(age)} s ago (it crashed or was killed, perhaps out of memory). Start a new run; "
            "a smaller batch size or LoRA needs less memory."
        ),
        field="settings.batch_size",
    )


def run_state(run: FineTuneRun, *, history: bool = False) -> dict[str, Any]:
    """The run as pages and the websocket show it (``history`` adds the whole curve)."""
    state: dict[str, Any] = {
        "id": run.pk,
        "status": run.status,
        "status_label": run.get_status_display(),
        "phase": run.phase,
        "step": run.step,
        "total_steps": run.total_steps,
        "epoch": run.epoch,
        "seconds_left": run.seconds_left,
        "tokens_per_second": run.tokens_per_second,
        "base_test_ppl": run.base_test_ppl,
        "test_ppl": run.test_ppl,
        "best_val_ppl": run.best_val_ppl,
        "best_step": run.best_step,
        "stopped_early": run.stopped_early,
        "cancel_requested": run.cancel_requested_at is not None,
        "error": run.error,
        "error_field": run.error_field,
        "result_model": (
            {"id": run.result_model_id, "name": run.result_model.name}
            if run.result_model_id and run.result_model
            else None
        ),
        "counts": run.counts,
        "estimate": run.estimate,
    }
    if history:
        state["history"] = run.history
    return state


def _announce(run_id: int) -> None:
    run = FineTuneRun.objects.select_related("result_model").get(pk=run_id)
    live.publish_status(run_id, run_state(run, history=True))
    live.publish_project_event(
        run.project_id, {"kind": "finetune", "id": run_id, "status": run.status}
    )


class _Reporter:
    """Lives for one run in the worker: publishes every point, saves the row now and then,
    polls for a cancel request."""

    def __init__(self, run: FineTuneRun, heartbeat: Heartbeat | None = None) -> None:
        self.run = run
        self.heartbeat = heartbeat
        self.history: list[dict[str, Any]] = []
        self._last_save = 0.0
        self._last_poll = 0.0
        self._cancel = False
        self.poll_every = django_settings.GENERATION_CANCEL_POLL

    def on_progress(self, progress: trainer.Progress) -> None:
        point = progress["point"]
        if point is not None:
            self.history.append(dict(point))
        live.publish_progress(
            self.run.pk,
            live.ProgressEvent(
                type=live.RUN_PROGRESS,
                phase=progress["phase"],
                step=progress["step"],
                total_steps=progress["total_steps"],
                epoch=round(progress["epoch"], 3),
                seconds_left=progress["seconds_left"],
                tokens_per_second=progress["tokens_per_second"],
                point=dict(point) if point is not None else None,
            ),
        )
        now = time.monotonic()
        evaluated = point is not None and "val_loss" in point
        if now - self._last_save >= SAVE_INTERVAL or evaluated or progress["phase"] != "training":
            self._last_save = now
            fields: dict[str, Any] = {
                "phase": progress["phase"],
                "history": self.history,
                "heartbeat_at": timezone.now(),
                "seconds_left": progress["seconds_left"],
                "tokens_per_second": progress["tokens_per_second"],
            }
            if progress["total_steps"]:
                fields.update(
                    step=progress["step"],
                    total_steps=progress["total_steps"],
                    epoch=round(progress["epoch"], 3),
                )
            FineTuneRun.objects.filter(pk=self.run.pk).update(**fields)

    def should_stop(self) -> bool:
        if self._cancel:
            return True
        if self.heartbeat is not None and self.heartbeat.lost:
            # A sweep judged the run dead and failed it: stop; nothing more is written.
            return True
        now = time.monotonic()
        if now - self._last_poll < self.poll_every:
            return False
        self._last_poll = now
        self._cancel = FineTuneRun.objects.filter(
            pk=self.run.pk, cancel_requested_at__isnull=False
        ).exists()
        return self._cancel


def run_execute(
    *,
    run_id: int,
    worker_name: str,
    on_progress: Any = None,
) -> FineTuneRun | None:
    """Run a queued fine-tuning in this process: claim it, load a private copy of the base
    model, train, register the best weights as a new LanguageModel.

    Idempotent: a run that is not queued (another worker has it, or it ended) is left alone.
    ``on_progress`` (the command's progress bar) is called with every trainer.Progress too.
    Every failure ends the run as failed with the reason and the field at fault.
    """
    now = timezone.now()
    if not _move(
        run_id,
        RunStatus.RUNNING,
        action="start",
        data={"worker": worker_name},
        started_at=now,
        heartbeat_at=now,
        worker=worker_name[:200],
        phase="loading",
    ):
        run = FineTuneRun.objects.filter(pk=run_id).first()
        if run is not None:
            run_fail_if_stale(run=run)
        return run
    _announce(run_id)

    def beat() -> bool:
        return (
            FineTuneRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
                heartbeat_at=timezone.now()
            )
            == 1
        )

    try:
        with Heartbeat(
            beat, interval=django_settings.GENERATION_HEARTBEAT_INTERVAL, name=f"finetune-{run_id}"
        ) as heartbeat:
            _run(run_id, on_progress, heartbeat)
    except trainer.FineTuneError as exc:
        run_fail(run_id=run_id, error=exc.message, field=exc.field)
    except engine_mod.ModelLoadError as exc:
        run_fail(run_id=run_id, error=f"The base model failed to load: {exc}", field="base_model")
    except Exception as exc:
        logger.exception("fine-tuning run %s failed", run_id)
        run_fail(run_id=run_id, error=f"Internal error during the run: {type(exc).__name__}: {exc}")
    return FineTuneRun.objects.get(pk=run_id)


def _run(run_id: int, on_progress: Any, heartbeat: Heartbeat | None = None) -> None:
    run = FineTuneRun.objects.select_related("base_model", "project").get(pk=run_id)
    settings, _errors = trainer.parse_settings(run.settings)
    split = trainer.split_examples(
        data_mod.examples(project_id=run.project_id, spec=run.data), settings
    )
    try:
        device = engine_mod.pick_device(run.device)
    except engine_mod.ModelLoadError as exc:
        raise trainer.FineTuneError(str(exc), field="device") from exc
    path = model_dir(run.base_model)
    try:
        model, tokenizer = trainer.load_for_training(
            path, device=device, revision=run.base_model.revision
        )
    except Exception as exc:
        if trainer._out_of_memory(exc):
            raise trainer.FineTuneError(
                "Out of memory while loading the base model: use a smaller model or a larger "
                "machine.",
                field="base_model",
            ) from exc
        raise engine_mod.ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
    reporter = _Reporter(run, heartbeat)

    def progress(p: trainer.Progress) -> None:
        reporter.on_progress(p)
        if on_progress is not None:
            on_progress(p)

    out = output_dir_for(run.pk)
    result = trainer.train(
        model=model,
        tokenizer=tokenizer,
        split=split,
        settings=settings,
        output_dir=out,
        device=device,
        on_progress=progress,
        should_stop=reporter.should_stop,
    )
    del model
    _finish(run=run, result=result, reporter=reporter)


def _register(run: FineTuneRun, result: trainer.TrainResult) -> LanguageModel:
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


def provenance(run: FineTuneRun) -> dict[str, Any]:
    """What a tuned model is: its base, the data it saw and the settings it was trained with."""
    return {
        "run": run.pk,
        "project": run.project.slug,
        "base_model": {
            "id": run.base_model_id,
            "name": run.base_model.name,
            "source_kind": run.base_model.source_kind,
            "source": run.base_model.source,
            "revision": run.base_model.revision,
        },
        "data": run.data,
        "counts": run.counts,
        "settings": run.settings,
        "test_perplexity": {"base": run.base_test_ppl, "tuned": run.test_ppl},
        "best_step": run.best_step,
    }


def _finish(*, run: FineTuneRun, result: trainer.TrainResult, reporter: _Reporter) -> None:
    end = timezone.now()
    final = RunStatus.CANCELLED if result.cancelled else RunStatus.SUCCEEDED
    with transaction.atomic():
        model = _register(run, result)
        moved = _move(
            run.pk,
            final,
            action="finish" if final == RunStatus.SUCCEEDED else "cancelled",
            data={"result_model": model.pk, "steps": result.steps},
            result_model=model,
            finished_at=end,
            heartbeat_at=end,
            phase="",
            seconds_left=0.0 if final == RunStatus.SUCCEEDED else None,
            step=result.steps,
            total_steps=result.total_steps,
            history=result.history,
            counts=result.counts,
            tokens_per_second=round(result.tokens_per_second, 2),
            parameters=result.parameters,
            trainable_parameters=result.trainable_parameters,
            base_test_ppl=round(result.base_test_ppl, 4),
            test_ppl=round(result.test_ppl, 4),
            best_val_ppl=round(result.best_val_ppl, 4),
            best_step=result.best_step,
            stopped_early=result.stopped_early,
            output_dir=str(result.output_dir),
        )
        if not moved:
            # Failed meanwhile (judged stale): keep the row as it is, drop the registration.
            transaction.set_rollback(True)
    if moved:
        # The provenance travels with the weights too, for anyone who finds the directory.
        import json

        run.refresh_from_db()
        (Path(result.output_dir) / "contentstudio_provenance.json").write_text(
            json.dumps(provenance(run), indent=2)
        )
    _announce(run.pk)


# --- Edit pairs -------------------------------------------------------------------------------


def edit_pair_record(
    *, draft_id: int, approved_by: AbstractBaseUser | None, approved_at: Any
) -> EditPair | None:
    """Keep (model output, editor's final text, diff) of a draft just approved. Called in the
    approval's transaction; one pair per approved version."""
    try:
        draft = Draft.objects.filter(pk=draft_id).first()
        if draft is None:
            return None
        final_text = html_to_text(draft.body)
        diff, distance = data_mod.word_diff(draft.model_output, final_text)
        longest = max(len(data_mod.words(draft.model_output)), len(data_mod.words(final_text)), 1)
        approved_at = approved_at or timezone.now()
        with transaction.atomic():
            return EditPair.objects.create(
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
    except IntegrityError:  # this version's pair exists already
        return None
    except Exception:
        # Keeping the pair must never undo the editor's approval (the savepoint above rolls
        # back only the pair); the log says which draft lacks one.
        logger.exception("could not keep the edit pair of draft %s", draft_id)
        return None


def runs_sweep() -> dict[str, int]:
    """Periodic (settings.CELERY_BEAT_SCHEDULE): fail runs whose worker died (no heartbeat),
    and enqueue again runs queued so long that their message was lost (the claim makes a
    duplicate harmless)."""
    from generation.finetune import tasks

    failed = sum(
        run_fail_if_stale(run=run)
        for run in FineTuneRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__isnull=False)
    )
    cutoff = timezone.now() - timezone.timedelta(seconds=django_settings.GENERATION_REQUEUE_AFTER)
    resent = 0
    for run_id in FineTuneRun.objects.filter(
        status=RunStatus.QUEUED, created_at__lt=cutoff
    ).values_list("pk", flat=True):
        tasks.finetune_run.delay(run_id)
        resent += 1
    return {"failed": failed, "resent": resent}
