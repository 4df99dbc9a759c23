"""Toxicity: per-category scores for a draft and each of its sentences.

A configured Detoxify model (a name, or a local checkpoint) scores when there is one
(:mod:`.detoxify_model`); otherwise the committed offline stand-in does (:mod:`.head`). Either
way :mod:`.check` shapes the result, and a model that cannot load gives ``not_run`` with the
reason, never a silent pass. The configuration is passed in (``ToxicityConfig``,
``EncoderConfig``); nothing here reads settings. Tools that train or measure the models are in
``review.tools``.
"""

from __future__ import annotations

from review.checks.toxicity.check import (
    SentenceScores,
    ToxicityResult,
    ToxicityTimings,
    check_toxicity,
    not_run_result,
    run_head_check,
    run_toxicity_check,
)
from review.checks.toxicity.detoxify_model import (
    ENGINE,
    Detector,
    ToxicityConfig,
    ToxicityModelUnavailable,
    clear_detector_cache,
    get_detector,
    load_detector,
)

__all__ = [
    "ENGINE",
    "Detector",
    "SentenceScores",
    "ToxicityConfig",
    "ToxicityModelUnavailable",
    "ToxicityResult",
    "ToxicityTimings",
    "check_toxicity",
    "clear_detector_cache",
    "get_detector",
    "load_detector",
    "not_run_result",
    "run_head_check",
    "run_toxicity_check",
]
