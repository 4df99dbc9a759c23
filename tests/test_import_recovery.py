"""An archive import killed mid-run finishes, every row exactly once (issue 22, item 7).

An import used to be claimed only while *queued*, with no heartbeat and no sweep: a worker
killed at row 400 of 6,000 left it *running, 6%* for good. Now it is claimed, beats, is taken
over by another worker once its heartbeat stops (the sweep sends its task again), and resumes
after the last row stored (each batch commits with the run's row offset, only while its worker
holds the claim).

Here with the embedded studio, a real process killed with SIGKILL and another started after it
on the same database; the same with Celery worker processes on PostgreSQL + Redis is in
tests/test_faults.py. Times are scaled down (heartbeat 0.3 s, stale after 2 s, sweep every
1 s); the rules are those of the defaults.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from review import archive, services, tasks
from review.checks.plagiarism import split_passages
from review.models import (
    ArchiveDocument,
    ImportRun,
    ImportStatus,
    SourceKind,
    SourcePassage,
)
from tests import processes
from tests.conftest import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get("REDIS_URL")), reason="the embedded studio runs without services"
    ),
]

ROWS = 3000
# The vocabulary of the stories (a list literal would take a line per word).
VOCABULARY = (
    "harbour council ferry timetable school budget river bridge museum library station "
    "market festival election hospital weather storm repair tram cycle lane park garden "
    "theatre orchestra match league club mayor minister report survey price rent housing"
)
WORDS = VOCABULARY.split()


def documents(count: int, *, seed: int = 22) -> list[dict[str, str]]:
    """Distinct two-paragraph stories (the same text twice would be stored once)."""
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "."

    return [
        {
            "title": f"Story {n}",
            "text": f"Story {n}. {' '.join(sentence() for _ in range(3))}\n\n"
            + " ".join(sentence() for _ in range(3)),
        }
        for n in range(count)
    ]


def upload(rows: list[dict[str, str]]) -> SimpleUploadedFile:
    body = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    return SimpleUploadedFile("archive.jsonl", body, content_type="application/jsonl")


def scaled_env() -> dict[str, str]:
    return processes.required_settings(
        {
            **processes.db_env(),
            "CONTENTSTUDIO_HEARTBEAT_INTERVAL": "0.3",
            "CONTENTSTUDIO_STALE_AFTER": "2",
            "CONTENTSTUDIO_CHECKS_STALE_AFTER": "2",
            "CONTENTSTUDIO_SWEEP_INTERVAL": "1",
            "CONTENTSTUDIO_EMBED_THREADS": "1",
            "LOG_LEVEL": "WARNING",
        }
    )


def test_an_import_killed_mid_run_resumes_in_the_next_studio_and_stores_every_row_once(
    transactional_db: None, cast: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given an upload of 3,000 stories, waiting for a worker (the studio is down)
    queued: list[Any] = []
    monkeypatch.setattr(tasks.archive_import, "delay_on_commit", queued.append)
    rows = documents(ROWS)
    run = services.import_run_create(
        project=cast["newsroom"], user=cast["alice"], upload=upload(rows), fmt="jsonl"
    )
    env, log = scaled_env(), tmp_path / "studio.log"

    # when the studio starts, imports some of it and is killed with SIGKILL
    first, _ = processes.start_studio(env=env, log=log)
    try:
        wait_for(
            lambda: (
                ImportRun.objects.get(pk=run.pk).processed >= 2 * archive.CHUNK
                or first.poll() is not None
            ),
            timeout=240,
        )
        assert first.poll() is None, log.read_text()[-3000:]
        processes.kill(first)
    finally:
        processes.stop(first)
    killed = ImportRun.objects.get(pk=run.pk)
    assert killed.status == ImportStatus.RUNNING and killed.processed < ROWS, killed.processed
    assert killed.worker.startswith("embedded-review@")
    # (what was stored is exactly what the offset says)
    assert ArchiveDocument.objects.filter(import_run=run).count() == killed.imported
    assert killed.imported == killed.processed

    # and another studio starts on the same database
    second, _ = processes.start_studio(env=env, log=log)
    try:
        wait_for(
            lambda: (
                ImportRun.objects.get(pk=run.pk).status != ImportStatus.RUNNING
                or second.poll() is not None
            ),
            timeout=300,
            interval=0.3,
        )
        assert second.poll() is None, log.read_text()[-3000:]
    finally:
        processes.kill(second)

    # then the import finished, every row stored exactly once
    run.refresh_from_db()
    assert run.status == ImportStatus.SUCCEEDED, (run.error, log.read_text()[-3000:])
    assert (run.total, run.processed, run.imported, run.duplicates) == (ROWS, ROWS, ROWS, 0)
    assert run.errors == [] and run.attempts == 2 and not run.upload
    stored = ArchiveDocument.objects.filter(project=cast["newsroom"])
    assert stored.count() == ROWS
    assert sorted(stored.values_list("title", flat=True)) == sorted(r["title"] for r in rows)
    assert SourcePassage.objects.filter(
        project=cast["newsroom"], kind=SourceKind.ARCHIVE
    ).count() == sum(len(split_passages(r["text"])) for r in rows)
    # and its moves tell the story: queued, claimed, taken over after the last stored row, done
    moves = list(run.events.values_list("from_status", "to_status", "reason"))
    assert [(f, t) for f, t, _ in moves] == [
        ("", "queued"),
        ("queued", "running"),
        ("running", "running"),
        ("running", "succeeded"),
    ]
    takeover = moves[2][2]
    assert takeover.startswith(f"Taken over from {killed.worker}")
    assert takeover.endswith(f"after row {killed.processed}.")


def _running_run(cast: dict, *, worker: str, silent_for: float, processed: int) -> ImportRun:
    from django.utils import timezone

    run = services.import_run_create(
        project=cast["newsroom"], user=cast["alice"], upload=upload(documents(600)), fmt="jsonl"
    )
    from review.import_lifecycle import IMPORT_LIFECYCLE

    IMPORT_LIFECYCLE.move(
        run.pk,
        to=ImportStatus.RUNNING,
        expected=ImportStatus.QUEUED,
        fields={
            "worker": worker,
            "heartbeat_at": timezone.now() - timezone.timedelta(seconds=silent_for),
            "processed": processed,
            "total": 600,
            "attempts": 1,
        },
    )
    return ImportRun.objects.get(pk=run.pk)


def test_a_silent_import_is_taken_over_once_and_its_old_worker_stores_nothing_more(
    transactional_db: None, cast: dict, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setattr(tasks.archive_import, "delay_on_commit", lambda *a: None)
    settings.GENERATION_STALE_AFTER = 20.0
    # given a run whose worker has been silent longer than the stale threshold
    run = _running_run(cast, worker="old@host", silent_for=60, processed=0)
    # when two workers try to take it over, then a third once the first holds it
    taken = services.import_run_claim(run_id=run.pk, worker="new@host")
    again = services.import_run_claim(run_id=run.pk, worker="other@host")
    # then one has it, conditional on the heartbeat seen
    assert taken is not None and taken.worker == "new@host" and taken.attempts == 2
    assert again is None
    # and the old worker, should it wake up, can no longer store a single row
    with pytest.raises(archive.ClaimLost):
        archive.import_rows(
            run=run,
            rows=[archive.RawRow("line 1", d) for d in documents(3)],
            claim={"status": ImportStatus.RUNNING, "worker": "old@host"},
        )
    assert not ArchiveDocument.objects.exists()
    assert ImportRun.objects.get(pk=run.pk).processed == 0


def test_a_live_import_is_not_taken_over_and_the_sweep_resends_only_silent_ones(
    transactional_db: None, cast: dict, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(tasks.archive_import, "delay_on_commit", lambda *a: None)
    monkeypatch.setattr(tasks.archive_import, "delay", sent.append)
    settings.GENERATION_STALE_AFTER = 20.0
    live = _running_run(cast, worker="busy@host", silent_for=1, processed=200)
    silent = _running_run(cast, worker="dead@host", silent_for=60, processed=200)
    # a live worker keeps its run
    assert services.import_run_claim(run_id=live.pk, worker="new@host") is None
    # the sweep sends the silent one's task again, once per stale period
    assert services.imports_sweep() == {"resent": 1}
    assert services.imports_sweep() == {"resent": 0}
    assert sent == [silent.pk]
