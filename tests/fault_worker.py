"""The studio's Celery app, held still at chosen steps, so a fault test can kill it there.

Used as ``celery -A tests.fault_worker worker ...`` by tests/test_faults.py. A job whose free
prompt starts with ``FAULT:<step>`` stops (sleeps) at that step; everything else runs the real
code. The steps:

- ``load``: before the model is loaded;
- ``decode``: after a few tokens of every candidate, saved as the periodic save does;
- ``commit``: after the job committed its drafts, before their checks start (the on-commit
  start of the checks never returns);
- ``check``: inside the semantic check, after the other checks stored their results.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")
django.setup()

from contentstudio.celery import app  # noqa: E402
from generation import runner  # noqa: E402
from generation.models import Draft, GenerationJob  # noqa: E402
from review.services import pipeline  # noqa: E402

FOREVER = 3600.0
_current = threading.local()


def _step(job_id: int | None) -> str:
    if job_id is None:
        return ""
    prompt = GenerationJob.objects.filter(pk=job_id).values_list("seed_text", flat=True).first()
    if prompt and prompt.startswith("FAULT:"):
        return prompt.split()[0].removeprefix("FAULT:")
    return ""


_job_claim_and_generate = runner.job_claim_and_generate


def job_claim_and_generate(*, job_id: int, worker_name: str) -> None:
    _current.job_id = job_id
    _job_claim_and_generate(job_id=job_id, worker_name=worker_name)


_get_backend = runner.get_backend


def get_backend(*args: Any, **kwargs: Any) -> Any:
    if _step(getattr(_current, "job_id", None)) == "load":
        time.sleep(FOREVER)
    return _get_backend(*args, **kwargs)


_on_step = runner._Recorder.on_step


def on_step(self: Any, deltas: list[str | None]) -> None:
    _on_step(self, deltas)
    if _step(self.job.pk) == "decode" and min(self.js.tokens) >= 6:
        self.save()  # what the periodic save would have written by now
        time.sleep(FOREVER)


_checks_start = pipeline.draft_checks_start


def draft_checks_start(*, draft: Draft, user: Any = None) -> Draft:
    if _step(draft.job_id) == "commit":
        time.sleep(FOREVER)
    return _checks_start(draft=draft, user=user)


def _held_semantic(original: Any) -> Any:
    def run(draft: Draft, text: str, rules: Any) -> Any:
        if _step(draft.job_id) == "check":
            time.sleep(FOREVER)
        return original(draft, text, rules)

    return run


runner.job_claim_and_generate = job_claim_and_generate
runner.get_backend = get_backend
runner._Recorder.on_step = on_step
# Only the on-commit start (the receiver calls the package's name) is held; the sweep's own
# start is the recovery under test (the test gives this worker a long start grace).
import review.services  # noqa: E402

review.services.draft_checks_start = draft_checks_start
pipeline.CHECKS = [
    (kind, _held_semantic(run) if kind == "semantic" else run) for kind, run in pipeline.CHECKS
]

__all__ = ["app"]
