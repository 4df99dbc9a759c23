"""The offline default toxicity model: two signals combined, each trained on labelled text.

No Detoxify-grade weights install offline, so when no Detoxify model or checkpoint is configured
the studio scores with this stand-in: ``alt-profanity-check`` (a linear model trained on human-
labelled comments: strong on insults and obscenity, blind to most threats) and the sentence
vectors of the encoder the semantic check already loads, with one logistic-regression head per
category that takes both as inputs. The heads are a few kilobytes of numbers
(``data/toxicity_head.npz``, no pickle) committed with the figures measured on held-out labelled
text (``data/toxicity_head.json``); every score names the weights by checksum, and the draft and
Policy pages say it is a stand-in. This module only scores: training, measuring and
calibrating are ``review.tools.train_toxicity_head``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from review.checks import semantic
from review.checks.toxicity.detoxify_model import JIGSAW_UNBIASED_CLASSES

DATA_DIR = Path(__file__).resolve().parent / "data"
HEAD_PATH = DATA_DIR / "toxicity_head.npz"
METRICS_PATH = DATA_DIR / "toxicity_head.json"
ENGINE = "contentstudio-toxicity-head"
# What the stand-in reads: an English sentence encoder and English training texts.
LANGUAGES: tuple[str, ...] = ("en",)
# The heads score Detoxify's categories, so either model fills the same policy thresholds.
CATEGORIES: tuple[str, ...] = JIGSAW_UNBIASED_CLASSES
# The encoder reads at most this many word pieces; the profanity model reads the whole text.
MAX_TOKENS = 256


class HeadUnavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def profanity_scores(texts: Sequence[str]) -> np.ndarray:
    """alt-profanity-check's probability per text (0..1); raises HeadUnavailable without it."""
    try:
        from profanity_check import predict_prob
    except ImportError as exc:  # the package is a declared dependency; say so if it is gone
        raise HeadUnavailable(f"alt-profanity-check is not installed ({exc})") from exc
    if not texts:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(predict_prob(list(texts)), dtype=np.float32)


def profanity_version() -> str:
    try:
        return importlib.metadata.version("alt-profanity-check")
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def features(embeddings: np.ndarray, profanity: np.ndarray) -> np.ndarray:
    """Inputs of the heads: the unit sentence vector and the profanity probability."""
    return np.hstack([embeddings.astype(np.float32), profanity.reshape(-1, 1).astype(np.float32)])


class HeadDetector:
    """Scores texts like ``toxicity.Detector`` (same attributes and methods), so the check,
    the evaluation command and the benchmark treat both alike."""

    def __init__(
        self,
        *,
        path: Path = HEAD_PATH,
        embedder: Any = None,
        encoder: semantic.EncoderConfig | None = None,
    ) -> None:
        if not path.is_file():
            raise HeadUnavailable(
                f"the toxicity head {path} is missing (python -m review.tools.train_toxicity_head"
                " train)"
            )
        raw = path.read_bytes()
        with np.load(path, allow_pickle=False) as data:
            self.weights = data["weights"].astype(np.float32)  # (categories, features)
            self.bias = data["bias"].astype(np.float32)
            self.categories: tuple[str, ...] = tuple(str(c) for c in data["categories"])
        self.checksum = hashlib.sha256(raw).hexdigest()[:12]
        if embedder is None:
            try:
                # Always the packaged MiniLM: the heads were trained on its vectors.
                embedder = semantic.Embedder(config=encoder)
            except semantic.EmbeddingModelUnavailable as exc:
                raise HeadUnavailable(f"the sentence encoder is unavailable: {exc}") from exc
        self.embedder = embedder
        self.max_length = MAX_TOKENS
        self.engine = ENGINE
        self.description = f"{ENGINE} sha256:{self.checksum}"
        self.version = f"{self.checksum}+minilm+alt-profanity-check {profanity_version()}"
        self.metrics = load_metrics()
        self.stand_in = True
        self._lock = threading.Lock()

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        # Word pieces are close to words for English; this only feeds "was it truncated?".
        return [min(len(t.split()) * 4 // 3, self.max_length) for t in texts]

    def score_texts(self, texts: Sequence[str], *, batch_size: int = 32) -> list[dict[str, float]]:
        if not texts:
            return []
        embeddings = self.embedder.encode(list(texts))
        inputs = features(embeddings, profanity_scores(texts))
        logits = inputs @ self.weights.T + self.bias
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        return [
            {c: float(p) for c, p in zip(self.categories, row, strict=True)}
            for row in probabilities
        ]


def load_metrics() -> dict[str, Any]:
    """The figures measured when the committed head was trained (for the stand-in label)."""
    try:
        return json.loads(METRICS_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


_detectors: dict[semantic.EncoderConfig, HeadDetector] = {}
_detector_lock = threading.Lock()


def get_head_detector(encoder: semantic.EncoderConfig | None = None) -> HeadDetector:
    """The process's head detector for ``encoder`` (how the sentence encoder runs; its defaults
    when None), loaded once; it shares the semantic check's encoder."""
    config = encoder or semantic.EncoderConfig()
    with _detector_lock:
        detector = _detectors.get(config)
        if detector is None:
            detector = _detectors[config] = HeadDetector(encoder=config)
        return detector
