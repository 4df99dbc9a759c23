"""``manage.py studio_tune``: measure this host's host-dependent settings and record the choice.

Generation (job merging against per-job threads, spinning pool threads) on the default model's
ONNX conversion, and the sentence encoder (graph, precision, spinning): each candidate in
interleaved rounds, the fastest whose outputs are the same as the reference's kept
(``generation.tuning``). The record goes to DATA_DIR/tuning/host-<fingerprint>.json; workers
apply it at their next job. It lives in review because it measures both generation and review's
encoder (the import contract lets review use generation, not the other way round).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation import tuning
from generation.model_runtime import backend_config
from generation.models import BackendKind, LanguageModel, ModelSource

logger = logging.getLogger(__name__)
STALE_LOCK_S = 1800


class ProgressBar:
    """A one-line bar on a terminal; one line per step elsewhere (logs)."""

    def __init__(self, stream: Any, title: str) -> None:
        self.stream, self.title = stream, title
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def __call__(self, step: int, steps: int, label: str) -> None:
        width = 30
        filled = int(width * step / max(1, steps))
        bar = "#" * filled + "-" * (width - filled)
        line = f"{self.title} [{bar}] {step}/{steps} {label}"
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
            if step >= steps:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _tune_onnx_model(
    model: LanguageModel, section: str, measure: Any, *, quick: bool, progress: Any
) -> dict[str, Any] | None:
    """Run ``measure`` (a ``tuning.tune_*``) on ``model``'s ONNX conversion and record it as
    ``section``; None (nothing recorded) when it cannot be measured here: not an ONNX model on
    CPU, or not converted yet. The candidates' sessions are loaded apart from the worker's own
    (``load_backend``, not registered) and freed with them."""
    if model.backend != BackendKind.ONNX or not model.onnx_dir or model.device == "cuda":
        return None
    result = measure(
        backend_config(model, backend=BackendKind.ONNX),
        cache_root=settings.MODEL_CACHE_DIR,
        quick=quick,
        progress=progress,
    )
    tuning.write_record(settings.DATA_DIR, section, result)
    return result


def tune_generation_for(
    model: LanguageModel, *, quick: bool, progress: Any = None
) -> dict[str, Any] | None:
    """This host's generation settings measured on ``model`` and recorded (None: see
    ``_tune_onnx_model``)."""
    return _tune_onnx_model(
        model, "generation", tuning.tune_generation, quick=quick, progress=progress
    )


def tune_engine_for(
    model: LanguageModel, *, quick: bool, progress: Any = None
) -> dict[str, Any] | None:
    """ONNX Runtime against llama.cpp on ``model`` (with this host's generation choice just
    recorded) and record; None when it does not apply: not an ONNX model on CPU converted from
    a GGUF. Recorded either way when it applies: without llama-cpp-python the record says so
    (and ONNX Runtime serves)."""
    if not (model.source_kind == ModelSource.PACKAGE_GGUF or model.source.endswith(".gguf")):
        return None
    return _tune_onnx_model(model, "engine", tuning.tune_engine, quick=quick, progress=progress)


def tune_embedding_here(*, quick: bool, progress: Any = None) -> dict[str, Any]:
    from review.checks import semantic
    from review.services.embed_tuning import tune_embedding
    from review.services.embedding import encoder_config

    base = encoder_config()
    # The settings' values are the reference, whatever was recorded before.
    reference = semantic.EncoderConfig(
        onnx=True,
        threads=base.threads,
        spin=settings.EMBED_SPIN,
        precision=settings.EMBED_PRECISION,
        graph=settings.EMBED_GRAPH,
        cache_dir=base.cache_dir,
    )
    result = tune_embedding(
        config=reference,
        model_path=settings.EMBEDDING_MODEL_PATH or None,
        quick=quick,
        progress=progress,
    )
    tuning.write_record(settings.DATA_DIR, "embedding", result)
    return result


def describe(result: dict[str, Any]) -> list[str]:
    lines = [f"  chosen: {result['chosen']} ({result['speedup_vs_reference']}x the reference)"]
    for trial in result["trials"]:
        if trial["error"]:
            state = f"refused: {trial['error']}"
        elif not trial["same_outputs"]:
            state = f"refused, outputs differ: {trial['difference']}"
        else:
            state = f"best {trial['best_s']} s of {trial['seconds']}"
        lines.append(f"  {trial['setting']}: {state}")
    return lines


class Command(BaseCommand):
    help = (
        "Measure the settings whose best value depends on this host (job merging, spinning, "
        "the encoder's graph and precision), keep the fastest that gives the same outputs, "
        "and record the choice for the workers."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--quick", action="store_true", help="fewer tokens and rounds")
        parser.add_argument(
            "--only", choices=["generation", "embedding"], help="measure one part only"
        )
        parser.add_argument("--model", help="language model name (default: the default model)")

    def handle(self, *args: Any, **options: Any) -> None:
        quick, only = options["quick"], options["only"]
        fingerprint = tuning.host_fingerprint()
        self.stdout.write(
            f"Host: {fingerprint['cpu']}, {fingerprint['cores']} cores "
            f"(record {tuning.record_path(settings.DATA_DIR)})"
        )
        if only in (None, "generation"):
            models = LanguageModel.objects.filter(enabled=True)
            model = (
                models.filter(name=options["model"]).first()
                if options["model"]
                else models.filter(is_default=True).first()
            )
            if model is None:
                raise CommandError(
                    f"No enabled language model named {options['model']!r}."
                    if options["model"]
                    else "No default language model: run studio_setup first."
                )
            bar = ProgressBar(sys.stdout, f"generation ({model.name})")
            result = tune_generation_for(model, quick=quick, progress=bar)
            if result is None:
                self.stdout.write(
                    f"generation: not measured: {model.name} is not a converted ONNX model on "
                    "CPU (its settings do not apply to it)"
                )
            else:
                self.stdout.write("generation:")
                self.stdout.write("\n".join(describe(result)))
                bar = ProgressBar(sys.stdout, f"engine ({model.name})")
                engine = tune_engine_for(model, quick=quick, progress=bar)
                if engine is not None:
                    self.stdout.write("engine (ONNX Runtime or llama.cpp on the GGUF):")
                    self.stdout.write("\n".join(describe(engine)))
        if only in (None, "embedding"):
            bar = ProgressBar(sys.stdout, "embedding")
            try:
                result = tune_embedding_here(quick=quick, progress=bar)
            except Exception as exc:  # no encoder on this host: say so, keep the settings
                self.stdout.write(f"embedding: not measured: {type(exc).__name__}: {exc}")
            else:
                self.stdout.write("embedding:")
                self.stdout.write("\n".join(describe(result)))


def tune_at_start(
    parts: tuple[str, ...] = ("generation", "engine", "embedding"),
) -> threading.Thread | None:
    """A quick measurement in a background thread when nothing is recorded for this host
    (``TUNE_AT_START``); one process at a time (a lock file), so workers that start together
    measure once. Returns the measuring thread, or None when none was started."""
    if not (settings.TUNING and settings.TUNE_AT_START):
        return None
    # Only what this host has no record of yet (a model converted after an earlier start is
    # measured at the next one).
    record = tuning.read_record(settings.DATA_DIR) or {}
    missing = [part for part in parts if part not in record]
    if not missing:
        return None
    lock = tuning.record_path(settings.DATA_DIR).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        if time.time() - lock.stat().st_mtime > STALE_LOCK_S:  # a process that died measuring
            lock.unlink(missing_ok=True)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return None
    os.close(fd)

    def run() -> None:
        from django.db import close_old_connections

        try:
            model = LanguageModel.objects.filter(enabled=True, is_default=True).first()
            if model is not None and "generation" in missing:
                tune_generation_for(model, quick=True)
            if model is not None and "engine" in missing:
                tune_engine_for(model, quick=True)
            if "embedding" in missing:
                try:
                    tune_embedding_here(quick=True)
                except Exception as exc:
                    logger.info("embedding not measured at start: %s", exc)
            logger.info("host measured at start: %s", tuning.record_path(settings.DATA_DIR))
        except Exception:
            logger.warning("measuring the host at start failed", exc_info=True)
        finally:
            lock.unlink(missing_ok=True)
            close_old_connections()

    thread = threading.Thread(target=run, name="studio-tune", daemon=True)
    thread.start()
    return thread
