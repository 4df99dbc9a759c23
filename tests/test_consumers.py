"""The job websocket: membership checks, the text so far on connect, the live tail, late join."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from contentstudio.routing import websocket_urlpatterns
from generation import runner, services
from generation.models import GenerationJob, LanguageModel
from tests.factories import refusal_code

VARS = {"headline": "Storm hits the coast", "lede": "A storm hit the coast on Monday."}

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hold_queue")]


def communicator(job_id: int, user: Any) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns()), f"/ws/jobs/{job_id}/")
    comm.scope["user"] = user
    return comm


def _create_job(cast: dict, template: Any, **settings: Any) -> GenerationJob:
    # The tests drive the worker's part themselves (run_job), hence the hold_queue fixture.
    return services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        template_version=template,
        variables=VARS,
        n_candidates=2,
        base_seed=7,
        settings=settings,
    )


async def receive_until_final(comm: WebsocketCommunicator, timeout: float = 60) -> list[dict]:
    """Frames up to the final status and the draft events that follow it."""
    frames: list[dict] = []
    expected_drafts = None
    while expected_drafts is None or expected_drafts > 0:
        msg = await comm.receive_json_from(timeout=timeout)
        frames.append(msg)
        if msg["type"] == "job.status" and msg["status"] in {"succeeded", "failed", "cancelled"}:
            expected_drafts = sum(c["status"] == "finished" for c in msg["candidates"])
        elif msg["type"] == "job.draft" and expected_drafts is not None:
            expected_drafts -= 1
    return frames


def run_job(job_id: int) -> None:
    """The worker's part, in a thread of its own that leaves no connection behind."""
    from django.db import connections

    try:
        runner.job_claim_and_generate(job_id=job_id, worker_name="t")
    finally:
        connections.close_all()


def apply(texts: dict[int, str], frames: list[dict], after_seq: int) -> dict[int, str]:
    for frame in frames:
        if frame["type"] != "job.tokens" or frame["seq"] <= after_seq:
            continue
        for d in frame["deltas"]:
            current = texts.get(d["i"], "")
            assert d["o"] <= len(current), "no gap in the stream"
            texts[d["i"]] = current[: d["o"]] + d["t"]
    return texts


async def test_anonymous_and_non_members_are_refused(
    cast: dict, language_model: LanguageModel, news_template: Any
) -> None:
    from django.contrib.auth.models import AnonymousUser

    job = await database_sync_to_async(_create_job)(cast, news_template)
    for user, code in [(AnonymousUser(), 4401), (cast["eve"], 4404)]:
        assert await refusal_code(communicator(job.pk, user)) == code
    assert await refusal_code(communicator(999_999, cast["bob"])) == 4404


async def test_a_viewer_watches_tokens_stream_and_the_frames_rebuild_the_drafts(
    cast: dict, language_model: LanguageModel, news_template: Any
) -> None:
    job = await database_sync_to_async(_create_job)(cast, news_template, max_new_tokens=40)
    comm = communicator(job.pk, cast["dave"])
    connected, _ = await comm.connect()
    assert connected
    snapshot = await comm.receive_json_from()
    assert snapshot["type"] == "job.snapshot" and snapshot["status"] == "queued"
    run = asyncio.create_task(asyncio.to_thread(run_job, job.pk))
    frames = await receive_until_final(comm)
    await run
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "numbered, in order"
    texts = apply({}, frames, after_seq=snapshot["seq"])
    drafts = await database_sync_to_async(
        lambda: {d.candidate.index: d.model_output for d in job.drafts.select_related("candidate")}
    )()
    assert texts == drafts
    token_frames = [f for f in frames if f["type"] == "job.tokens"]
    assert 1 <= len(token_frames) < 80, "tokens are coalesced, not one frame each"
    draft_events = [f for f in frames if f["type"] == "job.draft"]
    assert sorted(e["index"] for e in draft_events) == [0, 1]
    await comm.disconnect()


async def test_a_client_that_joins_late_gets_the_text_so_far_then_the_live_tail(
    cast: dict, language_model: LanguageModel, news_template: Any, slow_steps: Any
) -> None:
    slow_steps(0.02)
    job = await database_sync_to_async(_create_job)(cast, news_template, max_new_tokens=60)
    early = communicator(job.pk, cast["bob"])
    assert (await early.connect())[0]
    await early.receive_json_from()
    run = asyncio.create_task(asyncio.to_thread(run_job, job.pk))
    # wait until some text has streamed, then join
    seen = 0
    while seen < 3:
        msg = await early.receive_json_from(timeout=30)
        seen += msg["type"] == "job.tokens"
    late = communicator(job.pk, cast["charlie"])
    assert (await late.connect())[0]
    snapshot = await late.receive_json_from()
    assert snapshot["type"] == "job.snapshot" and snapshot["status"] == "running"
    so_far = {c["index"]: c["text"] for c in snapshot["candidates"]}
    assert any(so_far.values()), "the late client sees the text written before it joined"
    frames = await receive_until_final(late)
    await run
    texts = apply(dict(so_far), frames, after_seq=snapshot["seq"])
    drafts = await database_sync_to_async(
        lambda: {d.candidate.index: d.model_output for d in job.drafts.select_related("candidate")}
    )()
    assert texts == drafts
    await early.disconnect()
    await late.disconnect()


async def test_resync_sends_a_fresh_snapshot(
    cast: dict, language_model: LanguageModel, news_template: Any
) -> None:
    job = await database_sync_to_async(_create_job)(cast, news_template, max_new_tokens=5)
    await asyncio.to_thread(run_job, job.pk)
    comm = communicator(job.pk, cast["bob"])
    assert (await comm.connect())[0]
    first = await comm.receive_json_from()
    await comm.send_json_to({"action": "resync"})
    second = await comm.receive_json_from()
    assert first == second and first["status"] == "succeeded"
    assert all(c["draft_id"] for c in first["candidates"])
    await comm.disconnect()
