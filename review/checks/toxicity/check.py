"""The toxicity check: per-category scores for a whole draft and for each of its sentences.

``overall[category]`` is the maximum of the whole-text score and every sentence's score: the
whole text alone is not enough (a model truncates at its maximum length, and one abusive
sentence in a long benign draft is diluted), and sentences alone miss abuse that only shows
across sentences. A model that cannot load gives a ``not_run`` result with the reason: the
check never passes silently, and the caller holds the draft for a person.
"""

from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

from review.checks.semantic import EncoderConfig
from review.checks.text import sentences as split_sentences
from review.checks.toxicity import head
from review.checks.toxicity.detoxify_model import (
    DEFAULT_BATCH_SIZE,
    ENGINE,
    Detector,
    ToxicityConfig,
    ToxicityModelUnavailable,
    detoxify_version,
    get_detector,
)


class SentenceScores(TypedDict):
    start: int
    end: int
    scores: dict[str, float]


class ToxicityTimings(TypedDict, total=False):
    segment_ms: float
    score_ms: float
    total_ms: float


class ToxicityResult(TypedDict):
    status: Literal["ok", "not_run"]
    reason: str | None  # why it did not run; None when it ran
    engine: str
    engine_version: str | None
    model: str | None  # which model: a Detoxify name or the checkpoint file, with its checksum
    # Set when the scores come from a stand-in (the offline head), with its measured figures.
    stand_in: dict[str, Any] | None
    categories: list[str]
    # max(whole_text, every sentence) per category; see the module docstring
    overall: dict[str, float]
    whole_text: dict[str, float]
    whole_text_truncated: bool  # the whole text reached the model's maximum length
    sentences: list[SentenceScores]
    timings: ToxicityTimings


def check_toxicity(
    text: str, detector: Detector | Any, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> ToxicityResult:
    """Score ``text`` as a whole and sentence by sentence (spans from ``review.checks.text``).

    Empty or blank text has no sentences and scores 0 in every category without calling the
    model. Side effects: none beyond running the model.
    """
    started = time.perf_counter()
    parts = split_sentences(text)
    segmented = time.perf_counter()
    categories = list(detector.categories)
    whole: dict[str, float]
    sentence_scores: list[dict[str, float]]
    truncated = False
    if not parts:
        whole = dict.fromkeys(categories, 0.0)
        sentence_scores = []
    elif len(parts) == 1:
        # One sentence is the whole text (less surrounding blanks): score it once.
        sentence_scores = detector.score_texts([parts[0].text], batch_size=batch_size)
        whole = dict(sentence_scores[0])
        truncated = detector.token_lengths([parts[0].text])[0] >= detector.max_length
    else:
        scored = detector.score_texts([p.text for p in parts] + [text], batch_size=batch_size)
        sentence_scores, whole = scored[:-1], scored[-1]
        truncated = detector.token_lengths([text])[0] >= detector.max_length
    overall = {c: max([whole[c], *(s[c] for s in sentence_scores)]) for c in categories}
    finished = time.perf_counter()
    return ToxicityResult(
        status="ok",
        reason=None,
        engine=getattr(detector, "engine", ENGINE),
        engine_version=getattr(detector, "version", None) or detoxify_version(),
        model=detector.description,
        stand_in=detector.metrics if getattr(detector, "stand_in", False) else None,
        categories=categories,
        overall=overall,
        whole_text=whole,
        whole_text_truncated=truncated,
        sentences=[
            SentenceScores(start=p.start, end=p.end, scores=s)
            for p, s in zip(parts, sentence_scores, strict=True)
        ],
        timings=ToxicityTimings(
            segment_ms=(segmented - started) * 1000,
            score_ms=(finished - segmented) * 1000,
            total_ms=(finished - started) * 1000,
        ),
    )


def not_run_result(reason: str) -> ToxicityResult:
    """The result stored when no model could be loaded: status ``not_run`` with the reason."""
    return ToxicityResult(
        status="not_run",
        reason=reason,
        engine=ENGINE,
        engine_version=detoxify_version(),
        model=None,
        stand_in=None,
        categories=[],
        overall={},
        whole_text={},
        whole_text_truncated=False,
        sentences=[],
        timings={},
    )


def run_toxicity_check(text: str, *, config: ToxicityConfig) -> ToxicityResult:
    """Load (once per process) the configured model and check ``text``; never raises for a
    missing model: returns ``not_run_result`` with the reason instead.
    """
    try:
        detector = get_detector(config)
    except ToxicityModelUnavailable as exc:
        return not_run_result(exc.reason)
    return check_toxicity(text, detector)


def run_head_check(text: str, *, encoder: EncoderConfig | None = None) -> ToxicityResult:
    """Check ``text`` with the offline stand-in (:mod:`.head`), used when no Detoxify model or
    checkpoint is configured; ``not_run`` with the reason when it cannot load. ``encoder``: how
    the stand-in's sentence encoder runs (its defaults when None)."""
    try:
        detector = head.get_head_detector(encoder)
    except head.HeadUnavailable as exc:
        return not_run_result(exc.reason)
    return check_toxicity(text, detector)
