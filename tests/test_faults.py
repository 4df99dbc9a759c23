"""Fault tests: real worker processes on PostgreSQL + Redis, killed with SIGKILL at each step.

One worker (``tests.fault_worker``) runs four jobs, each held at another step: mid-load,
mid-decode, between the drafts' commit and their checks, and mid-check. It is killed with its
whole process group. Then a worker comes back under another name, and with no page opened, no
request made, within a bounded time: every job reaches a final state with its reason and its
partial text, every draft reaches the queue or *held*, and nothing runs twice.

Times are scaled down by environment (heartbeat 0.3 s, stale after 2 s, sweep every 1 s); the
rules are those of the defaults (5 s, 20 s, 5 s).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from generation import services
from generation.models import Candidate, CandidateStatus, Draft, GenerationJob, JobStatus
from review.lifecycle import DraftStatus
from review.models import CheckResult, CheckRun
from tests import processes
from tests.conftest import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL"),
        reason="fault tests run real worker processes on PostgreSQL + Redis",
    ),
]


def _job(cast: dict, step: str, language_model: Any) -> GenerationJob:
    return services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        model=language_model,
        seed_text=f"FAULT:{step} Write a short report about the harbour.",
        # the decoding job writes on and on (no early end of text) until it is killed
        settings=(
            {"max_new_tokens": 64, "min_new_tokens": 64}
            if step == "decode"
            else {"max_new_tokens": 16, "min_new_tokens": 8}
        ),
        n_candidates=2,
        base_seed=7,
    )


def test_jobs_and_checks_recover_from_a_killed_worker_under_another_name(
    transactional_db: None,
    cast: dict,
    language_model: Any,
    hold_queue: list,
    tmp_path: Path,
) -> None:
    broker = processes.side_redis_url()
    processes.purge(broker)
    env = processes.required_settings(
        {
            **processes.db_env(),
            "REDIS_URL": broker,
            "CONTENTSTUDIO_HEARTBEAT_INTERVAL": "0.3",
            "CONTENTSTUDIO_STALE_AFTER": "2",
            "CONTENTSTUDIO_CHECKS_STALE_AFTER": "2",
            "CONTENTSTUDIO_CHECKS_START_GRACE": "1",
            "CONTENTSTUDIO_SWEEP_INTERVAL": "1",
            "CONTENTSTUDIO_SAVE_INTERVAL": "0.2",
        }
    )
    log = tmp_path / "workers.log"
    # The engine runs one batch at a time (its lock), and "decode" is held inside it: the jobs
    # to be held after generation go first, the other two once those are where they belong.
    # (A worker start sends every queued job again, so the last two do not exist before.)
    jobs = {step: _job(cast, step, language_model) for step in ("commit", "check")}
    for step in ("commit", "check"):
        processes.send("generation.tasks.job_run", [jobs[step].pk], queue="generate", broker=broker)

    # given a worker held at four different steps of four jobs
    started = time.monotonic()
    # (its own sweep must not start the held drafts' checks before the kill)
    doomed_env = {**env, "CONTENTSTUDIO_CHECKS_START_GRACE": "3600"}
    doomed = processes.start_worker(
        name="doomed@host", env=doomed_env, app="tests.fault_worker", log=log
    )
    try:

        def at_every_step() -> bool:
            load = GenerationJob.objects.filter(pk=getattr(jobs.get("load"), "pk", None)).first()
            decoding = Candidate.objects.filter(
                job_id=getattr(jobs.get("decode"), "pk", None), completion_tokens__gt=3
            )
            committed = Draft.objects.filter(job=jobs["commit"], status=DraftStatus.GENERATED)
            checking = CheckResult.objects.filter(draft__job=jobs["check"], kind="toxicity")
            checking_both = checking.count() == 2
            reached = {
                "load": load is not None and load.status == JobStatus.RUNNING,
                "decode": decoding.exists(),
                "commit": committed.count() == 2,
                "check": checking_both,
            }
            progress.update(reached)
            return all(reached.values())

        progress: dict[str, bool] = {}
        try:
            wait_for(
                lambda: (
                    (at_every_step(), progress["commit"] and progress["check"])[1]
                    or doomed.poll() is not None
                ),
                timeout=120,
            )
            for step in ("load", "decode"):
                jobs[step] = _job(cast, step, language_model)
                processes.send(
                    "generation.tasks.job_run", [jobs[step].pk], queue="generate", broker=broker
                )
            wait_for(lambda: at_every_step() or doomed.poll() is not None, timeout=120)
        except AssertionError:
            drafts = list(
                Draft.objects.filter(job__in=list(jobs.values())).values_list(
                    "job__seed_text", "status", "version"
                )
            )
            states = list(GenerationJob.objects.values_list("seed_text", "status", "error"))
            raise AssertionError(
                f"steps reached: {progress}\n{drafts}\n{states}\n{log.read_text()[-3000:]}"
            ) from None
        assert doomed.poll() is None, log.read_text()[-3000:]
        saved = {c.pk: c.text for c in Candidate.objects.filter(job=jobs["decode"])}
        # when it is killed with SIGKILL, beat and all
        print(f"held at every step after {time.monotonic() - started:.1f} s")
        processes.kill(doomed)
    finally:
        processes.stop(doomed)

    # then, with a worker back under another name and nobody looking at any page
    restarted = time.monotonic()
    other = processes.start_worker(name="other@host", env=env, log=log)
    try:

        def recovered() -> bool:
            final = GenerationJob.objects.filter(
                pk__in=[j.pk for j in jobs.values()],
                status__in=[JobStatus.FAILED, JobStatus.SUCCEEDED],
            ).count()
            waiting = Draft.objects.filter(job__in=list(jobs.values())).exclude(
                status__in=[DraftStatus.AWAITING_REVIEW, DraftStatus.HELD]
            )
            return final == len(jobs) and not waiting.exists()

        wait_for(lambda: recovered() or other.poll() is not None, timeout=120, interval=0.3)
        assert other.poll() is None, log.read_text()[-3000:]
    finally:
        processes.stop(other)
    elapsed = time.monotonic() - restarted
    print(f"recovered {elapsed:.1f} s after the restart")
    assert elapsed < 60, elapsed

    for job in jobs.values():
        job.refresh_from_db()
    # killed mid-load and mid-decode: failed, saying why, with the text saved before the kill
    for step in ("load", "decode"):
        job = jobs[step]
        assert job.status == JobStatus.FAILED, (step, job.error)
        assert "doomed@host" in job.error and "stopped responding" in job.error
        assert not job.drafts.exists()
    for candidate in Candidate.objects.filter(job=jobs["decode"]):
        assert candidate.status == CandidateStatus.FAILED
        assert candidate.text.startswith(saved[candidate.pk]) and candidate.text
    # killed after the commit or mid-check: the job stands, its drafts were checked and routed
    for step in ("commit", "check"):
        assert jobs[step].status == JobStatus.SUCCEEDED
        for draft in jobs[step].drafts.all():
            assert draft.status in {DraftStatus.AWAITING_REVIEW, DraftStatus.HELD}
            assert {r.kind for r in CheckResult.objects.filter(draft=draft)} == {
                "toxicity",
                "ethics",
                "lexical",
                "semantic",
            }
    # nothing ran twice: one claim of each job, one check run per draft version; only the
    # checks killed mid-way were taken over, once
    for job in jobs.values():
        assert job.events.filter(to_status=JobStatus.RUNNING).count() == 1
    runs = CheckRun.objects.filter(draft__job__in=list(jobs.values()))
    assert runs.count() == 4
    for run in runs:
        assert run.finished_at is not None
        expected = 2 if run.draft.job_id == jobs["check"].pk else 1
        assert run.attempts == expected, (run.draft.job_id, run.attempts)
