"""The quality signals of a job's candidates, computed once when they become drafts.

The pure signals are ``generation.quality``; this module gathers what they read off the job
(its brief: the template's values or the free seed text; its content type; the sources the
model was given, where the provenance lists them) and off each candidate (its finish reason and
the mean log-probability the sampler recorded). Relevance needs the sentence model, which the
review checks load: they add it (``quality_with_relevance``) and the score follows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from generation import quality
from generation.backends.types import CandidateOutput
from generation.models import GenerationJob, LanguageModel

logger = logging.getLogger(__name__)

RELEVANCE_PENDING = "measured when the draft is checked (the sentence model is loaded there)"


def job_brief(job: GenerationJob) -> str:
    """The brief as the editor gave it: the template's values, or the free seed text."""
    if job.variables:
        values = [str(v) for v in job_variables(job).values()]
        return "\n".join(v for v in values if v.strip())
    return job.seed_text


def job_variables(job: GenerationJob) -> dict[str, Any]:
    """The job's template values in the template's field order (PostgreSQL's jsonb keeps no
    key order, and the first spelling of a term is the one the signals keep)."""
    variables = dict(job.variables or {})
    version = job.template_version
    order = [n for n in (version.variable_names if version is not None else []) if n in variables]
    return {n: variables[n] for n in [*order, *(n for n in variables if n not in order)]}


def job_content_type(job: GenerationJob) -> str:
    version = job.template_version
    if version is not None:
        return version.template.content_type
    # A free prompt says what it asks for, or it is read as an article (no register rules).
    return "news_report" if "news" in (job.seed_text or "").lower() else "article"


def source_texts(provenance: Mapping[str, Any] | None) -> list[str]:
    """The passages given to the model, as the provenance records them (``sources``: texts or
    objects with a ``text``)."""
    found = []
    for item in (provenance or {}).get("sources") or []:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("text"), str):
            found.append(item["text"])
    return found


def job_quality(
    *,
    job: GenerationJob,
    texts: Sequence[str],
    finish_reasons: Sequence[str],
    mean_logprobs: Sequence[float | None],
    tokens: Sequence[int],
    prompt_brief: str = "",
    provenance: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The signals of every candidate of ``job`` (one dict per text, in order). Pure reads."""
    common = {
        "brief": prompt_brief or job_brief(job),
        "variables": job_variables(job) or None,
        "sources": source_texts(provenance),
        "content_type": job_content_type(job),
        "max_new_tokens": int((job.settings or {}).get("max_new_tokens") or 0) or None,
    }
    extras = [
        {"finish_reason": f, "mean_logprob": m, "tokens": n}
        for f, m, n in zip(finish_reasons, mean_logprobs, tokens, strict=True)
    ]
    results = quality.job_signals(texts=texts, common=common, per_candidate=extras)
    for r in results:
        r["relevance"] = {"available": False, "reason": RELEVANCE_PENDING}
        quality.signals.finish(r)
    return results


def quality_with_relevance(
    signals: Mapping[str, Any],
    *,
    text: str,
    brief: str,
    embed: Callable[[Sequence[str]], np.ndarray] | None,
    reason: str = "",
) -> dict[str, Any]:
    """``signals`` with relevance measured by ``embed`` (or the reason it was not) and the
    score and reasons recomputed. Pure."""
    updated = dict(signals)
    if embed is None:
        updated["relevance"] = {"available": False, "reason": reason or "no sentence model"}
    else:
        updated["relevance"] = quality.signals.relevance(text, brief, embed)
    return quality.signals.finish(updated)


def candidates_quality(
    *,
    job: GenerationJob,
    outputs: Sequence[CandidateOutput],
    brief: str,
    provenance: Mapping[str, Any] | None,
    background: Mapping[str, Any] | None = None,
) -> dict[int, dict[str, Any]]:
    """Each candidate's signals by index; a failure here costs the signals, never the drafts.

    Specifics are judged against the brief and every source the model was given: the
    provenance's and the archive background's (``background["sources"]``, same shape)."""
    sources = [
        *((provenance or {}).get("sources") or []),
        *((background or {}).get("sources") or []),
    ]
    try:
        results = job_quality(
            job=job,
            texts=[out.text for out in outputs],
            finish_reasons=[out.finish_reason for out in outputs],
            mean_logprobs=[out.mean_logprob for out in outputs],
            tokens=[out.completion_tokens or len(out.token_ids) for out in outputs],
            prompt_brief=brief,
            provenance={**(provenance or {}), "sources": sources},
        )
    except Exception:
        logger.exception("quality signals failed for job %s", job.pk)
        return {out.index: {} for out in outputs}
    return {out.index: r for out, r in zip(outputs, results, strict=True)}


def house_model(project_id: int) -> LanguageModel | None:
    """The project's own fine-tuned model: the newest enabled model a fine-tune run of this
    project produced (None: the project has none)."""
    return (
        LanguageModel.objects.filter(
            project_id=project_id, finetune_origin__isnull=False, enabled=True
        )
        .order_by("-pk")
        .first()
    )


def add_house_fluency(
    *,
    job: GenerationJob,
    outputs: Sequence[CandidateOutput],
    quality_by_index: dict[int, dict[str, Any]],
    system_text: str,
    user_text: str,
) -> None:
    """When the job's project has a house model: each candidate's mean log-probability under
    it, teacher-forced after the job's own system and user text in the house model's chat
    template (``Backend.score_text``), stored as ``house_fluency`` on its signals with the
    reasons redone (the score does not use it). A job written by the house model itself reuses
    the sampler's values (the same raw log-probabilities). Once per draft, on the generation
    worker where the models are loaded; a failure costs this signal only, and says why."""
    house = house_model(job.project_id)
    if house is None:
        return
    scored: dict[int, dict[str, Any]] = {}
    try:
        backend = None
        if house.pk != job.model_id:
            from django.conf import settings as django_settings

            from generation.backends import get_backend
            from generation.model_runtime import backend_config

            backend = get_backend(backend_config(house), cache_root=django_settings.MODEL_CACHE_DIR)
            prompt = backend.render_prompt(system=system_text, user=user_text)
        for out in outputs:
            if not quality_by_index.get(out.index) or not out.text.strip():
                continue
            if backend is None:
                tokens = out.completion_tokens or len(out.token_ids)
                mean = out.mean_logprob
            else:
                score = backend.score_text(prompt=prompt, text=out.text)
                tokens, mean = score.tokens, score.mean_logprob
            scored[out.index] = quality.signals.house_fluency(mean, tokens, house.name)
    except Exception as exc:  # not loadable, or no log-probabilities (a remote server)
        logger.exception("house-model fluency failed for job %s", job.pk)
        reason = f"{type(exc).__name__}: {exc}"[:200]
        scored = {
            out.index: {"available": False, "model": house.name, "reason": reason}
            for out in outputs
            if quality_by_index.get(out.index) and out.index not in scored
        } | scored
    for index, signal in scored.items():
        quality_by_index[index]["house_fluency"] = signal
        quality.signals.finish(quality_by_index[index])
