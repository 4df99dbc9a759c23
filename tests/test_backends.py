"""Generation backends through the whole path: job -> stream -> drafts -> checks, per backend.

Real models only: the tiny GPT-2 through transformers; a tiny Llama converted to ONNX Runtime
GenAI at test time by the studio's own conversion (the builder does not take GPT-2); and a real
``transformers serve`` process on 127.0.0.1 serving the tiny GPT-2 for the OpenAI-compatible
backend. The only stand-in is a bare socket server for the failures a real server will not
produce on demand (answering 500, never answering).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from generation import runner, services, stream
from generation.backends import BackendConfig, forget_backends, load_backend
from generation.backends.sampling import RowSampler
from generation.backends.types import SamplingSettings
from generation.model_runtime import model_convert_onnx
from generation.models import Candidate, Draft, GenerationJob, JobStatus, LanguageModel
from review.models import CheckResult
from tests.conftest import _free_port, wait_for

VARS = {"headline": "Storm hits the coast", "lede": "A storm hit the coast on Monday."}
SETTINGS = SamplingSettings(max_new_tokens=12, temperature=0.9, top_p=0.95, top_k=50)


# --- Fixtures: the three backends -------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from generation.tiny import build_tiny_llama, corpus_sample

    path = tmp_path_factory.mktemp("models") / "tiny-llama"
    return build_tiny_llama(path, texts=corpus_sample(max_chars=150_000))


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture
def onnx_model(db: None, tiny_llama_dir: Path, model_cache: Path, settings: Any) -> LanguageModel:
    """A LanguageModel on the ONNX backend, converted by the studio's conversion service (once
    per session: the conversion is idempotent and finds its own finished directory)."""
    settings.MODEL_CACHE_DIR = model_cache
    model = LanguageModel.objects.create(
        name="tiny-llama-onnx",
        source_kind="local",
        source=str(tiny_llama_dir),
        backend="onnx",
        is_default=True,
        max_new_tokens_limit=256,
        max_new_tokens=12,
        temperature=0.9,
        repetition_penalty=1.0,
    )
    return model_convert_onnx(model_id=model.pk)


def _serve_dir(tiny_model_dir: Path, tmp: Path) -> Path:
    # A served model samples when its generation config says so (transformers serve ignores
    # "temperature" otherwise), as a newsroom would configure the model it serves.
    served = tmp / "served-tiny-gpt2"
    shutil.copytree(tiny_model_dir, served)
    config_path = served / "generation_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    config.update(do_sample=True, top_k=50)
    config_path.write_text(json.dumps(config))
    return served


@pytest.fixture(scope="session")
def openai_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A real ``transformers serve`` on 127.0.0.1 with the tiny model, for the session."""
    served = _serve_dir(tiny_model_dir, tmp_path_factory.mktemp("serve"))
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = (tmp_path_factory.mktemp("serve-log") / "serve.log").open("w")
    command = [
        str(Path(sys.executable).with_name("transformers")),
        "serve",
        str(served),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
    ]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"transformers serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=120, interval=0.5)
        yield {"url": f"{base}/v1", "model": str(served)}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture
def openai_model(db: None, openai_server: dict) -> LanguageModel:
    return LanguageModel.objects.create(
        name="served-tiny",
        source_kind="local",
        source="(served)",
        backend="openai",
        server_url=openai_server["url"],
        server_model=openai_server["model"],
        server_api_key="sk-test-secret-123",
        # transformers serve seeds one global generator per request: one request at a time
        server_concurrent_requests=False,
        is_default=True,
        max_new_tokens_limit=256,
        max_new_tokens=12,
        temperature=0.9,
        repetition_penalty=1.0,
        server_timeout=30,
    )


@pytest.fixture
def transformers_model(language_model: LanguageModel) -> LanguageModel:
    assert language_model.backend == "transformers"
    return language_model


MODELS = ["transformers_model", "onnx_model", "openai_model"]


@pytest.fixture(autouse=True)
def _fresh_backends() -> Iterator[None]:
    forget_backends()
    yield
    forget_backends()


def create(cast: dict, template: Any, **kwargs: Any) -> GenerationJob:
    args: dict[str, Any] = {
        "project": cast["newsroom"],
        "user": cast["bob"],
        "template_version": template,
        "variables": VARS,
        "n_candidates": 2,
        "base_seed": 4321,
        "settings": {"max_new_tokens": 12},
    }
    args.update(kwargs)
    return services.job_create(**args)


# --- The whole path, per backend --------------------------------------------------------------


@pytest.mark.parametrize("model_fixture", MODELS)
def test_each_backend_runs_the_whole_path_job_stream_drafts_checks(
    model_fixture: str, request: pytest.FixtureRequest, worker: None, cast: dict, news_template: Any
) -> None:
    # given a default model on this backend
    model = request.getfixturevalue(model_fixture)
    # when an editor asks for two candidates and the worker runs the job
    job = create(cast, news_template)
    wait_for(lambda: GenerationJob.objects.get(pk=job.pk).is_final, timeout=60)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    # then the stream carried the text the drafts keep
    drafts = list(Draft.objects.filter(job=job).order_by("candidate__index"))
    assert len(drafts) == 2
    live = stream.live_state(job.pk)
    assert live is not None and live["seq"] > 0
    assert [live["texts"][str(i)] for i in range(2)] == [d.model_output for d in drafts]
    # each draft names the backend that wrote it (its provenance, stored as ``engine``)
    for draft in drafts:
        assert draft.engine["backend"] == model.backend
        assert draft.engine["version"]
        assert draft.engine["weights"]
        assert 0 < draft.completion_tokens <= 12
        assert draft.finish_reason in {"eos", "length"}
    if model.backend == "onnx":
        assert drafts[0].engine["weights"] == model.onnx_conversion["weights_checksum"]
        assert drafts[0].engine["weights"].startswith("sha256:")
    if model.backend == "transformers":
        assert drafts[0].engine["weights"].startswith("sha256:")
    if model.backend == "openai":
        assert drafts[0].engine["server"] == model.server_url
        assert "sk-test" not in json.dumps(drafts[0].engine)
    # the draft page and the API show it
    client = Client()
    client.force_login(cast["bob"])
    page_url = reverse("draft_detail", args=[cast["newsroom"].slug, drafts[0].pk])
    page = client.get(page_url).content.decode()
    assert drafts[0].engine["weights"] in page and drafts[0].engine["version"] in page
    api = client.get(reverse("api_draft", args=[drafts[0].pk])).json()
    assert api["engine"]["backend"] == model.backend
    # and the review worker checked every draft
    wait_for(
        lambda: not Draft.objects.filter(job=job, status__in=["generated", "checking"]).exists(),
        timeout=60,
    )
    assert CheckResult.objects.filter(draft__in=drafts).values("draft").distinct().count() == 2


@pytest.mark.parametrize("model_fixture", MODELS)
def test_same_seed_settings_and_backend_give_the_same_candidates(
    model_fixture: str, request: pytest.FixtureRequest, transactional_db: None
) -> None:
    from generation.model_runtime import backend_config

    model = request.getfixturevalue(model_fixture)
    backend = load_backend(backend_config(model), cache_root=Path("/nonexistent"))
    prompt = backend.render_prompt(system="", user="The President said")
    first = backend.generate(prompt=prompt, n=2, seeds=[11, 12], settings=SETTINGS)
    again = backend.generate(prompt=prompt, n=2, seeds=[11, 12], settings=SETTINGS)
    alone = backend.generate(prompt=prompt, n=1, seeds=[12], settings=SETTINGS)
    other = backend.generate(prompt=prompt, n=1, seeds=[13], settings=SETTINGS)
    assert [o.text for o in first] == [o.text for o in again]
    # a candidate depends on its own seed, not on its neighbours in the batch
    assert alone[0].text == first[1].text
    assert first[0].text != first[1].text and other[0].text != first[1].text


@pytest.mark.parametrize("model_fixture", MODELS)
def test_cancel_mid_stream_stops_each_backend_and_keeps_the_text(
    model_fixture: str,
    request: pytest.FixtureRequest,
    worker: None,
    cast: dict,
    news_template: Any,
    slow_steps: Any,
) -> None:
    request.getfixturevalue(model_fixture)
    slow_steps(0.05)
    job = create(cast, news_template, settings={"max_new_tokens": 200, "min_new_tokens": 200})
    wait_for(lambda: Candidate.objects.filter(job=job, completion_tokens__gt=0).exists())
    services.job_cancel(job=job, user=cast["bob"])
    wait_for(lambda: GenerationJob.objects.get(pk=job.pk).is_final, timeout=15)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED, job.error
    candidates = list(job.candidates.all())
    assert all(c.finish_reason == "cancelled" for c in candidates)
    assert any(c.text for c in candidates)
    assert all(c.completion_tokens < 200 for c in candidates)
    assert not Draft.objects.filter(job=job).exists()


# --- transformers: shared prefill, finished rows leave the batch -------------------------------


def test_transformers_prefills_the_prompt_once_and_stops_computing_finished_rows(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = load_backend(
        BackendConfig(backend="transformers", source_kind="local", source=str(tiny_model_dir)),
        cache_root=tiny_model_dir.parent,
    )
    shapes: list[tuple[int, int]] = []
    hook = backend.model.register_forward_hook(
        lambda module, args, kwargs, out: shapes.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True,
    )
    eos = next(iter(backend._eos))
    original = RowSampler.choose

    def choose(self: RowSampler, row: int, logits: Any, history: Any, step: int) -> int:
        # candidate 0 ends at its third token; the model still runs for real
        return eos if (row == 0 and step == 2) else original(self, row, logits, history, step)

    monkeypatch.setattr(RowSampler, "choose", choose)
    try:
        prompt = backend.render_prompt(system="", user="The President said")
        outputs = backend.generate(
            prompt=prompt,
            n=3,
            seeds=[1, 2, 3],
            settings=SamplingSettings(max_new_tokens=6, min_new_tokens=6, temperature=0.9),
        )
    finally:
        hook.remove()
    prompt_len = backend.count_tokens(prompt)
    # one prefill of the prompt at batch 1, then 3 rows until candidate 0 ends, then 2
    assert shapes[0] == (1, prompt_len)
    assert shapes[1:3] == [(3, 1), (3, 1)]
    assert set(shapes[3:]) == {(2, 1)}
    assert outputs[0].finish_reason == "eos" and outputs[0].completion_tokens == 2
    assert [o.completion_tokens for o in outputs[1:]] == [6, 6]


# --- ONNX: conversion any model goes through ------------------------------------------------


def test_onnx_conversion_is_checked_atomic_and_recorded(onnx_model: LanguageModel) -> None:
    target = Path(onnx_model.onnx_dir)
    meta = onnx_model.onnx_conversion
    assert (target / "genai_config.json").exists() and (target / "studio_conversion.json").exists()
    assert meta["precision"] in {"int4", "int8"}
    assert meta["perplexity_ratio"] <= 1.05
    assert meta["weights_checksum"].startswith("sha256:")
    assert not [p for p in target.parent.iterdir() if ".tmp-" in p.name]
    # converting again finds the finished directory: same record, nothing rebuilt
    again = model_convert_onnx(model_id=onnx_model.pk)
    assert again.onnx_conversion == meta


# --- OpenAI-compatible server: failures fail the job with the server's reason ------------------


class _FailingServer:
    """A bare HTTP server for failures: answers 500 with an OpenAI-style error, or never
    answers. Records the Authorization header it was sent."""

    def __init__(self, mode: str) -> None:
        self.auth: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.auth.append(self.headers.get("Authorization", ""))
                if mode == "silent":
                    time.sleep(3)
                    return
                body = json.dumps({"error": {"message": "CUDA out of memory on gpu 3"}}).encode()
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.mark.parametrize("failure", ["down", "slow", "http500", "refused_model"])
def test_a_server_that_fails_fails_the_job_with_its_reason(
    failure: str,
    transactional_db: None,
    cast: dict,
    news_template: Any,
    hold_queue: list,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = None
    if failure == "down":
        url, name, expected = _closed_port_url(), "m", "cannot reach the server"
    elif failure == "refused_model":
        server = request.getfixturevalue("openai_server")
        url, name = server["url"], "no-such/model"
        expected = "HTTP 400: Server is pinned to"
    else:
        fake = _FailingServer("silent" if failure == "slow" else "500")
        url, name = fake.url, "m"
        expected = "did not answer within 0.5 s" if failure == "slow" else "CUDA out of memory"
    LanguageModel.objects.create(
        name=f"server-{failure}",
        source_kind="local",
        source="(served)",
        backend="openai",
        server_url=url,
        server_model=name,
        server_api_key="sk-never-in-logs",
        server_timeout=0.5,
        server_max_retries=1,
        is_default=True,
        max_new_tokens=8,
    )
    try:
        job = create(cast, news_template, n_candidates=1)
        runner.job_claim_and_generate(job_id=job.pk, worker_name="w")
    finally:
        if fake is not None:
            fake.close()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert expected in job.error and "openai backend" in job.error
    assert "sk-never-in-logs" not in job.error and "sk-never-in-logs" not in caplog.text
    if fake is not None:
        # the key went where it belongs, and a transient failure was retried once
        assert fake.auth == ["Bearer sk-never-in-logs"] * 2


# --- Concurrent jobs on one worker ------------------------------------------------------------


def _texts(job: GenerationJob) -> list[str]:
    return list(job.candidates.order_by("index").values_list("text", flat=True))


def _running_beside(job: GenerationJob, other: GenerationJob) -> bool:
    """``job`` started while ``other`` was running and had written tokens."""
    job.refresh_from_db()
    other.refresh_from_db()
    return bool(
        job.started_at
        and other.started_at
        and other.started_at < job.started_at
        and (other.finished_at is None or job.started_at < other.finished_at)
    )


def test_two_jobs_on_one_worker_overlap_and_a_short_one_is_not_starved(
    worker: None, cast: dict, onnx_model: LanguageModel, news_template: Any, slow_steps: Any
) -> None:
    slow_steps(0.03)
    # given a long job already running
    long_job = create(cast, news_template, settings={"max_new_tokens": 120, "min_new_tokens": 120})
    wait_for(lambda: Candidate.objects.filter(job=long_job, completion_tokens__gt=0).exists())
    # when a short job arrives
    short_job = create(cast, news_template, settings={"max_new_tokens": 6, "min_new_tokens": 6})
    wait_for(lambda: GenerationJob.objects.get(pk=short_job.pk).is_final, timeout=60)
    # then it ran beside the long one and ended first
    assert GenerationJob.objects.get(pk=long_job.pk).status == JobStatus.RUNNING
    wait_for(lambda: GenerationJob.objects.get(pk=long_job.pk).is_final, timeout=90)
    long_job.refresh_from_db()
    short_job.refresh_from_db()
    assert (long_job.status, short_job.status) == (JobStatus.SUCCEEDED, JobStatus.SUCCEEDED)
    assert long_job.started_at < short_job.started_at < short_job.finished_at
    assert short_job.finished_at < long_job.finished_at


@pytest.mark.parametrize("merged", [True, False], ids=["one-shared-batch", "own-batches"])
def test_a_job_writes_the_same_candidates_alone_and_beside_another(
    worker: None,
    cast: dict,
    onnx_model: LanguageModel,
    news_template: Any,
    slow_steps: Any,
    settings: Any,
    merged: bool,
) -> None:
    # Partial text is saved every 0.2 s, so the test sees a job writing early.
    settings.GENERATION_SAVE_INTERVAL = 0.2
    # Two cores, two job slots. Merged (the default): every job's rows in one batch on both
    # cores. Not merged: a job alone steps on the wide session (2 threads), a job beside another
    # on the narrow one (1 thread).
    settings.TORCH_THREADS, settings.GENERATION_CONCURRENCY = 2, 2
    settings.GENERATION_WIDE_SESSION = True
    settings.GENERATION_MERGE_JOBS = merged
    # given a job that ran alone
    job_settings = {"max_new_tokens": 10, "min_new_tokens": 10}
    alone = create(cast, news_template, n_candidates=3, base_seed=777, settings=job_settings)
    wait_for(lambda: GenerationJob.objects.get(pk=alone.pk).is_final, timeout=60)
    assert GenerationJob.objects.get(pk=alone.pk).status == JobStatus.SUCCEEDED
    # when the same job (seed, settings, backend) runs while another job is generating
    slow_steps(0.03)
    other = create(cast, news_template, settings={"max_new_tokens": 80, "min_new_tokens": 80})
    wait_for(lambda: Candidate.objects.filter(job=other, completion_tokens__gt=0).exists())
    beside = create(cast, news_template, n_candidates=3, base_seed=777, settings=job_settings)
    wait_for(lambda: GenerationJob.objects.get(pk=beside.pk).is_final, timeout=60)
    assert _running_beside(beside, other)
    wait_for(lambda: GenerationJob.objects.get(pk=other.pk).is_final, timeout=90)
    # then it wrote the same candidates, and they differ from each other
    beside.refresh_from_db()
    assert beside.status == JobStatus.SUCCEEDED, beside.error
    assert _texts(beside) == _texts(alone)
    assert len(set(_texts(alone))) == 3
    drafts = list(Draft.objects.filter(job=beside).order_by("candidate__index"))
    assert [d.model_output for d in drafts] == _texts(alone)
    # and each job's drafts say which threads it ran on: alone all cores, beside its share
    # (in one shared batch, every job runs on all cores)
    assert {d.engine["threads"] for d in Draft.objects.filter(job=alone)} == {2}
    assert {d.engine["threads"] for d in drafts} == {2 if merged else 1}
    assert {d.engine["threads"] for d in Draft.objects.filter(job=other)} == {2}


def test_cancelling_a_job_mid_stream_leaves_the_job_beside_it_running_to_the_end(
    worker: None,
    cast: dict,
    onnx_model: LanguageModel,
    news_template: Any,
    slow_steps: Any,
    settings: Any,
) -> None:
    # Partial text is saved every 0.2 s, so the test sees a job writing early.
    settings.GENERATION_SAVE_INTERVAL = 0.2
    slow_steps(0.03)
    # given two long jobs running side by side on one worker
    keep = create(cast, news_template, settings={"max_new_tokens": 150, "min_new_tokens": 150})
    wait_for(lambda: Candidate.objects.filter(job=keep, completion_tokens__gt=0).exists())
    stop = create(cast, news_template, settings={"max_new_tokens": 200, "min_new_tokens": 200})
    wait_for(lambda: Candidate.objects.filter(job=stop, completion_tokens__gt=0).exists())
    assert _running_beside(stop, keep)
    # when one of them is cancelled mid-stream
    services.job_cancel(job=stop, user=cast["bob"])
    wait_for(lambda: GenerationJob.objects.get(pk=stop.pk).is_final, timeout=15)
    # then it stops with the text so far, and the other one ends normally with its drafts
    stop.refresh_from_db()
    assert stop.status == JobStatus.CANCELLED, stop.error
    assert all(c.finish_reason == "cancelled" for c in stop.candidates.all())
    assert any(_texts(stop)) and not Draft.objects.filter(job=stop).exists()
    assert GenerationJob.objects.get(pk=keep.pk).status == JobStatus.RUNNING
    wait_for(lambda: GenerationJob.objects.get(pk=keep.pk).is_final, timeout=90)
    keep.refresh_from_db()
    assert keep.status == JobStatus.SUCCEEDED, keep.error
    assert Draft.objects.filter(job=keep).count() == 2
    assert list(keep.candidates.values_list("completion_tokens", flat=True)) == [150, 150]


def test_onnx_steps_through_the_studio_loop_and_writes_what_the_python_module_writes(
    onnx_model: LanguageModel,
) -> None:
    from generation.backends.onnx_genai import OnnxGenAIBackend
    from generation.backends.ort_loop import LoopModel
    from generation.model_runtime import backend_config

    # given the backend as the worker loads it on CPU: its forward passes go through the
    # studio's loop on ONNX Runtime, which releases the GIL (the Python module's do not)
    backend = load_backend(backend_config(onnx_model), cache_root=Path("/nonexistent"))
    assert isinstance(backend, OnnxGenAIBackend) and isinstance(backend.native, LoopModel)
    prompt = backend.render_prompt(system="", user="The President said")
    native = backend.generate(prompt=prompt, n=2, seeds=[5, 6], settings=SETTINGS)
    # when the same model runs through the Python module instead (the fallback path)
    import onnxruntime_genai as og

    config = og.Config(onnx_model.onnx_dir)
    config.clear_providers()
    backend.model, backend.native = og.Model(config), None
    backend._step_lock = threading.Lock()
    module = backend.generate(prompt=prompt, n=2, seeds=[5, 6], settings=SETTINGS)
    # then the candidates are the same token for token
    assert [o.text for o in native] == [o.text for o in module]
    assert native[0].text != native[1].text


def test_the_studio_loop_prefills_once_drops_finished_rows_and_matches_the_genai_generator(
    onnx_model: LanguageModel,
) -> None:
    from generation.backends.oga_native import NativeModel
    from generation.backends.ort_loop import LoopModel

    path = Path(onnx_model.onnx_dir)
    loop = LoopModel(path, threads=1)
    reference = NativeModel(path, session_options={"intra_op_num_threads": 1}, cuda=False)
    prompt = [5, 17, 42, 9, 100, 7]
    steps, rows = 6, 3
    rng = np.random.default_rng(0)
    forced = rng.integers(3, 200, size=(steps, rows))
    # given: the same prompt in three rows, in the studio's loop and in ONNX Runtime GenAI's
    # generator, both greedy over the tokens we force
    ours = loop.generator(batch_size=rows, max_length=len(prompt) + steps)
    theirs = reference.generator(batch_size=rows, max_length=len(prompt) + steps)
    ours.append_tokens(np.array([prompt] * rows))
    theirs.append_tokens(np.array([prompt] * rows, dtype=np.int32))
    # when: both step, and ours drops its middle row half way
    kept = [0, 1, 2]
    for step in range(steps):
        mine, genai = ours.get_logits(), theirs.get_logits()
        # then: the same logits, bit for bit, for every row still computed
        assert np.array_equal(mine[:, -1], genai[kept, -1]), step
        if step == steps - 1:
            break
        if step == 2:
            ours.keep_rows([0, 2])
            kept = [0, 2]
        ours.set_next_tokens([int(forced[step, r]) for r in kept])
        onehot = np.full_like(genai, -np.inf)
        onehot[np.arange(rows), -1, forced[step]] = 0.0
        theirs.set_logits(onehot)
        theirs.generate_next_token()
    # and the prompt ran once (one pass of one row), the dropped row was not computed again
    assert ours.passes == steps
    assert ours.rows_computed == 1 + 2 * rows + (steps - 3) * 2
    theirs.close()
    ours.close()


def test_a_preamble_is_prefilled_once_per_model_and_changes_no_candidate(
    onnx_model: LanguageModel,
) -> None:
    from generation.backends.ort_loop import LoopModel
    from generation.model_runtime import backend_config

    backend = load_backend(backend_config(onnx_model), cache_root=Path("/nonexistent"))
    loop = backend.native
    assert isinstance(loop, LoopModel)
    # the output head sees the last position only: a prefill's logits are one row per row
    assert loop.last_only
    system = "You write for the city desk. Keep it short and name every source."
    prompt = backend.render_prompt(system=system, user="The President said")
    preamble = backend.preamble(system=system)
    assert preamble and prompt.startswith(preamble) and "President" not in preamble
    assert (
        5 < backend._preamble_tokens(preamble, backend.encode(prompt)) < len(backend.encode(prompt))
    )
    # given the candidates of one pass over the whole prompt (no preamble)
    plain = backend.generate(prompt=prompt, n=2, seeds=[5, 6], settings=SETTINGS)
    assert (loop.prefixes.hits, loop.prefixes.misses) == (0, 0)
    # when a job names its preamble: the first computes it, the next one finds it
    first = backend.generate(prompt=prompt, n=2, seeds=[5, 6], settings=SETTINGS, preamble=preamble)
    assert (loop.prefixes.hits, loop.prefixes.misses) == (0, 1)
    again = backend.generate(prompt=prompt, n=2, seeds=[5, 6], settings=SETTINGS, preamble=preamble)
    assert (loop.prefixes.hits, loop.prefixes.misses) == (1, 1)
    # then every candidate is the same, token for token
    assert [o.token_ids for o in first] == [o.token_ids for o in plain]
    assert [o.token_ids for o in again] == [o.token_ids for o in plain]
    # and another system text is another preamble
    other = backend.render_prompt(system="You write ads.", user="The President said")
    backend.generate(
        prompt=other,
        n=1,
        seeds=[5],
        settings=SETTINGS,
        preamble=backend.preamble(system="You write ads."),
    )
    assert (loop.prefixes.hits, loop.prefixes.misses) == (1, 2)


def test_spinning_threads_are_a_setting_and_change_no_candidate(
    onnx_model: LanguageModel, settings: Any
) -> None:
    from generation.model_runtime import backend_config

    def load(spin: bool) -> Any:
        settings.GENERATION_ONNX_SPIN = spin
        backend = load_backend(backend_config(onnx_model), cache_root=Path("/nonexistent"))
        options = backend.native.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == (
            "1" if spin else "0"
        )
        return backend

    quiet, spinning = load(False), load(True)
    prompt = quiet.render_prompt(system="", user="The President said")
    first = quiet.generate(prompt=prompt, n=2, seeds=[3, 4], settings=SETTINGS)
    second = spinning.generate(prompt=prompt, n=2, seeds=[3, 4], settings=SETTINGS)
    assert [o.token_ids for o in first] == [o.token_ids for o in second]


def test_the_preamble_cache_keeps_the_most_recent_within_its_bounds(
    onnx_model: LanguageModel,
) -> None:
    from generation.backends.ort_loop import LoopModel, PrefixCache

    loop = LoopModel(Path(onnx_model.onnx_dir), threads=1)
    cache = PrefixCache(loop, max_entries=2)
    a, b, c = [5, 6, 7], [8, 9], [10, 11, 12, 13]
    first = cache.kv(a)
    assert len(first) == len(loop.cache_names) and first[0].shape[2] == 3
    assert not first[0].flags.writeable  # shared by the jobs that start with it
    cache.kv(b)
    cache.kv(a)  # a is now the most recent
    cache.kv(c)  # over two entries: b, the least recent, goes
    assert list(cache._entries) == [tuple(a), tuple(c)]
    assert cache.kv(a) is first
    # and one that does not fit the byte bound is computed but not kept
    small = PrefixCache(loop, max_bytes=first[0].nbytes)
    small.kv(a)
    assert not small._entries


def test_jobs_of_one_template_share_its_preamble_and_write_what_they_would_alone(
    onnx_model: LanguageModel, worker: None, cast: dict, news_template: Any
) -> None:
    from generation.backends import get_backend
    from generation.model_runtime import backend_config

    # given two jobs of the same template (system text "You are a careful news writer.")
    jobs = []
    for _ in range(2):
        job = create(cast, news_template)
        wait_for(lambda job=job: GenerationJob.objects.get(pk=job.pk).is_final, timeout=60)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED, job.error
        jobs.append(job)
    # then the worker prefilled the template's preamble once, for the first job
    backend = get_backend(backend_config(onnx_model), cache_root=Path("/nonexistent"))
    assert (backend.native.prefixes.hits, backend.native.prefixes.misses) == (1, 1)
    # and both jobs wrote what one pass over the whole prompt writes
    prompt = jobs[0].prompt
    plain = backend.generate(
        prompt=prompt,
        n=2,
        seeds=[c.seed for c in jobs[0].candidates.order_by("index")],
        settings=SamplingSettings.from_dict(jobs[0].settings),
    )
    assert _texts(jobs[0]) == _texts(jobs[1]) == [o.text for o in plain]


def test_a_graph_the_loop_does_not_know_runs_on_onnx_runtime_genai_with_the_same_candidates(
    onnx_model: LanguageModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generation.backends import ort_loop
    from generation.backends.oga_native import NativeModel
    from generation.model_runtime import backend_config

    backend = load_backend(backend_config(onnx_model), cache_root=Path("/nonexistent"))
    assert isinstance(backend.native, ort_loop.LoopModel) and "studio loop" in backend.version
    prompt = backend.render_prompt(system="", user="The President said")
    ours = backend.generate(prompt=prompt, n=2, seeds=[5, 6], settings=SETTINGS)
    # given: a graph whose KV cache has a type the loop does not step (as a bf16 one would)
    monkeypatch.setattr(ort_loop, "_ELEMENT_TYPES", {})
    # when: the backend loads it
    fallback = load_backend(backend_config(onnx_model), cache_root=Path("/nonexistent"))
    # then: it runs on ONNX Runtime GenAI's generator, says so, and writes the same candidates
    assert isinstance(fallback.native, NativeModel)
    assert "KV cache of type tensor(float)" in fallback.loop_reason
    assert fallback.version.startswith("onnxruntime-genai ")
    out = fallback.generate(prompt=prompt, n=2, seeds=[5, 6], settings=SETTINGS)
    assert [o.token_ids for o in out] == [o.token_ids for o in ours]


def _hold_after_first_step(
    backend: Any, prompt: str, seeds: list[int]
) -> tuple[threading.Thread, threading.Event, threading.Event, list]:
    """A job generating in a thread that waits after its first step until released."""
    started, release, result = threading.Event(), threading.Event(), []

    def hold(deltas: list[str | None]) -> None:
        started.set()
        release.wait(30)

    def run() -> None:
        try:
            result.append(
                backend.generate(
                    prompt=prompt, n=len(seeds), seeds=seeds, settings=SETTINGS, on_delta=hold
                )
            )
        except Exception as exc:  # the test reads it
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(30)
    return thread, started, release, result


def test_jobs_on_one_model_step_in_one_batch_and_write_what_each_writes_alone(
    onnx_model: LanguageModel, settings: Any
) -> None:
    from generation.model_runtime import backend_config

    settings.TORCH_THREADS, settings.GENERATION_CONCURRENCY = 2, 2
    settings.GENERATION_MERGE_JOBS = True
    backend = load_backend(backend_config(onnx_model), cache_root=Path("/nonexistent"))
    assert backend.shared is not None and backend.threads == 2 and backend.wide is None
    long_prompt = backend.render_prompt(system="", user="The President said that the nation")
    short_prompt = backend.render_prompt(system="", user="Taxes")
    # given what each job writes alone
    alone_long = backend.generate(prompt=long_prompt, n=1, seeds=[1], settings=SETTINGS)
    alone_short = backend.generate(prompt=short_prompt, n=3, seeds=[7, 8, 9], settings=SETTINGS)
    # when the short job joins while the long one is generating (a prompt of another length)
    thread, _, release, result = _hold_after_first_step(backend, long_prompt, [1])
    widest: list[int] = []
    original = backend.shared._pass

    def spy(plan: Any, joining: Any, stepping: bool) -> Any:
        delivered = original(plan, joining, stepping)
        widest.append(sum(m.rows for m in backend.shared._members))
        return delivered

    backend.shared._pass = spy
    try:
        beside = []
        joiner = threading.Thread(
            target=lambda: beside.append(
                backend.generate(prompt=short_prompt, n=3, seeds=[7, 8, 9], settings=SETTINGS)
            )
        )
        joiner.start()
        wait_for(lambda: max(widest, default=0) == 4, timeout=30)
    finally:
        release.set()
        thread.join(30)
    joiner.join(30)
    # then both were stepped as the rows of one batch (1 + 3), and each wrote what it wrote alone
    assert max(widest) == 4
    assert [o.token_ids for o in beside[0]] == [o.token_ids for o in alone_short]
    assert [o.token_ids for o in result[0]] == [o.token_ids for o in alone_long]
    assert [o.threads for o in beside[0]] == [2, 2, 2]
    # and once both have left, the batch's cache is freed
    assert backend.shared._cache is None and backend.shared._members == []


def test_a_failed_pass_of_the_shared_batch_fails_every_job_in_it_with_the_reason(
    onnx_model: LanguageModel, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generation.backends import ort_batch
    from generation.backends.types import BackendError
    from generation.model_runtime import backend_config

    settings.GENERATION_MERGE_JOBS = True
    backend = load_backend(backend_config(onnx_model), cache_root=Path("/nonexistent"))
    prompt = backend.render_prompt(system="", user="The President said")
    # given: a job in the batch, held after its first step
    thread, _, release, result = _hold_after_first_step(backend, prompt, [1, 2])
    # when: the next pass fails (as a session that runs out of memory would)
    original = ort_batch._Cache.step
    failures = []

    def broken(self: Any, members: Any, tokens: Any) -> Any:
        failures.append(len(tokens))
        raise RuntimeError("out of memory in the attention")

    monkeypatch.setattr(ort_batch._Cache, "step", broken)
    errors = []

    def second() -> None:
        try:
            backend.generate(prompt=prompt, n=1, seeds=[3], settings=SETTINGS)
        except BackendError as exc:
            errors.append(str(exc))

    joiner = threading.Thread(target=second)
    joiner.start()
    # the joiner's prefill ran; its first step waits for the held job
    wait_for(lambda: len(backend.shared._members) == 2, timeout=30)
    release.set()
    thread.join(30)
    joiner.join(30)
    # then: both jobs in the pass failed with the reason
    assert failures == [3]  # the pass held both jobs' rows (2 + 1)
    assert isinstance(result[0], BackendError) and "out of memory" in str(result[0])
    assert errors and "out of memory in the attention" in errors[0]
    # and the batch serves the next job once the fault is gone
    monkeypatch.setattr(ort_batch._Cache, "step", original)
    out = backend.generate(prompt=prompt, n=2, seeds=[1, 2], settings=SETTINGS)
    assert all(o.completion_tokens for o in out)


@pytest.fixture
def two_sessions(onnx_model: LanguageModel, settings: Any) -> tuple[Any, str]:
    """The ONNX backend with jobs not merged, on two cores with two job slots: a wide session
    (every core) beside the narrow one (a slot's); and a prompt."""
    from generation.model_runtime import backend_config

    settings.TORCH_THREADS, settings.GENERATION_CONCURRENCY = 2, 2
    settings.GENERATION_MERGE_JOBS = False
    backend = load_backend(backend_config(onnx_model), cache_root=Path("/nonexistent"))
    return backend, backend.render_prompt(system="", user="The President said")


def test_a_lone_job_takes_the_wide_session_unless_it_is_turned_off(
    onnx_model: LanguageModel, settings: Any, two_sessions: tuple[Any, str]
) -> None:
    from generation.model_runtime import backend_config

    # given the backend with its wide session (every core) beside the narrow one (a slot's)
    backend, prompt = two_sessions
    assert (backend.threads, backend.wide_threads) == (1, 2)
    # when a job runs alone, and the same job runs while another job is generating
    alone = backend.generate(prompt=prompt, n=3, seeds=[7, 8, 9], settings=SETTINGS)
    other, _, release, _ = _hold_after_first_step(backend, prompt, [1])
    try:
        beside = backend.generate(prompt=prompt, n=3, seeds=[7, 8, 9], settings=SETTINGS)
    finally:
        release.set()
        other.join(30)
    # then the lone one ran on every core, the other on its share, with the same candidates
    assert [o.threads for o in alone] == [2, 2, 2]
    assert [o.threads for o in beside] == [1, 1, 1]
    assert [o.token_ids for o in beside] == [o.token_ids for o in alone]
    # and with the setting off there is no wide session: every job runs on its share
    settings.GENERATION_WIDE_SESSION = False
    narrow_only = load_backend(backend_config(onnx_model), cache_root=Path("/nonexistent"))
    assert narrow_only.wide is None
    out = narrow_only.generate(prompt=prompt, n=3, seeds=[7, 8, 9], settings=SETTINGS)
    assert [o.threads for o in out] == [1, 1, 1]
    assert [o.token_ids for o in out] == [o.token_ids for o in alone]


def test_a_job_claimed_beside_another_that_has_not_started_generating_takes_its_share(
    two_sessions: tuple[Any, str],
) -> None:
    from generation.backends.reservations import reserve, reserved

    backend, prompt = two_sessions
    before = reserved()
    # given this job claimed by the runner, and another one claimed just after it that is
    # still loading or rendering its prompt (not generating yet)
    with reserve(), reserve() as other:
        assert reserved() == before + 2
        # when this one starts generating
        out = backend.generate(prompt=prompt, n=2, seeds=[7, 8], settings=SETTINGS)
        # then it takes its share of the cores, not every core the other is about to need
        assert [o.threads for o in out] == [1, 1]
        # and once the other is done (released twice: idempotent), a job alone takes them all
        other.release()
        other.release()
        assert reserved() == before + 1
        alone = backend.generate(prompt=prompt, n=2, seeds=[7, 8], settings=SETTINGS)
        assert [o.threads for o in alone] == [2, 2]
        assert [o.token_ids for o in alone] == [o.token_ids for o in out]
    assert reserved() == before


def test_two_generators_on_threads_write_what_each_writes_alone(
    onnx_model: LanguageModel,
) -> None:
    from generation.model_runtime import backend_config

    backend = load_backend(backend_config(onnx_model), cache_root=Path("/nonexistent"))
    prompts = [
        backend.render_prompt(system="", user="The President said"),
        backend.render_prompt(system="", user="A storm hit the coast of Maine on Monday and"),
    ]
    settings = SamplingSettings(max_new_tokens=40, min_new_tokens=40, temperature=0.9, top_k=50)

    def run(i: int) -> list[str]:
        out = backend.generate(prompt=prompts[i], n=2, seeds=[i, i + 10], settings=settings)
        return [o.text for o in out]

    alone = [run(0), run(1)]
    side_by_side: dict[int, list[str]] = {}
    threads = [
        threading.Thread(target=lambda i=i: side_by_side.__setitem__(i, run(i))) for i in (0, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert side_by_side == {0: alone[0], 1: alone[1]}


# --- Admin: backend per model, a check per backend, a write-only key -------------------------


def test_admin_checks_each_backend_and_never_shows_the_key(
    worker: None, admin_user: Any, onnx_model: LanguageModel, openai_server: dict
) -> None:
    client = Client()
    client.force_login(admin_user)
    url = f"/admin/generation/languagemodel/{onnx_model.pk}/change/"
    page = client.get(url).content.decode()
    form = {
        "name": onnx_model.name,
        "enabled": "on",
        "is_default": "on",
        "source_kind": "local",
        "source": onnx_model.source,
        "revision": "",
        "device": "auto",
        "dtype": "auto",
        "backend": "onnx",
        "onnx_precision": "auto",
        "server_url": openai_server["url"],
        "server_model": openai_server["model"],
        "server_api_key": "sk-admin-typed-456",
        "server_api": "completions",
        "server_timeout": "30",
        "server_max_retries": "2",
        "max_new_tokens_limit": "256",
        "max_new_tokens": "12",
        "min_new_tokens": "0",
        "temperature": "0.9",
        "top_p": "0.95",
        "top_k": "50",
        "repetition_penalty": "1.0",
        "no_repeat_ngram_size": "0",
    }
    assert client.post(url, form).status_code == 302
    assert LanguageModel.objects.get(pk=onnx_model.pk).server_api_key == "sk-admin-typed-456"
    # saving again without typing a key keeps it; the page never shows it
    assert client.post(url, {**form, "server_api_key": ""}).status_code == 302
    assert LanguageModel.objects.get(pk=onnx_model.pk).server_api_key == "sk-admin-typed-456"
    page = client.get(url).content.decode()
    assert "sk-admin-typed-456" not in page and "A key is stored" in page
    # a check per backend, run in the worker
    for action in ["check_transformers", "check_onnx", "check_openai"]:
        client.post(
            "/admin/generation/languagemodel/",
            {"action": action, "_selected_action": [onnx_model.pk]},
        )
    wait_for(lambda: len(LanguageModel.objects.get(pk=onnx_model.pk).backend_checks) == 3)
    checks = LanguageModel.objects.get(pk=onnx_model.pk).backend_checks
    assert checks["onnx"]["ok"] and "onnxruntime-genai" in checks["onnx"]["message"]
    assert checks["openai"]["ok"] and "server answered /models" in checks["openai"]["message"]
    assert checks["transformers"]["ok"], checks["transformers"]["message"]
    assert "sk-admin" not in json.dumps(checks)


def test_half_precision_is_refused_on_a_device_without_it(tiny_model_dir: Path) -> None:
    from generation.backends.types import ModelLoadError

    with pytest.raises(ModelLoadError, match="float16 needs a CUDA device"):
        load_backend(
            BackendConfig(
                backend="transformers",
                source_kind="local",
                source=str(tiny_model_dir),
                device="cpu",
                dtype="float16",
            ),
            cache_root=tiny_model_dir.parent,
        )


def test_openai_backend_reuses_its_connection_and_reconnects_after_the_server_closed_it(
    transactional_db: None,
    cast: dict,
    news_template: Any,
    hold_queue: list,
    openai_model: LanguageModel,
    settings: Any,
) -> None:
    from generation.backends import get_backend
    from generation.model_runtime import backend_config

    # given a served model with no retries: a stale connection must not count as a failure
    openai_model.server_max_retries = 0
    openai_model.save()
    backend = get_backend(backend_config(openai_model), cache_root=settings.MODEL_CACHE_DIR)

    def run() -> tuple[GenerationJob, int]:
        job = create(cast, news_template, n_candidates=2)
        runner.job_claim_and_generate(job_id=job.pk, worker_name="w")
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED, job.error
        # (the stream thread hands its connection back after the job has its text)
        wait_for(lambda: len(backend._idle) == 1, timeout=10)
        return job, backend._idle[0].sock.getsockname()[1]

    # when two jobs of two candidates each run one after another
    first, port = run()
    second, again = run()
    # then all four requests went over one kept-alive connection
    assert again == port
    assert all(c.completion_tokens > 0 for c in Candidate.objects.filter(job__in=[first, second]))
    # when the server closes the idle connection (uvicorn's keep-alive timeout is 5 s)
    time.sleep(6)
    third, fresh = run()
    # then the job still succeeds, on a new connection
    assert fresh != port
    assert Candidate.objects.filter(job=third, completion_tokens__gt=0).count() == 2


def test_top_k_is_the_k_highest_logits_best_first_ties_by_token_id() -> None:
    from generation.backends.sampling import top_k

    rng = np.random.default_rng(3)
    for k in (1, 5, 50, 300):
        for _ in range(10):
            # rounded: many ties, also at the k-th value
            x = rng.standard_normal(5000).astype(np.float32).round(1)
            expected = sorted(range(5000), key=lambda i: (-x[i], i))[:k]
            assert top_k(x, k).tolist() == expected
    banned = np.full(100, -np.inf, dtype=np.float32)
    banned[[7, 3]] = [1.0, 2.0]
    assert top_k(banned, 4).tolist() == [3, 7, 0, 1]
    assert top_k(np.zeros(10, dtype=np.float32), 20).tolist() == list(range(10))


def test_a_graph_edit_that_does_not_load_falls_back_to_the_builders_graph(
    onnx_model: LanguageModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generation.backends import ort_loop

    path = Path(onnx_model.onnx_dir)
    edited = ort_loop.LoopModel(path, threads=1)
    # given an edit ONNX Runtime refuses
    monkeypatch.setattr(ort_loop, "_last_position_graph", lambda *args: b"not a model")
    plain = ort_loop.LoopModel(path, threads=1)
    # then the model loads unedited and says so, with the same last logits
    assert edited.last_only and not plain.last_only
    prompt = np.array([[5, 17, 42, 9]])
    outputs = []
    for model in (edited, plain):
        generator = model.generator(batch_size=1, max_length=8)
        generator.append_tokens(prompt)
        outputs.append(generator.get_logits()[:, -1])
    assert np.array_equal(*outputs)
