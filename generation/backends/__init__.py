"""Generation backends behind one interface (``base.Backend``), one module per backend.

``get_backend(config)`` returns the backend loaded in this process for a ``BackendConfig``,
loading it on first use; the same object then serves every call (several at once). The shared
types are in ``types``, the interface in ``base``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from generation.backends.base import Backend
from generation.backends.types import BackendConfig, BackendError

BACKEND_NAMES = ("transformers", "onnx", "llamacpp", "openai")

_loaded: dict[tuple[object, ...], Backend] = {}
_locks: dict[tuple[object, ...], threading.Lock] = {}
_registry_lock = threading.Lock()


def load_backend(config: BackendConfig, *, cache_root: Path) -> Backend:
    """A new backend object (no cache): what ``get_backend`` and the check action use."""
    if config.backend == "transformers":
        from generation.backends.hf_transformers import TransformersBackend

        return TransformersBackend(config, cache_root=cache_root)
    if config.backend == "onnx":
        from generation.backends.onnx_genai import OnnxGenAIBackend

        return OnnxGenAIBackend(config, cache_root=cache_root)
    if config.backend == "llamacpp":
        from generation.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(config, cache_root=cache_root)
    if config.backend == "openai":
        from generation.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(config, cache_root=cache_root)
    raise BackendError(f"Unknown backend {config.backend!r}; one of {', '.join(BACKEND_NAMES)}.")


def get_backend(config: BackendConfig, *, cache_root: Path) -> Backend:
    """The loaded backend for ``config``; loads once per process even when calls race for it."""
    if config.backend == "transformers":
        # A thin object over the per-process weights cache (``hf_transformers.load_weights``):
        # built per call, the weights loaded once.
        return load_backend(config, cache_root=cache_root)
    with _registry_lock:
        backend = _loaded.get(config.key)
        if backend is not None:
            return backend
        lock = _locks.setdefault(config.key, threading.Lock())
    with lock:  # one loader per model; other models load meanwhile
        backend = _loaded.get(config.key)
        if backend is None:
            backend = load_backend(config, cache_root=cache_root)
            with _registry_lock:
                _loaded[config.key] = backend
        return backend


def forget_backends() -> None:
    """Drop every loaded backend (tests; a model whose files were re-converted)."""
    with _registry_lock:
        _loaded.clear()
