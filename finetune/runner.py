"""The worker's side of a fine-tuning run: claim it, train with a heartbeat, report progress,
finish it; and the sweep that fails runs whose worker died.

A run is claimed with a conditional move queued -> running (a redelivered message finds it
claimed and stops). A timer thread beats while the run loads, trains and evaluates; the sweep
fails a running run whose beat went silent, and the worker stops writing once that happened.
Every status change goes through ``RUN_LIFECYCLE``; nothing slow runs inside a transaction.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from contentstudio.heartbeat import Heartbeat
from finetune import data as data_mod
from finetune import live, rules, selectors, services
from finetune.models import RUN_LIFECYCLE, FineTuneRun, RunStatus
from finetune.training import loop
from finetune.training.errors import FineTuneError, out_of_memory
from finetune.training.examples import split_examples
from generation.backends.hf_transformers import pick_device
from generation.backends.types import ModelLoadError

logger = logging.getLogger(__name__)

# Progress is saved to the row at most this often (every point is published live).
SAVE_INTERVAL = 1.0


def output_dir_for(run_id: int) -> Path:
    return Path(django_settings.MODEL_CACHE_DIR) / "finetuned" / f"run-{run_id}"


class Reporter:
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

    def on_progress(self, progress: loop.Progress) -> None:
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
    on_progress: Callable[[loop.Progress], None] | None = None,
) -> FineTuneRun | None:
    """Run a queued fine-tuning in this process: claim it, load a private copy of the base
    model, train, register the best weights as a new LanguageModel.

    Idempotent: a run that is not queued (another worker has it, or it ended) is left alone.
    ``on_progress`` (the command's progress bar) is called with every loop.Progress too.
    Every failure ends the run as failed with the reason and the field at fault.
    """
    now = timezone.now()
    claimed = RUN_LIFECYCLE.move(
        run_id,
        to=RunStatus.RUNNING,
        expected=RunStatus.QUEUED,
        fields={
            "started_at": now,
            "heartbeat_at": now,
            "worker": worker_name[:200],
            "phase": "loading",
        },
        event={"action": "start", "data": {"worker": worker_name}},
        on_commit=lambda: services.run_announce(run_id),
    )
    if claimed is None:
        run = FineTuneRun.objects.filter(pk=run_id).first()
        if run is not None:
            run_fail_if_stale(run=run)
        return run

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
            _train(run_id, on_progress, heartbeat)
    except FineTuneError as exc:
        run_fail(run_id=run_id, error=exc.message, field=exc.field)
    except ModelLoadError as exc:
        run_fail(run_id=run_id, error=f"The base model failed to load: {exc}", field="base_model")
    except Exception as exc:
        logger.exception("fine-tuning run %s failed", run_id)
        run_fail(run_id=run_id, error=f"Internal error during the run: {type(exc).__name__}: {exc}")
    return FineTuneRun.objects.get(pk=run_id)


def _train(
    run_id: int,
    on_progress: Callable[[loop.Progress], None] | None,
    heartbeat: Heartbeat | None = None,
) -> None:
    run = FineTuneRun.objects.select_related("base_model", "project").get(pk=run_id)
    settings, _errors = rules.parse_settings(run.settings)
    split = split_examples(data_mod.examples(project_id=run.project_id, spec=run.data), settings)
    try:
        device = pick_device(run.device)
    except ModelLoadError as exc:
        raise FineTuneError(str(exc), field="device") from exc
    path = services.model_dir(run.base_model)
    try:
        model, tokenizer = loop.load_for_training(
            path, device=device, revision=run.base_model.revision
        )
    except Exception as exc:
        if out_of_memory(exc):
            raise FineTuneError(
                "Out of memory while loading the base model: use a smaller model or a larger "
                "machine.",
                field="base_model",
            ) from exc
        raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
    reporter = Reporter(run, heartbeat)

    def progress(p: loop.Progress) -> None:
        reporter.on_progress(p)
        if on_progress is not None:
            on_progress(p)

    result = loop.train(
        model=model,
        tokenizer=tokenizer,
        split=split,
        settings=settings,
        output_dir=output_dir_for(run.pk),
        device=device,
        on_progress=progress,
        should_stop=reporter.should_stop,
    )
    del model
    _finish(run=run, result=result)


def _finish(*, run: FineTuneRun, result: loop.TrainResult) -> None:
    """End a run that trained: register its best weights (only if they beat the base model on
    the validation texts: a "tuned" model no better than its base is only a trap in the model
    list) and move it to succeeded (or cancelled) in one transaction, only while it is still
    running (not failed meanwhile by the sweep)."""
    end = timezone.now()
    final = RunStatus.CANCELLED if result.cancelled else RunStatus.SUCCEEDED
    steady = result.steady_tokens_per_second
    with transaction.atomic():
        model = services.model_register(run=run, result=result) if result.improved else None
        moved = RUN_LIFECYCLE.move(
            run.pk,
            to=final,
            expected=RunStatus.RUNNING,
            fields={
                "result_model": model,
                "finished_at": end,
                "heartbeat_at": end,
                "phase": "",
                "seconds_left": 0.0 if final == RunStatus.SUCCEEDED else None,
                "step": result.steps,
                "total_steps": result.total_steps,
                "history": result.history,
                "counts": result.counts,
                "tokens_per_second": round(result.tokens_per_second, 2),
                "steady_tokens_per_second": round(steady, 2) if steady else None,
                "parameters": result.parameters,
                "trainable_parameters": result.trainable_parameters,
                "base_test_ppl": round(result.base_test_ppl, 4),
                "test_ppl": round(result.test_ppl, 4),
                "best_val_ppl": round(result.best_val_ppl, 4),
                "base_val_ppl": round(result.base_val_ppl, 4),
                "best_step": result.best_step,
                "stopped_early": result.stopped_early,
                "output_dir": str(result.output_dir) if model else "",
            },
            event={
                "action": "finish" if final == RunStatus.SUCCEEDED else "cancelled",
                "data": {
                    "result_model": model.pk if model else None,
                    "steps": result.steps,
                    "registered": model is not None,
                },
            },
        )
        if moved is None:
            # Failed meanwhile (judged stale): keep the row as it is, drop the registration.
            transaction.set_rollback(True)
    if model is None:
        loop.remove_output(Path(result.output_dir))
    elif moved is not None:
        # The provenance travels with the weights too, for anyone who finds the directory.
        run.refresh_from_db()
        (Path(result.output_dir) / "contentstudio_provenance.json").write_text(
            json.dumps(selectors.run_provenance(run), indent=2)
        )
    services.run_announce(run.pk)


def run_fail(
    *, run_id: int, error: str, field: str = "", heartbeat_seen: datetime | None = None
) -> bool:
    """End a run that has not ended as failed, with the reason and the input at fault.
    ``heartbeat_seen``: only if the run has not beaten since (the sweep failing a silent one;
    a worker that beat meanwhile is alive after all)."""
    failed = RUN_LIFECYCLE.move(
        run_id,
        to=RunStatus.FAILED,
        where={"heartbeat_at": heartbeat_seen} if heartbeat_seen is not None else None,
        fields={
            "error": error[:5000],
            "error_field": field[:100],
            "finished_at": timezone.now(),
            "phase": "",
            "seconds_left": None,
        },
        event={"action": "fail", "data": {"error": error[:500], "field": field}},
        on_commit=lambda: services.run_announce(run_id),
    )
    return failed is not None


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
        heartbeat_seen=run.heartbeat_at,
        error=(
            f"The worker running this fine-tuning ({run.worker or 'unknown'}) stopped responding "
            f"{int(age)} s ago (it crashed or was killed, perhaps out of memory). Start a new run; "
            "a smaller batch size or LoRA needs less memory."
        ),
        field="settings.batch_size",
    )


def runs_sweep() -> dict[str, int]:
    """Periodic (settings.CELERY_BEAT_SCHEDULE): fail runs whose worker died (no heartbeat),
    and enqueue again runs queued so long that their message was lost (the claim makes a
    duplicate harmless)."""
    from finetune import tasks

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
