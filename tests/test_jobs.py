"""Generation jobs end to end: create, run in a real worker, drafts, cancel, crash, failure."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from contentstudio.errors import InvalidTransition, PermissionDenied
from contentstudio.html import html_to_text
from generation import runner, services
from generation.models import (
    Candidate,
    CandidateStatus,
    Draft,
    GenerationJob,
    JobStatus,
    LanguageModel,
)
from review.lifecycle import DraftStatus
from tests import processes
from tests.conftest import wait_for

VARS = {"headline": "Storm hits the coast", "lede": "A storm hit the coast on Monday."}


def create(cast: dict, template: Any, **kwargs: Any) -> GenerationJob:
    args: dict[str, Any] = {
        "project": cast["newsroom"],
        "user": cast["bob"],
        "template_version": template,
        "variables": VARS,
        "n_candidates": 2,
        "base_seed": 1234,
    }
    args.update(kwargs)
    return services.job_create(**args)


def test_job_run_in_the_worker_saves_each_candidate_as_a_draft_with_provenance(
    worker: None, cast: dict, language_model: LanguageModel, news_template: Any
) -> None:
    # given a request for two candidates
    job = create(cast, news_template, settings={"max_new_tokens": 12})
    assert job.status == JobStatus.QUEUED
    # when the worker thread runs it
    wait_for(lambda: GenerationJob.objects.get(pk=job.pk).is_final)
    job.refresh_from_db()
    # then both candidates are drafts that record where they came from
    assert job.status == JobStatus.SUCCEEDED, job.error
    drafts = list(Draft.objects.filter(job=job).order_by("candidate__index"))
    assert len(drafts) == 2
    first, second = drafts
    assert first.seed == 1234 and second.seed == 1235
    assert first.model_output and html_to_text(first.body) == first.model_output.strip()
    assert first.model_output != second.model_output
    assert first.title == VARS["headline"]
    assert first.model_name == "tiny-gpt2" and first.model_source == language_model.source
    assert first.template_version == news_template
    assert first.variables == VARS
    assert first.settings["max_new_tokens"] == 12
    assert "Headline: Storm hits the coast" in first.prompt
    assert first.completion_tokens == 12 and first.prompt_tokens > 5
    assert first.timings["tokens_per_second"] > 0
    assert first.status == DraftStatus.GENERATED or first.status != ""
    assert job.prompt == first.prompt


def test_job_claim_and_generate_is_idempotent(
    transactional_db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    job = create(cast, news_template, settings={"max_new_tokens": 6}, n_candidates=1)
    runner.job_claim_and_generate(job_id=job.pk, worker_name="w1")
    runner.job_claim_and_generate(job_id=job.pk, worker_name="w2")  # a redelivered message
    assert Draft.objects.filter(job=job).count() == 1
    assert GenerationJob.objects.get(pk=job.pk).worker == "w1"


def test_same_seed_gives_the_same_drafts(
    transactional_db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    a = create(cast, news_template, settings={"max_new_tokens": 8})
    b = create(cast, news_template, settings={"max_new_tokens": 8})
    runner.job_claim_and_generate(job_id=a.pk, worker_name="w")
    runner.job_claim_and_generate(job_id=b.pk, worker_name="w")
    texts = lambda job: list(  # noqa: E731
        Draft.objects.filter(job=job)
        .order_by("candidate__index")
        .values_list("model_output", flat=True)
    )
    assert texts(a) == texts(b)


def test_temperature_spread_gives_each_candidate_its_own_recorded_temperature(
    db: None, cast: dict, language_model: LanguageModel, news_template: Any
) -> None:
    job = create(
        cast,
        news_template,
        n_candidates=3,
        settings={"temperature": 0.8, "temperature_spread": 0.2},
    )
    temps = [c.settings["temperature"] for c in job.candidates.order_by("index")]
    assert temps == [0.6, 0.8, 1.0]


def test_cancel_stops_a_running_job_within_a_second_and_keeps_the_text(
    worker: None, cast: dict, language_model: LanguageModel, news_template: Any, slow_steps: Any
) -> None:
    import time

    slow_steps(0.05)
    job = create(cast, news_template, settings={"max_new_tokens": 200})
    wait_for(
        lambda: (
            Candidate.objects.filter(job=job, completion_tokens__gt=0).exists()
            or GenerationJob.objects.get(pk=job.pk).status == JobStatus.RUNNING
        )
    )
    time.sleep(0.3)
    asked = time.monotonic()
    services.job_cancel(job=job, user=cast["bob"])
    wait_for(lambda: GenerationJob.objects.get(pk=job.pk).is_final, timeout=5)
    stopped_after = time.monotonic() - asked
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert stopped_after < 1.5  # "within a second", with slack for a loaded CI machine
    candidates = list(job.candidates.all())
    assert all(c.status == CandidateStatus.CANCELLED for c in candidates)
    assert all(0 < c.completion_tokens < 200 and c.text for c in candidates)
    assert not Draft.objects.filter(job=job).exists()


def test_cancelling_a_queued_job_cancels_it_at_once(
    db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    job = create(cast, news_template)
    services.job_cancel(job=job, user=cast["bob"])
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    runner.job_claim_and_generate(job_id=job.pk, worker_name="w")  # the message arrives later
    assert GenerationJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_cancelling_a_finished_job_is_refused(
    transactional_db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    job = create(cast, news_template, settings={"max_new_tokens": 4}, n_candidates=1)
    runner.job_claim_and_generate(job_id=job.pk, worker_name="w")
    with pytest.raises(InvalidTransition, match="succeeded"):
        services.job_cancel(job=job, user=cast["bob"])
    assert Draft.objects.filter(job=job).count() == 1


def test_finished_candidates_stay_drafts_when_others_are_cancelled(
    transactional_db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    from generation import stream
    from generation.backends.types import CandidateOutput

    job = create(cast, news_template)
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    candidates = list(job.candidates.order_by("index"))
    outputs = [
        CandidateOutput(
            index=0,
            seed=1,
            token_ids=[1, 2],
            text="Done.",
            finished=True,
            finish_reason="eos",
            finished_at=0.0,
        ),
        CandidateOutput(
            index=1,
            seed=2,
            token_ids=[1],
            text="Half",
            finished=True,
            finish_reason="cancelled",
            finished_at=0.0,
        ),
    ]
    js = stream.JobStream(
        job_id=job.pk,
        n_candidates=2,
        tokens_per_frame=8,
        min_interval=0,
        max_delay=0,
        send=lambda *a: None,
    )
    from django.utils import timezone

    runner._job_finish(
        job=job,
        candidates=candidates,
        outputs=outputs,
        js=js,
        started=timezone.now(),
        prompt="p",
        load_seconds=0.1,
        first_token_at=[timezone.now(), timezone.now()],
    )
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert [d.model_output for d in Draft.objects.filter(job=job)] == ["Done."]
    assert Candidate.objects.get(job=job, index=1).text == "Half"


def test_a_model_that_fails_to_load_fails_the_job_with_the_exact_reason(
    worker: None, cast: dict, news_template: Any, tmp_path: Path
) -> None:
    broken = LanguageModel.objects.create(
        name="broken", source_kind="local", source=str(tmp_path / "missing-model"), is_default=True
    )
    job = create(cast, news_template, model=broken)
    wait_for(lambda: GenerationJob.objects.get(pk=job.pk).is_final)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "Model broken failed to load" in job.error
    assert str(tmp_path / "missing-model") in job.error and "does not exist" in job.error


def test_a_prompt_too_long_for_the_model_fails_the_job_saying_why(
    transactional_db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    job = create(
        cast,
        news_template,
        variables={**VARS, "lede": "word " * 600},
        settings={"max_new_tokens": 200},
    )
    runner.job_claim_and_generate(job_id=job.pk, worker_name="w")
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "context" in job.error


CRASH_SCRIPT = """
import os, sys, time
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "contentstudio.settings"
django.setup()
from generation import runner, services
# Slow each step down so the test can kill the process mid-job (the model still runs).
original = runner._Recorder.on_step
runner._Recorder.on_step = lambda self, deltas: (time.sleep(0.02), original(self, deltas))
runner.job_claim_and_generate(job_id=int(sys.argv[1]), worker_name="crashy@test")
"""


def _db_env() -> dict[str, str]:
    env = processes.db_env()
    env["CONTENTSTUDIO_SAVE_INTERVAL"] = "0.2"
    return env


def test_a_worker_crash_keeps_the_saved_text_and_the_job_fails_saying_why(
    transactional_db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    # given a long job running in a separate worker process
    job = create(cast, news_template, settings={"max_new_tokens": 250}, n_candidates=8)
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(job.pk)],
        env=_db_env(),
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        # when it is killed after it has saved some text
        wait_for(
            lambda: (
                Candidate.objects.filter(job=job, completion_tokens__gt=0).exists()
                or proc.poll() is not None
            ),
            timeout=120,
        )
        assert proc.poll() is None, "the worker finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING  # nobody has noticed yet
    saved = {c.index: c.text for c in job.candidates.all()}
    assert any(saved.values())
    # then the worker's next start fails the job with the reason, keeping the saved text
    assert services.jobs_fail_orphaned(worker_name="crashy@test") == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "crashed or was killed" in job.error
    for c in job.candidates.all():
        assert c.status == CandidateStatus.FAILED
        assert c.text == saved[c.index]


def test_a_silent_job_is_failed_by_the_sweep_never_by_a_page_view(
    db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
    client: Any,
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    job = create(cast, news_template)
    GenerationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING,
        worker="gone@host",
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )
    # a page view and an API read only read
    client.force_login(cast["bob"])
    assert client.get(f"/p/newsroom/jobs/{job.pk}/").status_code == 200
    assert client.get(f"/api/v1/jobs/{job.pk}/").json()["status"] == "running"
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    # the periodic sweep fails it, whatever the worker's name, and says why
    assert services.jobs_sweep()["failed"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "stopped responding" in job.error
    assert list(job.events.values_list("from_status", "to_status")) == [
        ("", "queued"),
        ("running", "failed"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"settings": {"temperature": -0.1}}, "settings.temperature"),
        ({"settings": {"max_new_tokens": 257}}, "settings.max_new_tokens"),
        ({"settings": {"max_new_tokens": 0}}, "settings.max_new_tokens"),
        ({"settings": {"top_p": 0}}, "settings.top_p"),
        ({"settings": {"min_new_tokens": 30, "max_new_tokens": 20}}, "settings.min_new_tokens"),
        ({"settings": {"top_k": 1.5}}, "settings.top_k"),
        ({"settings": {"temperature": "hot"}}, "settings.temperature"),
        ({"settings": {"beams": 4}}, "settings.beams"),
        ({"variables": {**VARS, "byline": "x"}}, "variables.byline"),
        ({"variables": {"headline": "only"}}, "variables.lede"),
        ({"n_candidates": 9}, "n_candidates"),
        ({"n_candidates": 0}, "n_candidates"),
        ({"base_seed": -1}, "seed"),
        ({"template_version": None, "variables": {}, "seed_text": "   "}, "seed_text"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    kwargs: dict,
    field: str,
) -> None:
    with pytest.raises(ValidationError) as info:
        create(cast, news_template, **kwargs)
    assert field in info.value.message_dict
    assert not GenerationJob.objects.exists()


def test_a_disabled_model_is_refused(
    db: None, cast: dict, language_model: LanguageModel, news_template: Any
) -> None:
    LanguageModel.objects.filter(pk=language_model.pk).update(enabled=False)
    language_model.refresh_from_db()
    with pytest.raises(ValidationError) as info:
        create(cast, news_template, model=language_model)
    assert "model" in info.value.message_dict


@pytest.mark.parametrize("who", ["charlie", "dave"])
def test_reviewers_and_viewers_cannot_start_jobs(
    db: None, cast: dict, language_model: LanguageModel, news_template: Any, who: str
) -> None:
    with pytest.raises(PermissionDenied):
        create(cast, news_template, user=cast[who])


def test_a_template_of_another_project_is_refused(
    db: None, cast: dict, language_model: LanguageModel, news_template: Any
) -> None:
    with pytest.raises(ValidationError) as info:
        services.job_create(
            project=cast["other"], user=cast["eve"], template_version=news_template, variables=VARS
        )
    assert "template" in info.value.message_dict
