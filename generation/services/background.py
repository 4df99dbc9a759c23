"""The archive background of a job: retrieved for its brief and fitted into its prompt (the
worker's side; ``generation.grounding`` holds the layouts and the fitting, review registers the
search)."""

from __future__ import annotations

import logging
from typing import Any

from generation import grounding
from generation.backends.types import SamplingSettings
from generation.models import GenerationJob

logger = logging.getLogger(__name__)


def job_background(
    job: GenerationJob, backend: Any, *, system_text: str, user_text: str
) -> tuple[str, str, dict[str, Any]]:
    """The system text and user message with the archive background the job asked for (in the
    grounding's default layout), and its record.

    A retrieval that fails does not fail the job: the drafts are written without background
    and their record says why (the draft page shows it)."""
    query = grounding.brief_of(variables=job.variables, seed_text=job.seed_text)
    try:
        sources, retrieval = grounding.retrieve(
            project_id=job.project_id, query=query, k=job.background
        )
    except Exception as exc:
        logger.exception("retrieving background for job %s", job.pk)
        sources, retrieval = [], {"error": f"{type(exc).__name__}: {exc}"}
    system, user, record = grounding.fit_for_backend(
        backend,
        sources=sources,
        user_text=user_text,
        system_text=system_text,
        brief=query,
        max_new_tokens=SamplingSettings.from_dict(job.settings).max_new_tokens,
    )
    record.update(requested=job.background, query=query, retrieval=retrieval)
    if not sources:
        why = retrieval.get("error") or retrieval.get("not_run") or "no passage matched the brief"
        record["note"] = f"No archive background was given: {why}."
    return system, user, dict(record)
