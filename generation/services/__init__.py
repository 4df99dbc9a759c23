"""Writes of the generation app, one module each; callers may import the functions from here.

- :mod:`.templates`: prompt templates and their versions, and rendering them;
- :mod:`.jobs`: creating, moving, cancelling and failing generation jobs;
- :mod:`.sweep`: the periodic sweep of jobs, and a worker's start.

The worker's side of a job (claim, generate, drafts) is ``generation.runner``; a model's backend
config, conversion and check are ``generation.model_runtime``. Slow work (loading a model,
generating) never runs inside a transaction.
"""

from __future__ import annotations

from generation.services.jobs import (
    default_model,
    job_cancel,
    job_create,
    job_fail,
    job_transition,
)
from generation.services.sweep import jobs_fail_orphaned, jobs_requeue, jobs_sweep
from generation.services.templates import (
    system_render,
    template_create,
    template_render,
    template_update,
)

__all__ = [
    "default_model",
    "job_cancel",
    "job_create",
    "job_fail",
    "job_transition",
    "jobs_fail_orphaned",
    "jobs_requeue",
    "jobs_sweep",
    "system_render",
    "template_create",
    "template_render",
    "template_update",
]
