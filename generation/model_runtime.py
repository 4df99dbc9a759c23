"""LanguageModel rows meet the backends: a row's backend config, its weights on disk (a packaged
GGUF or a hub snapshot, the ONNX conversion), and the per-backend check in a worker.

The ORM-aware side of ``generation/backends/``, which is given a ``BackendConfig`` and never
imports a model. Any LanguageModel (the default one, a hub id, a tuned model saved as a plain
transformers directory) goes through ``model_convert_onnx`` the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from generation import tuning
from generation.backends import forget_backends, load_backend
from generation.backends.convert import convert_to_onnx, target_dir
from generation.backends.gguf import convert_packaged_gguf
from generation.backends.types import BackendConfig, ModelLoadError
from generation.models import BackendKind, LanguageModel, ModelSource

logger = logging.getLogger(__name__)


def backend_config(model: LanguageModel, *, backend: str | None = None) -> BackendConfig:
    """What a worker needs to load ``model`` with ``backend`` (its configured one by default,
    or the engine this host chose for it: ``serving_backend``)."""
    return BackendConfig(
        backend=backend or serving_backend(model),
        source_kind=model.source_kind,
        source=model.source,
        revision=model.revision,
        device=model.device,
        dtype=model.dtype,
        onnx_dir=model.onnx_dir,
        onnx_precision=model.onnx_precision,
        base_url=model.server_url,
        remote_model=model.server_model,
        api_key=model.server_api_key,
        api_mode=model.server_api,
        timeout=float(model.server_timeout),
        max_retries=int(model.server_max_retries),
        server_honours_n=model.server_honours_n,
        server_sampling_extras=model.server_sampling_extras,
        server_concurrent_requests=model.server_concurrent_requests,
        model_name=model.name,
        **worker_backend_options(),
    )


def serving_backend(model: LanguageModel) -> str:
    """The backend that serves ``model`` here: its configured one, except that an ONNX model on
    CPU converted from a GGUF runs on llama.cpp where this host measured llama.cpp faster on it
    and as faithful (``tuning.tune_engine``, ``manage.py studio_tune``) and it is installed."""
    if (
        model.backend != BackendKind.ONNX
        or model.device == "cuda"
        or not getattr(django_settings, "TUNING", False)
        or not (model.source_kind == ModelSource.PACKAGE_GGUF or model.source.endswith(".gguf"))
        or tuning.applied_engine(django_settings.DATA_DIR, model.name) != BackendKind.LLAMACPP
    ):
        return model.backend
    from generation.backends.llamacpp import available

    reason = available()
    if reason:
        logger.warning("llama.cpp was chosen for %s on this host but %s", model.name, reason)
        return model.backend
    return BackendKind.LLAMACPP


def worker_backend_options() -> dict[str, Any]:
    """The worker's side of every backend config, from the settings: its cores and how it runs
    generation jobs side by side (the ONNX backend's sessions follow them)."""
    options = {
        "cores": int(getattr(django_settings, "TORCH_THREADS", 0) or 0),
        "concurrency": max(1, int(getattr(django_settings, "GENERATION_CONCURRENCY", 1) or 1)),
        "merge_calls": bool(getattr(django_settings, "GENERATION_MERGE_JOBS", True)),
        "wide_session": bool(getattr(django_settings, "GENERATION_WIDE_SESSION", True)),
        "spin": bool(getattr(django_settings, "GENERATION_ONNX_SPIN", False)),
    }
    if getattr(django_settings, "TUNING", False):
        # This host's measured choice (``manage.py studio_tune``) over the settings' values.
        options = tuning.applied_generation_options(django_settings.DATA_DIR, options)
    return options


def plain_model_dir(model: LanguageModel, *, progress: Callable[[str], None] | None = None) -> Path:
    """A transformers directory of ``model``'s weights (what the ONNX builder reads)."""
    if model.source_kind == ModelSource.PACKAGE_GGUF:
        return convert_packaged_gguf(
            model.source, django_settings.MODEL_CACHE_DIR, progress=progress
        )
    if model.source_kind == ModelSource.LOCAL:
        path = Path(model.source)
        if not (path / "config.json").exists():
            raise ModelLoadError(f"Local model directory {model.source!r} does not exist.")
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model.source, revision=model.revision or None))
    except Exception as exc:
        raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc


def model_convert_onnx(
    *, model_id: int, progress: Callable[[str], None] | None = None
) -> LanguageModel:
    """Convert a model to ONNX Runtime GenAI once (checked, atomic) and record where and how.

    Side effects: writes the converted directory under MODEL_CACHE_DIR/onnx and the model's
    ``onnx_dir`` / ``onnx_conversion``; drops loaded backends of this process so the next job
    loads the new files. Raises ModelLoadError with the reason.
    """
    model = LanguageModel.objects.get(pk=model_id)
    say = progress or (lambda message: logger.info("%s", message))
    source = plain_model_dir(model, progress=say)
    target = target_dir(django_settings.MODEL_CACHE_DIR, source, model.onnx_precision)
    say(f"Converting {model.name} to ONNX Runtime GenAI ({model.onnx_precision}) into {target}")
    meta = convert_to_onnx(
        source,
        target,
        precision=model.onnx_precision,
        progress=say,
        threads=django_settings.TORCH_THREADS or None,
    )
    LanguageModel.objects.filter(pk=model.pk).update(
        onnx_dir=str(target), onnx_conversion=meta, updated_at=timezone.now()
    )
    forget_backends()
    model.refresh_from_db()
    return model


def model_check(*, model_id: int, backend: str | None = None) -> LanguageModel:
    """Load ``model`` with ``backend`` in this worker, write a few tokens, record the outcome.

    The result goes to ``backend_checks[backend]``, and to the last-check fields when it is the
    model's configured backend. Never raises: the exact error is the recorded message.
    """
    model = LanguageModel.objects.get(pk=model_id)
    kind = backend or model.backend
    ok, load_seconds = False, None
    try:
        if kind not in BackendKind.values:
            raise ModelLoadError(f"Unknown backend {kind!r}.")
        if kind == BackendKind.ONNX and not model.onnx_dir:
            raise ModelLoadError(
                "Not converted to ONNX yet: run the 'Convert to ONNX' action (or studio_setup)."
            )
        loaded = load_backend(
            backend_config(model, backend=kind), cache_root=django_settings.MODEL_CACHE_DIR
        )
        load_seconds = loaded.load_seconds
        message = loaded.check()
        ok = True
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
    now = timezone.now()
    record_backend_check(
        model_id=model_id, backend=kind, ok=ok, message=message, at=now.isoformat()
    )
    if kind == model.backend:
        LanguageModel.objects.filter(pk=model_id).update(
            last_check_at=now,
            last_check_ok=ok,
            last_check_message=message[:5000],
            last_check_load_seconds=load_seconds,
        )
    model.refresh_from_db()
    return model


_checks_lock = threading.Lock()


def record_backend_check(*, model_id: int, backend: str, ok: bool, message: str, at: str) -> None:
    """Set one backend's entry of ``backend_checks``. Checks of several backends run at once
    (one per worker thread): the row is locked (and, for SQLite, this process's lock held)
    while the dict is read and written back, so no check overwrites another's."""
    with _checks_lock, transaction.atomic():
        row = LanguageModel.objects.select_for_update().get(pk=model_id)
        checks = dict(row.backend_checks or {})
        checks[backend] = {"ok": ok, "message": message[:2000], "at": at}
        LanguageModel.objects.filter(pk=model_id).update(backend_checks=checks)
