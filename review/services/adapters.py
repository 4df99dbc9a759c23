"""Check adapters: run one check on a draft's text and shape its result for a CheckResult
(toxicity and ethics here; the lexical and semantic checks in ``source_checks``).

Each ``run_<check>(draft, text, policy)`` returns the stored fields (status, engine and
version, scores, spans, details, timings); the pipeline stores and routes them.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

from django.conf import settings

from generation.models import Draft
from review import holds
from review.checks import ethics, toxicity
from review.checks.toxicity import head as toxicity_head
from review.models import (
    CheckStatus,
    Policy,
)
from review.services.embedding import encoder_config

logger = logging.getLogger(__name__)


def toxicity_config() -> toxicity.ToxicityConfig:
    """Which Detoxify model to load, from settings (the check reads no settings)."""
    return toxicity.ToxicityConfig(
        model_name=settings.TOXICITY_MODEL or None,
        checkpoint=settings.TOXICITY_CHECKPOINT or None,
        config_dir=settings.TOXICITY_CONFIG_DIR or None,
        device=settings.CHECKS_DEVICE,
        languages=settings.TOXICITY_LANGUAGES,
    )


def toxicity_model_info() -> dict[str, Any]:
    """Which toxicity model scores drafts now, without loading it (for the Policy page)."""
    config = toxicity_config()
    if config.model_name or config.checkpoint:
        return {"model": config.model_name or config.checkpoint, "stand_in": None}
    return {
        "model": toxicity_head.ENGINE,
        "stand_in": toxicity_head.load_metrics(),
    }


def span_of(start: int, end: int, kind: str, label: str, score: float | None = None) -> dict:
    return {"start": start, "end": end, "kind": kind, "label": label, "score": score}


def run_toxicity(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    config = toxicity_config()
    if config.model_name or config.checkpoint:
        # Detoxify whenever it is configured; the offline stand-in otherwise.
        result = toxicity.run_toxicity_check(text, config=config)
    else:
        result = toxicity.run_head_check(text, encoder=encoder_config())
    if result["status"] != "ok":
        return {
            "status": CheckStatus.NOT_RUN,
            "reason": result["reason"] or "",
            "details": result,
            "engine": result["engine"],
            "engine_version": result["engine_version"] or "",
        }
    thresholds = rules.toxicity_thresholds or holds.DEFAULT_TOXICITY_THRESHOLDS
    spans = []
    for sentence in result["sentences"]:
        over = [
            (score, category)
            for category, score in sentence["scores"].items()
            # Highlight from 80% of the hold threshold: close calls deserve a look too.
            if score >= 0.8 * thresholds.get(category, 0.5)
        ]
        if over:
            score, category = max(over)
            spans.append(
                span_of(
                    sentence["start"],
                    sentence["end"],
                    "toxicity",
                    f"{category.replace('_', ' ')} {score:.2f}",
                    round(score, 3),
                )
            )
    return {
        "status": CheckStatus.OK,
        "engine": result["engine"],
        "engine_version": result["engine_version"] or "",
        "scores": {k: round(v, 4) for k, v in result["overall"].items()},
        "spans": spans,
        "details": {
            "model": result["model"],
            "stand_in": result["stand_in"],
            "sentences": result["sentences"],
            "whole_text": result["whole_text"],
            "truncated": result["whole_text_truncated"],
        },
        "timings": result["timings"],
    }


def editor_text(draft: Draft, text: str) -> str:
    """What people wrote into this draft: the brief (the template's variables, or the free
    prompt) and the words an editor added to the model's output. Only people edit a draft, so
    every word of ``text`` that is not in ``model_output`` (kept unchanged) is theirs."""
    brief = [str(value) for value in (draft.variables or {}).values()]
    brief.append(draft.job.seed_text or "")
    model_words, words = draft.model_output.split(), text.split()
    matcher = difflib.SequenceMatcher(None, model_words, words, autojunk=False)
    added = [
        " ".join(words[j1:j2])
        for op, _, _, j1, j2 in matcher.get_opcodes()
        if op in ("insert", "replace")
    ]
    return "\n".join(brief + added)


def run_ethics(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    result = ethics.check_ethics(
        text, rules=rules.rules or {}, editor_text=editor_text(draft, text)
    )
    spans = [
        span_of(
            hit["start"],
            hit["end"],
            "ethics",
            f"{hit['rule_kind'].replace('_', ' ')}: {hit['message']}",
        )
        for hit in result["hits"]
        if hit["start"] is not None and hit["end"] is not None
    ]
    return {
        "status": CheckStatus.OK,
        "engine": result["engine"],
        "engine_version": result["engine_version"],
        "scores": dict(result["counts"]),
        "spans": spans,
        "details": {"hits": result["hits"], "truncated": result["truncated"]},
        "timings": result["timings"],
    }
