"""A fine-tuning run moves only along its table (RUN_LIFECYCLE): an impossible move is refused
and writes nothing; every move writes its audit row with from/to; the tasks keep their names."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from contentstudio.errors import InvalidTransition
from finetune import runner, services
from finetune.models import RUN_LIFECYCLE, FineTuneEvent, FineTuneRun, RunStatus


@pytest.fixture
def make_run(cast: dict, language_model: Any) -> Any:
    def make(status: str = RunStatus.QUEUED, **fields: Any) -> FineTuneRun:
        return FineTuneRun.objects.create(
            project=cast["newsroom"], base_model=language_model, status=status, **fields
        )

    return make


def test_the_table_lets_runs_end_once() -> None:
    assert RUN_LIFECYCLE.allows(RunStatus.QUEUED, RunStatus.RUNNING)
    assert RUN_LIFECYCLE.allows(RunStatus.RUNNING, RunStatus.SUCCEEDED)
    assert not RUN_LIFECYCLE.allows(RunStatus.QUEUED, RunStatus.SUCCEEDED)
    assert not RUN_LIFECYCLE.allows(RunStatus.RUNNING, RunStatus.QUEUED)
    assert RUN_LIFECYCLE.final == {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}


@pytest.mark.parametrize(
    ("status", "to"),
    [
        (RunStatus.SUCCEEDED, RunStatus.RUNNING),
        (RunStatus.FAILED, RunStatus.CANCELLED),
        (RunStatus.QUEUED, RunStatus.SUCCEEDED),
        (RunStatus.RUNNING, RunStatus.QUEUED),
    ],
)
def test_an_impossible_move_is_refused_and_writes_nothing(
    make_run: Any, status: str, to: str
) -> None:
    run = make_run(status)

    with pytest.raises(InvalidTransition):
        RUN_LIFECYCLE.move(run.pk, to=to, expected=status, event={"action": "test"})

    run.refresh_from_db()
    assert run.status == status
    assert not FineTuneEvent.objects.exists()


def test_an_ended_run_is_not_failed_claimed_or_cancelled_again(cast: dict, make_run: Any) -> None:
    done = make_run(RunStatus.SUCCEEDED, finished_at=timezone.now())

    # the worker's failure path, a redelivered message and a person all find it over
    assert runner.run_fail(run_id=done.pk, error="late") is False
    assert runner.run_execute(run_id=done.pk, worker_name="late-worker") == done
    with pytest.raises(InvalidTransition):
        services.run_cancel(run=done, user=cast["alice"])

    done.refresh_from_db()
    assert (done.status, done.error, done.worker) == (RunStatus.SUCCEEDED, "", "")
    assert not FineTuneEvent.objects.exists()


def test_a_move_writes_its_audit_row_with_from_and_to(cast: dict, make_run: Any) -> None:
    queued = make_run()

    cancelled = services.run_cancel(run=queued, user=cast["alice"])

    assert (
        cancelled.status == RunStatus.CANCELLED and cancelled.cancel_requested_by == cast["alice"]
    )
    [event] = FineTuneEvent.objects.filter(run=queued)
    assert (event.action, event.from_status, event.to_status) == ("cancel", "queued", "cancelled")
    assert event.actor == cast["alice"]


def test_the_sweep_fails_a_silent_run_only_if_it_has_not_beaten_since(make_run: Any) -> None:
    long_ago = timezone.now() - timezone.timedelta(hours=1)
    run = make_run(RunStatus.RUNNING, worker="first@host", heartbeat_at=long_ago)
    seen = FineTuneRun.objects.get(pk=run.pk)

    # the worker beats after the sweep read the row: the stale view fails nothing
    FineTuneRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
    assert runner.run_fail_if_stale(run=seen) is False
    assert not FineTuneEvent.objects.exists()

    # silent again, and seen so: failed
    FineTuneRun.objects.filter(pk=run.pk).update(heartbeat_at=long_ago)
    run.refresh_from_db()
    assert runner.run_fail_if_stale(run=run) is True
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "first@host" in run.error
    [event] = FineTuneEvent.objects.filter(run=run)
    assert (event.from_status, event.to_status) == ("running", "failed")


def test_the_tasks_keep_the_names_they_had_under_generation() -> None:
    from django.conf import settings

    from contentstudio.celery import app
    from finetune import tasks

    assert tasks.finetune_run.name == "generation.finetune.tasks.finetune_run"
    assert tasks.runs_sweep.name == "generation.finetune.tasks.runs_sweep"
    scheduled = settings.CELERY_BEAT_SCHEDULE["finetune-sweep"]["task"]
    assert scheduled == tasks.runs_sweep.name and scheduled in app.tasks
