"""A job's top-up: more candidates when none of its own covers the brief (docs/generation.md,
"Top-up"). Called by the runner in the worker, after the job's candidates are written and
before its drafts are saved; ``recorder`` is the runner's (it streams and saves the text)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from django.utils import timezone

from generation import grounding, quality
from generation.backends.types import CandidateOutput, SamplingSettings
from generation.models import Candidate, CandidateStatus, GenerationJob, JobStatus
from generation.services.quality import candidates_quality, job_variables

logger = logging.getLogger(__name__)


def top_up(
    *,
    job: GenerationJob,
    backend: Any,
    prompt: str,
    system_text: str,
    brief: str,
    background: Mapping[str, Any],
    candidates: list[Candidate],
    outputs: list[CandidateOutput],
    recorder: Any,
    settings: SamplingSettings,
) -> tuple[list[CandidateOutput], str]:
    """When none of the job's candidates covers half of its brief's key terms, draw
    ``job.topup`` more (bounded by ``quality.TOPUP_MAX``), streamed after the others, with the
    seeds that follow theirs, the brief's key terms spelled out at the end of the user
    message (``quality.rebrief``) and the sampler steered towards them
    (``quality.topup_steering``, kept in each extra candidate's settings), and record it on
    the job (the job page says "Drew 2 more: none of the first 4 covered the brief; ...").
    Returns every output and the top-up's prompt ("" when none was drawn); ``candidates``
    grows in place. A failure of the top-up keeps the first candidates and says why."""
    finished = [out for out in outputs if out.finish_reason != "cancelled"]
    if not finished or len(finished) < len(outputs) or recorder.should_stop():
        return outputs, ""
    first = candidates_quality(
        job=job, outputs=outputs, brief=brief, provenance={}, background=background
    )
    if not quality.needs_topup([first[out.index] for out in outputs]):
        return outputs, ""
    terms = quality.brief_terms(brief, job_variables(job) or None)
    topup_prompt = backend.render_prompt(system=system_text, user=quality.rebrief(brief, terms))
    steering = quality.topup_steering(terms)
    settings = dataclasses.replace(
        settings,
        steer_terms=tuple(steering["steer_terms"]),
        steer_bias=float(steering["steer_bias"]),
    )
    count = min(job.topup, quality.TOPUP_MAX)
    start = len(candidates)
    now = timezone.now()
    template = candidates[-1]
    extra = [
        Candidate(
            job=job,
            index=start + i,
            seed=job.base_seed + start + i,
            settings={**template.settings, **steering},
            status=CandidateStatus.STREAMING,
            started_at=now,
            prompt_tokens=template.prompt_tokens,
        )
        for i in range(count)
    ]
    record: dict[str, Any] = {
        "drawn": count,
        "first": start,
        "terms": [t["text"] for t in terms],
        "steer_bias": steering["steer_bias"],
        "note": f"Drawing {count} more: none of the first {start} covered the brief.",
    }
    running = GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING, worker=job.worker)
    try:
        Candidate.objects.bulk_create(extra)
        running.update(topup_record=record)  # the page, reloaded, says it while they stream
        recorder.extend(extra)  # ``candidates`` is the recorder's list: it grows too
        more = backend.generate(
            prompt=topup_prompt,
            n=count,
            seeds=[c.seed for c in extra],
            settings=settings,
            temperatures=[
                float(c.settings.get("temperature", settings.temperature)) for c in extra
            ],
            on_delta=lambda deltas: recorder.on_step([None] * start + list(deltas)),
            should_stop=recorder.should_stop,
            preamble=backend.preamble(system=system_text)
            if grounding.shared_system(background)
            else "",
        )
    except Exception as exc:
        logger.exception("top-up of job %s failed", job.pk)
        Candidate.objects.filter(job=job, index__gte=start).delete()
        recorder.truncate(start)
        record = {"drawn": 0, "first": start, "note": f"Drawing more candidates failed: {exc}"}
        topup_prompt = ""
    else:
        for out in more:
            out.index += start
        outputs = [*outputs, *more]
        after = candidates_quality(
            job=job, outputs=more, brief=brief, provenance={}, background=background
        )
        covered = sum(1 for r in after.values() if r and not r.get("off_brief"))
        record.update(
            covered=covered, note=quality.topup_note(drawn=count, first=start, covered=covered)
        )
    running.update(topup_record=record)
    return outputs, topup_prompt
