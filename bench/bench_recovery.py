"""Benchmark: how long after a killed worker comes back (under another name) is everything whole?

Run from the repo root: ``.venv/bin/python bench/bench_recovery.py``. Prints one line on stdout:

* ``recovery_after_worker_kill_s``: seconds from the start of a new worker process, under a name
  the killed one never had, until (a) the job the killed worker was decoding is failed with its
  reason and its saved text, and (b) the drafts another job had committed just before the kill
  (their checks never started) are checked and routed to the queue or *held*. Goal <= 30.

Everything runs with the product's default liveness settings (heartbeat every 5 s, stale after
20 s, sweeps every 5 s) and real processes: ``celery worker --beat`` on PostgreSQL + Redis,
killed with SIGKILL with its process group. The killed worker is the studio's app held at two
steps by ``tests.fault_worker`` (one job mid-decode, one right after its drafts' commit); the new
worker is the plain ``contentstudio`` app. The model is a small GPT-2 built on the spot; no
toxicity model is configured, so that check reports "not run" and the drafts go to *held*
(what the product does without one), which costs the same routing path.

Needs PostgreSQL and Redis (``DATABASE_URL`` and ``REDIS_URL``, default the local servers): it
creates a temporary database beside the given one and drops it at the end, and uses Redis
database 12 (flushed). Details on stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    import psycopg

    base = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urlsplit(base)
    name = f"bench_recovery_{uuid.uuid4().hex[:8]}"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis_base = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    os.environ.update(
        {
            "DATABASE_URL": urlunsplit(parts._replace(path=f"/{name}")),
            "REDIS_URL": urlunsplit(redis_base._replace(path="/12")),
            "SECRET_KEY": os.environ.get("SECRET_KEY") or uuid.uuid4().hex * 2,
            "CONTENTSTUDIO_EMBEDDED_WORKER": "0",
            "DJANGO_SETTINGS_MODULE": "contentstudio.settings",
            "TOXICITY_MODEL": "",
            "TOXICITY_CHECKPOINT": "",
            "CONTENTSTUDIO_MODEL_CACHE": tempfile.mkdtemp(prefix="bench-recovery-cache-"),
        }
    )
    try:
        run()
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run() -> None:
    import django

    django.setup()
    import redis
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from contentstudio.services import project_create
    from generation import services
    from generation.models import Candidate, Draft, GenerationJob, JobStatus, LanguageModel
    from generation.tiny import build_tiny_gpt2, corpus_sample
    from review.lifecycle import DraftStatus
    from tests import processes

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    work = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    model_dir = build_tiny_gpt2(work / "tiny", texts=corpus_sample(max_chars=100_000))
    editor = get_user_model().objects.create_user("editor", password="x")
    project = project_create(name="Desk", slug="desk", admin=editor)
    model = LanguageModel.objects.create(
        name="tiny", source_kind="local", source=str(model_dir), is_default=True
    )

    def job(step: str, tokens: int) -> GenerationJob:
        created = services.job_create(
            project=project,
            user=editor,
            model=model,
            seed_text=f"FAULT:{step} Write about the harbour.",
            settings={"max_new_tokens": tokens, "min_new_tokens": tokens},
            n_candidates=4,
            base_seed=3,
        )
        return created

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker_log = work / "workers.log"
    # the drafts of "commit" first: "decode" then holds the engine until the kill
    committed = job("commit", 24)
    doomed = processes.start_worker(
        name="doomed@bench",
        env={**env, "CONTENTSTUDIO_CHECKS_START_GRACE": "3600"},
        app="tests.fault_worker",
        log=worker_log,
    )
    try:
        deadline = time.monotonic() + 180
        while Draft.objects.filter(job=committed, status=DraftStatus.GENERATED).count() < 4:
            if time.monotonic() > deadline or doomed.poll() is not None:
                raise SystemExit(f"the first job never committed\n{worker_log.read_text()[-2000:]}")
            time.sleep(0.2)
        decoding = job("decode", 64)
        while not Candidate.objects.filter(job=decoding, completion_tokens__gt=3).exists():
            if time.monotonic() > deadline or doomed.poll() is not None:
                raise SystemExit(f"the second job never decoded\n{worker_log.read_text()[-2000:]}")
            time.sleep(0.2)
        processes.kill(doomed)
    finally:
        processes.stop(doomed)
    log("killed doomed@bench: one job mid-decode, four drafts committed and not yet checked")

    started = time.monotonic()
    other = processes.start_worker(name="other@bench", env=env, log=worker_log)
    try:
        while True:
            failed = GenerationJob.objects.filter(pk=decoding.pk, status=JobStatus.FAILED).exists()
            routed = Draft.objects.filter(
                job=committed, status__in=[DraftStatus.AWAITING_REVIEW, DraftStatus.HELD]
            ).count()
            if failed and routed == 4:
                break
            if time.monotonic() - started > 300 or other.poll() is not None:
                raise SystemExit(f"no recovery\n{worker_log.read_text()[-2000:]}")
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    finally:
        processes.stop(other)
    decoding.refresh_from_db()
    log(f"decoding job: {decoding.status}: {decoding.error[:120]}")
    log(f"committed drafts routed: {routed}/4")
    print(f"recovery_after_worker_kill_s: {elapsed:.1f}")


if __name__ == "__main__":
    main()
