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

import contextlib
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
    # The model runs one batch at a time (its lock), and "decode" is held inside it: the jobs
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


def _scaled_env(broker: str) -> dict[str, str]:
    return processes.required_settings(
        {
            **processes.db_env(),
            "REDIS_URL": broker,
            "CONTENTSTUDIO_HEARTBEAT_INTERVAL": "0.3",
            "CONTENTSTUDIO_STALE_AFTER": "2",
            "CONTENTSTUDIO_CHECKS_STALE_AFTER": "2",
            "CONTENTSTUDIO_SWEEP_INTERVAL": "1",
            "CONTENTSTUDIO_WORKER_HEARTBEAT": "0.5",
        }
    )


def test_an_import_killed_mid_run_is_finished_by_a_worker_under_another_name(
    transactional_db: None, cast: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from review import archive, tasks
    from review import services as review_services
    from review.checks.plagiarism import split_passages
    from review.models import ArchiveDocument, ImportRun, ImportStatus, SourcePassage
    from tests.test_import_recovery import ROWS, documents, upload

    broker = processes.side_redis_url()
    processes.purge(broker)
    env, log = _scaled_env(broker), tmp_path / "workers.log"
    monkeypatch.setattr(tasks.archive_import, "delay_on_commit", lambda *a: None)
    rows = documents(ROWS)
    run = review_services.import_run_create(
        project=cast["newsroom"], user=cast["alice"], upload=upload(rows), fmt="jsonl"
    )
    # given a worker importing the upload
    doomed = processes.start_worker(name="doomed@host", env=env, log=log)
    try:
        processes.send("review.tasks.archive_import", [run.pk], queue="review", broker=broker)
        wait_for(
            lambda: (
                ImportRun.objects.get(pk=run.pk).processed >= 2 * archive.CHUNK
                or doomed.poll() is not None
            ),
            timeout=180,
        )
        assert doomed.poll() is None, log.read_text()[-3000:]
        # when it is killed with SIGKILL mid-import
        processes.kill(doomed)
    finally:
        processes.stop(doomed)
    killed = ImportRun.objects.get(pk=run.pk)
    assert killed.status == ImportStatus.RUNNING and killed.processed < ROWS
    assert ArchiveDocument.objects.filter(import_run=run).count() == killed.imported

    # then a worker under another name takes it over (its sweep; the killed worker's message
    # waits out Redis' visibility timeout) and finishes it
    other = processes.start_worker(name="other@host", env=env, log=log)
    try:
        wait_for(
            lambda: (
                ImportRun.objects.get(pk=run.pk).status != ImportStatus.RUNNING
                or other.poll() is not None
            ),
            timeout=240,
            interval=0.3,
        )
        assert other.poll() is None, log.read_text()[-3000:]
    finally:
        processes.stop(other)
    run.refresh_from_db()
    assert run.status == ImportStatus.SUCCEEDED, run.error
    assert (run.processed, run.imported, run.duplicates, run.attempts) == (ROWS, ROWS, 0, 2)
    assert ArchiveDocument.objects.filter(project=cast["newsroom"]).count() == ROWS
    assert SourcePassage.objects.filter(project=cast["newsroom"]).count() == sum(
        len(split_passages(r["text"])) for r in rows
    )
    takeover = run.events.get(from_status="running", to_status="running")
    assert takeover.worker == "other@host"
    assert takeover.reason.startswith("Taken over from doomed@host")
    assert takeover.reason.endswith(f"after row {killed.processed}.")


def _worker_pids() -> dict[str, int]:
    from contentstudio.models import WorkerBeat

    # make worker's processes only (generate@…, review@…, publish@…), whatever else beats
    pids = {
        name.split("@")[0]: pid
        for name, pid in WorkerBeat.objects.filter(stopped_at__isnull=True).values_list(
            "name", "pid"
        )
    }
    return {queue: pid for queue, pid in pids.items() if queue in {"generate", "review", "publish"}}


def test_make_worker_serves_checks_and_deliveries_beside_a_full_generate_queue(
    transactional_db: None,
    cast: dict,
    language_model: Any,
    hold_queue: list,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    tmp_path: Path,
) -> None:
    import signal
    import subprocess
    import sys

    from django.core.cache import cache

    from contentstudio import liveness
    from publishing import services as publishing
    from publishing import tasks as publishing_tasks
    from publishing.models import Delivery, DeliveryStatus
    from review import services as review_services
    from tests.factories import make_draft
    from tests.publishing_helpers import Receiver, approved_draft

    broker = processes.side_redis_url()
    processes.purge(broker)
    # the receiver is local: allowed by name, here and in the worker processes
    env = {**_scaled_env(broker), "CONTENTSTUDIO_DESTINATION_ALLOW_HOSTS": "127.0.0.1"}
    log = tmp_path / "workers.log"
    settings.DESTINATION_ALLOW_HOSTS = ["127.0.0.1"]
    monkeypatch.setattr(publishing_tasks.destination_flush, "delay_on_commit", lambda *a: None)
    monkeypatch.setattr(publishing_tasks.destination_flush, "delay", lambda *a: None)
    receiver = Receiver(lambda handler, body: (200, {"ok": True})).start()
    # given `make worker`'s processes (one per queue, the fault app: "FAULT:load" jobs never end)
    command = [
        sys.executable,
        "-m",
        "contentstudio.workers",
        "--app",
        "tests.fault_worker",
        "--schedule",
        str(tmp_path / "beat"),
        "--loglevel",
        "WARNING",
    ]
    supervisor = subprocess.Popen(
        command,
        env=env,
        cwd=processes.ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pids: dict[str, int] = {}
    try:
        wait_for(lambda: len(_worker_pids()) == 3 or supervisor.poll() is not None, timeout=180)
        assert supervisor.poll() is None, log.read_text()[-3000:]
        pids = _worker_pids()
        # and every generate slot taken by a job that never ends, with more waiting
        jobs = [
            _job(cast, "load", language_model) for _ in range(settings.GENERATION_CONCURRENCY + 2)
        ]
        for job in jobs:
            processes.send("generation.tasks.job_run", [job.pk], queue="generate", broker=broker)
        wait_for(
            lambda: (
                GenerationJob.objects.filter(status=JobStatus.RUNNING).count()
                == settings.GENERATION_CONCURRENCY
            ),
            timeout=120,
        )

        # when a draft is sent to its checks and a publication to a receiver
        def check_and_deliver(title: str) -> tuple[Draft, Delivery]:
            draft = review_services.draft_checks_start(
                draft=make_draft(cast["newsroom"], cast["bob"], f"{title}: the ferry runs late.")
            )
            processes.send(
                "review.tasks.draft_check", [draft.pk, draft.version], queue="review", broker=broker
            )
            publication = publishing.publication_publish(
                draft=approved_draft(cast, title=title), user=cast["bob"]
            )
            delivery = Delivery.objects.get(version__publication=publication)
            processes.send(
                "review.publishing.tasks.destination_flush",
                [delivery.destination_id],
                queue="publish",
                broker=broker,
            )
            return draft, delivery

        def done(draft: Draft, delivery: Delivery) -> bool:
            return (
                Draft.objects.get(pk=draft.pk).status
                in {DraftStatus.AWAITING_REVIEW, DraftStatus.HELD}
                and Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.DELIVERED
            )

        publishing.destination_create(
            project=cast["newsroom"],
            user=cast["alice"],
            name="Site",
            kind="generic",
            url=receiver.url,
        )
        first = check_and_deliver("First")
        # then both are done while no generation job has ended
        wait_for(lambda: done(*first), timeout=180, interval=0.2)
        states = set(
            GenerationJob.objects.filter(pk__in=[j.pk for j in jobs]).values_list(
                "status", flat=True
            )
        )
        assert states == {JobStatus.RUNNING, JobStatus.QUEUED}, states
        # and every queue has a live worker: no banner
        cache.clear()
        assert liveness.alerts() == []

        # when the review process is killed with SIGKILL
        os.killpg(pids["review"], signal.SIGKILL)
        # then the supervisor starts it again, and the next check is done by the new process
        wait_for(lambda: _worker_pids().get("review") not in (None, pids["review"]), timeout=120)
        second = check_and_deliver("Second")
        wait_for(lambda: done(*second), timeout=180, interval=0.2)
        assert supervisor.poll() is None

        # when every worker process dies (the supervisor too)
        pids = _worker_pids()
        processes.kill(supervisor)
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        # then, once their heartbeats are stale, every page says no queue is served
        settings.WORKER_STALE_AFTER = 2.0
        time.sleep(2.5)
        cache.clear()
        assert {alert.queue for alert in liveness.alerts()} == {"generate", "review", "publish"}
    finally:
        processes.stop(supervisor)
        for pid in {*_worker_pids().values(), *pids.values()}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        receiver.stop()
