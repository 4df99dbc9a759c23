"""The worker's side of a job: claim it, keep it alive, load its backend, stream, save drafts.

Runs in a Celery worker (queue ``generate``); slow work (loading a model, generating) never
inside a transaction. Every final write is conditional on the job still being ``running`` under
this run's claim: a job the sweep failed meanwhile is never "finished" behind its back."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from contentstudio import realtime
from contentstudio.heartbeat import Heartbeat
from contentstudio.html import text_to_html
from generation import grounding, signals, stream
from generation.backends import get_backend
from generation.backends.reservations import Reservation, reserve
from generation.backends.types import (
    BackendError,
    CandidateOutput,
    ModelLoadError,
    PromptTooLong,
    SamplingSettings,
)
from generation.model_runtime import backend_config
from generation.models import (
    DRAFT_INITIAL_STATUS,
    Candidate,
    CandidateStatus,
    Draft,
    GenerationJob,
    JobStatus,
)
from generation.selectors import candidate_states
from generation.services import job_fail, job_transition, system_render, template_render
from generation.services.background import job_background
from generation.services.quality import add_house_fluency, candidates_quality
from generation.topup import top_up

logger = logging.getLogger(__name__)


class _Recorder:
    """Lives for one job run in the worker: streams steps, saves partial text, polls cancel."""

    def __init__(
        self,
        *,
        job: GenerationJob,
        candidates: list[Candidate],
        js: stream.JobStream,
        heartbeat: Heartbeat | None = None,
    ):
        self.job = job
        self.heartbeat = heartbeat
        self.candidates = candidates
        self.js = js
        self.save_interval = django_settings.GENERATION_SAVE_INTERVAL
        self.cancel_poll = django_settings.GENERATION_CANCEL_POLL
        self._last_save = self._last_poll = time.monotonic()
        self._cancelled = False
        self._first_token_at: list[Any] = [None] * len(candidates)

    def extend(self, extra: list[Candidate]) -> None:
        """Candidates added to the running job (a top-up): streamed and saved after the others."""
        self.candidates += extra
        self.js.add_candidates(len(extra))
        self._first_token_at += [None] * len(extra)

    def truncate(self, count: int) -> None:
        """Back to the first ``count`` candidates (a top-up that failed)."""
        del self.candidates[count:]
        self.js.drop_candidates(count)
        del self._first_token_at[count:]

    def on_step(self, deltas: list[str | None]) -> None:
        now = timezone.now()
        for index, delta in enumerate(deltas):
            if delta is not None and self._first_token_at[index] is None:
                self._first_token_at[index] = now
        self.js.step(deltas)
        if time.monotonic() - self._last_save >= self.save_interval:
            self.save()

    def should_stop(self) -> bool:
        if self._cancelled:
            return True
        if self.heartbeat is not None and self.heartbeat.lost:
            # The job was taken from this run (failed by the sweep): stop spending the cores.
            self._cancelled = True
            return True
        if time.monotonic() - self._last_poll < self.cancel_poll:
            return False
        self._last_poll = time.monotonic()
        self._cancelled = GenerationJob.objects.filter(
            pk=self.job.pk, cancel_requested_at__isnull=False
        ).exists()
        return self._cancelled

    def save(self) -> None:
        """Persist the text so far: a crash after this loses only what comes later."""
        self._last_save = time.monotonic()
        for candidate, text, tokens, first in zip(
            self.candidates, self.js.texts, self.js.tokens, self._first_token_at, strict=True
        ):
            candidate.text = text
            candidate.completion_tokens = tokens
            candidate.first_token_at = first
        with transaction.atomic():
            # Only while this run still holds the job: a job failed meanwhile keeps the text
            # it had when it was failed.
            if not GenerationJob.objects.select_for_update().filter(
                pk=self.job.pk, status=JobStatus.RUNNING, worker=self.job.worker
            ):
                return
            Candidate.objects.bulk_update(
                self.candidates, ["text", "completion_tokens", "first_token_at"]
            )


def _draft_title(job: GenerationJob, text: str) -> str:
    for key in ("headline", "title", "product", "topic", "subject"):
        value = str(job.variables.get(key) or "").strip()
        if value:
            return value[:300]
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first_line[:117] + "...") if len(first_line) > 120 else first_line


def job_claim_and_generate(*, job_id: int, worker_name: str) -> None:
    """Claim a queued job for this worker, keep it alive while it generates, and fail it with
    the reason if anything breaks (the generating itself is ``_claimed_job_generate``).

    Idempotent: a job that is not queued any more (another worker has it, or it ended) is left
    alone; a dead worker's job is the periodic sweep's business, never a page view's.
    """
    now = timezone.now()
    if not job_transition(
        job_id=job_id,
        to=JobStatus.RUNNING,
        expected=JobStatus.QUEUED,
        fields={"started_at": now, "heartbeat_at": now, "worker": worker_name},
        reason="claimed",
    ):
        return

    def beat() -> bool:
        return bool(
            GenerationJob.objects.filter(
                pk=job_id, status=JobStatus.RUNNING, worker=worker_name
            ).update(heartbeat_at=timezone.now())
        )

    # From the claim on, a timer thread proves the job alive (also while a slow model loads,
    # when nothing else would be written), and the job holds a reservation of this process's
    # cores (``reserve``) until its generation ends.
    with (
        Heartbeat(
            beat,
            interval=django_settings.GENERATION_HEARTBEAT_INTERVAL,
            name=f"job-{job_id}",
            beat_now=False,  # the claim wrote heartbeat_at
        ) as heartbeat,
        reserve() as cores,
    ):
        try:
            _claimed_job_generate(job_id, heartbeat, cores)
        except Exception as exc:
            # Whatever broke, the job must not stay "running" until it looks stale.
            logger.exception("job %s failed", job_id)
            job_fail(
                job_id=job_id,
                worker=worker_name,
                error=f"Internal error while running the job: {exc!r}",
            )


def _claimed_job_generate(
    job_id: int, heartbeat: Heartbeat | None = None, cores: Reservation | None = None
) -> None:
    """Load the job's backend, render its prompt, generate its candidates while streaming and
    saving them, then turn them into drafts (``_job_finish``) or fail the job with the reason."""
    job = GenerationJob.objects.select_related("model", "template_version", "project").get(
        pk=job_id
    )
    candidates = list(job.candidates.order_by("index"))
    js = stream.JobStream(
        job_id=job.pk,
        n_candidates=len(candidates),
        tokens_per_frame=django_settings.STREAM_TOKENS_PER_FRAME,
        min_interval=django_settings.STREAM_MIN_FRAME_INTERVAL,
        max_delay=django_settings.STREAM_MAX_FRAME_DELAY,
    )
    js.status(JobStatus.RUNNING, candidates=candidate_states(job_id=job.pk))
    realtime.publish_project_event(
        job.project_id, {"kind": "job", "id": job.pk, "status": "running"}
    )

    try:
        # The configured backend, loaded once per worker process and shared by concurrent jobs.
        backend = get_backend(backend_config(job.model), cache_root=django_settings.MODEL_CACHE_DIR)
    except (ModelLoadError, BackendError) as exc:
        job_fail(
            job_id=job.pk,
            worker=job.worker,
            error=f"Model {job.model.name} failed to load: {exc.args[0]}",
        )
        return
    except Exception as exc:  # anything else while loading is still the model's fault
        logger.exception("loading model %s", job.model.name)
        job_fail(
            job_id=job.pk,
            worker=job.worker,
            error=f"Model {job.model.name} failed to load: {exc!r}",
        )
        return

    if cores is not None and backend.name == "openai":
        cores.release()  # the server computes: this worker's cores stay free for other jobs
    if job.template_version is not None:
        user_text = template_render(version=job.template_version, values=job.variables)
        system_text = system_render(version=job.template_version, values=job.variables)
    else:
        user_text, system_text = job.seed_text, ""
    background: dict[str, Any] = {}
    if job.background:
        system_text, user_text, background = job_background(
            job, backend, system_text=system_text, user_text=user_text
        )
    prompt = backend.render_prompt(system=system_text, user=user_text)
    # None for a remote server: it reports the count with the result.
    prompt_tokens = backend.count_tokens(prompt) or 0
    started = timezone.now()
    with transaction.atomic():  # one commit before the first token, not two
        GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING, worker=job.worker).update(
            prompt=prompt, load_seconds=backend.load_seconds
        )
        Candidate.objects.filter(job=job).update(
            status=CandidateStatus.STREAMING, started_at=started, prompt_tokens=prompt_tokens
        )
    for c in candidates:
        c.started_at = started
        c.prompt_tokens = prompt_tokens

    recorder = _Recorder(job=job, candidates=candidates, js=js, heartbeat=heartbeat)
    settings = SamplingSettings.from_dict(job.settings)
    temperatures = [float(c.settings.get("temperature", settings.temperature)) for c in candidates]
    error = ""
    outputs: list[CandidateOutput] = []
    topup_prompt = ""
    try:
        outputs = backend.generate(
            prompt=prompt,
            n=len(candidates),
            seeds=[c.seed for c in candidates],
            settings=settings,
            temperatures=temperatures,
            on_delta=recorder.on_step,
            should_stop=recorder.should_stop,
            # A system turn carrying this job's background is no shared preamble: not cached.
            preamble=backend.preamble(system=system_text)
            if grounding.shared_system(background)
            else "",
        )
        if job.topup:
            outputs, topup_prompt = top_up(
                job=job,
                backend=backend,
                prompt=prompt,
                system_text=system_text,
                brief=user_text,
                background=background,
                candidates=candidates,
                outputs=outputs,
                recorder=recorder,
                settings=settings,
            )
    except PromptTooLong as exc:
        error = str(exc)
    except BackendError as exc:
        # The server's (or runtime's) own words: the job page shows them.
        error = f"Generation failed ({backend.name} backend): {exc}"
    except Exception as exc:
        logger.exception("generation failed for job %s", job.pk)
        error = f"Generation failed: {type(exc).__name__}: {exc}"
    finally:
        if cores is not None:
            cores.release()  # the cores are free for the next job before the drafts are saved
    if error:
        recorder.save()
        js.flush()
        job_fail(job_id=job.pk, worker=job.worker, error=error)
        return
    _job_finish(
        job=job,
        candidates=candidates,
        outputs=outputs,
        js=js,
        started=started,
        prompt=prompt,
        load_seconds=backend.load_seconds,
        first_token_at=recorder._first_token_at,
        provenance=_job_provenance(backend.provenance(), outputs),
        background=background,
        brief=user_text,
        system_text=system_text,
        topup_prompt=topup_prompt,
    )


def _job_provenance(
    provenance: Mapping[str, Any], outputs: list[CandidateOutput]
) -> dict[str, Any]:
    """The backend's provenance with what this job ran on: a backend that picks a session per
    job (ONNX Runtime GenAI's wide one for a job alone) says which threads it got."""
    result = dict(provenance)
    threads = {out.threads for out in outputs if out.threads}
    if len(threads) == 1:
        result["threads"] = threads.pop()
    return result


def _job_finish(
    *,
    job: GenerationJob,
    candidates: list[Candidate],
    outputs: list[CandidateOutput],
    js: stream.JobStream,
    started: Any,
    prompt: str,
    load_seconds: float,
    first_token_at: list[Any],
    provenance: dict[str, Any] | None = None,
    background: dict[str, Any] | None = None,
    brief: str = "",
    system_text: str = "",
    topup_prompt: str = "",
) -> None:
    """Save final texts and turn every finished candidate into a draft, in one transaction.

    Each draft gets its quality signals (``generation.quality``), computed here for all the
    candidates together (they are compared with one another) and before the transaction."""
    end_mono = time.monotonic()
    end = timezone.now()
    created: list[Draft] = []
    for out in outputs:
        js.replace(out.index, out.text)
    js.flush()
    quality_by_index = candidates_quality(
        job=job, outputs=outputs, brief=brief, provenance=provenance, background=background
    )
    add_house_fluency(
        job=job,
        outputs=outputs,
        quality_by_index=quality_by_index,
        system_text=system_text,
        user_text=brief,
    )
    cancelled = any(out.finish_reason == "cancelled" for out in outputs)
    final = JobStatus.CANCELLED if cancelled else JobStatus.SUCCEEDED
    with transaction.atomic():
        # The move comes first and is conditional on this run still holding the job: a job
        # the sweep failed meanwhile gets no drafts behind its back (it says it failed).
        if not job_transition(
            job_id=job.pk,
            to=final,
            expected=JobStatus.RUNNING,
            worker=job.worker,
            fields={"finished_at": end, "heartbeat_at": end},
            reason="finished",
        ):
            logger.warning("job %s was no longer running here; its output is dropped", job.pk)
            return
        for candidate, out in zip(candidates, outputs, strict=True):
            finished_at = end - timezone.timedelta(
                seconds=max(0.0, end_mono - (out.finished_at or end_mono))
            )
            candidate.text = out.text
            candidate.completion_tokens = out.completion_tokens or len(out.token_ids)
            if out.prompt_tokens is not None:
                candidate.prompt_tokens = out.prompt_tokens
            candidate.finish_reason = out.finish_reason
            candidate.first_token_at = first_token_at[candidate.index]
            candidate.finished_at = finished_at
            if out.finish_reason == "cancelled":
                candidate.status = CandidateStatus.CANCELLED
            else:
                candidate.status = CandidateStatus.FINISHED
        Candidate.objects.bulk_update(
            candidates,
            [
                "text",
                "completion_tokens",
                "finish_reason",
                "first_token_at",
                "finished_at",
                "status",
                "prompt_tokens",
            ],
        )
        for candidate in candidates:
            if candidate.status != CandidateStatus.FINISHED:
                continue
            ttft = (
                (candidate.first_token_at - started).total_seconds()
                if candidate.first_token_at
                else None
            )
            created.append(
                Draft.objects.create(
                    project=job.project,
                    job=job,
                    candidate=candidate,
                    title=_draft_title(job, candidate.text),
                    model_output=candidate.text,
                    body=text_to_html(candidate.text),
                    status=DRAFT_INITIAL_STATUS,
                    model=job.model,
                    model_name=job.model.name,
                    model_source=job.model.source,
                    model_revision=job.model.revision,
                    template_version=job.template_version,
                    variables=job.variables,
                    # A top-up candidate was written from the brief with its key terms.
                    prompt=(
                        topup_prompt
                        if topup_prompt and candidate.index >= job.n_candidates
                        else prompt
                    ),
                    settings=candidate.settings,
                    seed=candidate.seed,
                    prompt_tokens=candidate.prompt_tokens or 0,
                    completion_tokens=candidate.completion_tokens,
                    finish_reason=candidate.finish_reason,
                    engine=provenance or {},  # the provenance (stored under this name)
                    background=background or {},
                    quality=quality_by_index[candidate.index],
                    timings={
                        "queue_seconds": round((started - job.created_at).total_seconds(), 3),
                        "load_seconds": round(load_seconds, 3),
                        "ttft_seconds": round(ttft, 3) if ttft is not None else None,
                        "generation_seconds": round(
                            (candidate.finished_at - started).total_seconds(), 3
                        ),
                        "tokens_per_second": (
                            round(candidate.tokens_per_second, 2)
                            if candidate.tokens_per_second
                            else None
                        ),
                    },
                )
            )
    job.refresh_from_db()
    js.status(
        job.status,
        error=job.error,
        candidates=[{**s, "text": ""} for s in candidate_states(job_id=job.pk)],
    )
    for draft in created:
        js.draft(
            index=draft.candidate.index,
            draft_id=draft.pk,
            url=reverse("draft_detail", args=[job.project.slug, draft.pk]),
        )
    realtime.publish_project_event(
        job.project_id,
        {"kind": "job", "id": job.pk, "status": job.status, "drafts": [d.pk for d in created]},
    )
    # The drafts, committed in state "generated", are the durable order to check them: the
    # signal is the fast path (after the frames above: starting the checks took 4 ms a draft,
    # which the watchers' final frame no longer waits for), the review sweep the guarantee if
    # this process dies first. Inside a caller's transaction it waits for that commit.
    for draft in created:
        transaction.on_commit(lambda d=draft: signals.draft_created.send(sender=Draft, draft=d))


# Deprecated alias for callers not yet renamed (fine-tuning's tests, moved beside this change).
job_execute = job_claim_and_generate
