"""Which passages are embedded, and who embeds them, lives in the database (issue 8, items 4-5).

A worker start sends one embedding message per project (not one per passage); one run per project
holds a lease in the database; a run killed with its worker (SIGKILL, no clean-up) is taken over
when its lease expires, from the last committed batch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from review import services, tasks
from review.checks import semantic
from review.models import IndexState, PassageSentence, SourcePassage
from review.services import embedding
from tests.conftest import wait_for
from tests.factories import make_archive

ROOT = Path(__file__).resolve().parent.parent


def test_a_worker_start_sends_one_embedding_message_per_project_not_per_passage(
    cast: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: two projects whose archives are not embedded yet (several passages each)
    make_archive(cast["newsroom"], embed=False)
    make_archive(cast["other"], embed=False)
    assert SourcePassage.objects.filter(embedded_at__isnull=True).count() >= 10
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.passages_embed, "delay", lambda *a: sent.append(a))
    monkeypatch.setattr(tasks.draft_check, "delay", lambda *a: None)
    # when: a worker starts
    services.resume_pending()
    # then: one message per project
    assert sorted(sent) == sorted([(cast["newsroom"].pk,), (cast["other"].pk,)])


def test_a_held_lease_keeps_one_waiting_message_and_drops_duplicates(
    cast: dict, hold_queue: list
) -> None:
    # given: a live run holds the project's chain
    project = cast["newsroom"]
    make_archive(project, embed=False)
    assert embedding.embed_lease_take(project_id=project.pk, owner="live", lease_s=60)
    # when: two more messages arrive meanwhile
    first = embedding.embed_chain_step(project_id=project.pk)
    second = embedding.embed_chain_step(project_id=project.pk)
    # then: the first waits for the lease to end, the second is dropped, nothing ran twice
    assert first.retry_in_s is not None and 55 < first.retry_in_s <= 61
    assert second.retry_in_s is None and not second.again
    assert not PassageSentence.objects.exists()
    # and the holder gives it back; the next step embeds
    embedding.embed_lease_release(project_id=project.pk, owner="live")
    step = embedding.embed_chain_step(project_id=project.pk)
    assert PassageSentence.objects.exists()
    assert step.again == (step.left > 0)


def test_a_killed_runs_expired_lease_is_taken_over_where_it_stopped(
    cast: dict, hold_queue: list, settings: Any
) -> None:
    # given: one batch committed, then its run "killed" holding the lease, which has expired
    settings.EMBED_BATCH = 2
    project = cast["newsroom"]
    make_archive(project, embed=False)
    total = SourcePassage.objects.filter(project=project).count()
    services.passages_embed(project_id=project.pk)
    done_before = set(
        SourcePassage.objects.filter(embedded_at__isnull=False).values_list("pk", "embedded_at")
    )
    assert len(done_before) == 2
    IndexState.objects.filter(project=project).update(
        embed_owner="killed", embed_lease_until=timezone.now() - timedelta(seconds=1)
    )
    # when: the chain runs again
    steps = 0
    while embedding.embed_chain_step(project_id=project.pk).again:
        steps += 1
    # then: every passage is embedded once; the first batch was not redone
    assert not SourcePassage.objects.filter(embedded_at__isnull=True).exists()
    assert done_before <= set(SourcePassage.objects.values_list("pk", "embedded_at"))
    assert steps == (total - 2 + 1) // 2 - 1
    expected = sum(len(semantic.index_passages(p.text)) for p in SourcePassage.objects.all())
    assert PassageSentence.objects.count() == expected
    assert IndexState.objects.get(project=project).embed_owner == ""


# --- A real worker process killed mid-embedding (PostgreSQL + Redis) ----------------------------


def _worker(name: str, prefix: str) -> subprocess.Popen[bytes]:
    db = connection.settings_dict
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{host}/{db['NAME']}",
        # Its own queues in the shared Redis: the test process's worker never takes them.
        CONTENTSTUDIO_BROKER_PREFIX=prefix,
        CONTENTSTUDIO_EMBEDDED_WORKER="0",
        CONTENTSTUDIO_EMBED_BATCH="8",
        CONTENTSTUDIO_EMBED_LEASE_S="3",
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "contentstudio",
            "worker",
            "-Q",
            "review",
            "-n",
            name,
            "--pool",
            "solo",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.skipif(
    not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL"),
    reason="needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL)",
)
def test_embedding_killed_with_its_worker_resumes_under_another_worker_name(
    transactional_db: None, cast: dict
) -> None:
    from review.setup import sotu_rows

    # given: an archive of 120 real paragraphs, not embedded
    project = cast["newsroom"]
    rows = sotu_rows()[:120]
    services.import_rows_direct(project=project, rows=rows, source_name="sotu slice")
    total = SourcePassage.objects.filter(project=project).count()
    prefix = f"i7-embed-{uuid.uuid4().hex[:8]}:"
    first = _worker("embed-a@test", prefix)
    second = None
    try:
        # when: the worker (which resumes the chain at start) is killed mid-embedding
        wait_for(
            lambda: (
                SourcePassage.objects.filter(project=project, embedded_at__isnull=False).count()
                >= 16
                or first.poll() is not None
            ),
            timeout=180,
        )
        assert first.poll() is None, "the first worker exited before it could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        done = SourcePassage.objects.filter(project=project, embedded_at__isnull=False).count()
        assert 0 < done < total, "killed mid-embedding"
        # and a worker comes back under another name
        second = _worker("embed-b@elsewhere", prefix)
        # then: the chain resumes and finishes, within a bounded time, with no page opened
        assert wait_for(
            lambda: (
                not SourcePassage.objects.filter(project=project, embedded_at__isnull=True).exists()
            ),
            timeout=240,
            interval=0.5,
        )
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
    # nothing embedded twice (one row per sentence) and no lease left behind
    expected = sum(
        len(semantic.index_passages(p.text)) for p in SourcePassage.objects.filter(project=project)
    )
    assert PassageSentence.objects.filter(passage__project=project).count() == expected
    assert IndexState.objects.get(project=project).embed_owner == ""
